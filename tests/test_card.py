"""The shipped model card is true: its hashes, split and AUROCs are re-derived from the weights."""

from pathlib import Path

import numpy as np
import pytest

from mim_core.calibrate import score_paths
from mim_core.checkpoint import architecture, load_card, load_generator, manifest_sha256, sha256_file
from mim_core.data import scan_datasets
from mim_core.evaluation.protocol import OTHERS, assign_roles
from mim_core.evaluation.stats import auroc_ci
from mim_core.training.train import mpox_split
from tests.conftest import REPO, SHIPPED_WEIGHTS


@pytest.fixture(scope="module")
def card():
    return load_card(SHIPPED_WEIGHTS)


def test_card_describes_the_weights_and_data(card, data_root: Path, msid_root: Path):
    assert card["weights_sha256"] == sha256_file(SHIPPED_WEIGHTS)
    assert card["architecture"] == architecture(*load_generator(SHIPPED_WEIGHTS, card["weights_sha256"]))
    assert SHIPPED_WEIGHTS.stat().st_size < 25 * 2**20
    assert card["data"]["manifest_sha256"] == {r: manifest_sha256(REPO / r) for r in card["data"]["roots"]}
    split = mpox_split([data_root, msid_root], card["config"]["train"]["split_seed"])
    assert card["split"] == split.as_paths()
    assert card["training"]["command"].startswith("python -m mim_core train")
    for key in ("threshold", "evaluation", "limitations", "config"):
        assert card[key], key


def test_shipped_aurocs_are_reproduced(card, detector, data_root: Path, msid_root: Path):
    """Score the test split (both mpox sources) and every test class with the shipped detector; compare with the card."""
    table = assign_roles(scan_datasets([data_root, msid_root]), card["split"])
    table = table[table["role"].isin(["mpox_test", "test"])].reset_index(drop=True)
    scores = score_paths(detector, [data_root, msid_root], list(table["path"]))  # as the evaluation: no quality gate
    pos = scores[table["role"] == "mpox_test"]
    recorded = card["evaluation"]["per_class_auroc"]
    assert set(recorded) == set(table.loc[table["role"] == "test", "class"])
    for cls, expected in recorded.items():
        value = auroc_ci(pos, scores[table["class"] == cls], n_boot=10).value
        assert value == pytest.approx(expected, abs=2e-3), cls
    dermnet = [v for c, v in recorded.items() if c != OTHERS]
    assert len(dermnet) == 21
    assert np.mean(dermnet) == pytest.approx(card["evaluation"]["mean_auroc_dermnet_test_classes"]["auroc"], abs=2e-3)
