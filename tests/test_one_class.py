"""The one-class baselines on frozen ImageNet features: the card's bank is the mpox train photos' features, the
score is the distance to it, and the shipped files load offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mim_core import Verdict
from mim_core.appearance import PatchFeatures
from mim_core.baselines.classifier import ClassifierDetector
from mim_core.baselines.one_class import nearest_distance, worst_cell_distance
from mim_core.config import ONE_CLASS_ARCHS
from mim_core.data import load_tensor, locate
from tests.test_probe import no_network  # noqa: F401 - the fixture

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
CARDS = {arch: WEIGHTS / f"effnet_{arch.rsplit('_', 1)[1]}.pt" for arch in ONE_CLASS_ARCHS}


@pytest.mark.parametrize("arch", ONE_CLASS_ARCHS)
def test_shipped_bank_is_the_mpox_train_photos_and_the_score_their_distance(arch, no_network, data_root: Path,  # noqa: F811
                                                                             msid_root: Path):
    detector = ClassifierDetector.load(CARDS[arch])
    card = json.loads(CARDS[arch].with_suffix(".json").read_text())
    assert detector.config.arch == arch and card["split"]["positives"]["train"]
    roots = [data_root, msid_root]
    views = lambda paths: torch.stack([load_tensor(locate(roots, p), detector.config.preprocess) for p in paths])  # noqa: E731
    train = card["split"]["positives"]["train"]
    cells, pooled = PatchFeatures().both(views(train))
    bank = detector.model.net.bank
    expected = pooled if arch.endswith("_knn") else cells.flatten(0, 1)
    assert bank.shape == expected.shape and torch.allclose(bank, expected, atol=2e-3)  # stored in fp16
    # a train photo is its own nearest neighbour: kNN distance 0, the largest score there is
    if arch.endswith("_knn"):
        assert detector.score_views(views(train[:3])) == pytest.approx(0.5, abs=1e-3)
    # any other photo: sigmoid(-distance), the distance computed directly
    others = card["split"]["negatives"]["test"][:4] + card["split"]["positives"]["test"][:4]
    cells, pooled = PatchFeatures().both(views(others))
    distance = nearest_distance(pooled, bank) if arch.endswith("_knn") else worst_cell_distance(cells, bank)
    assert detector.score_views(views(others)) == pytest.approx(torch.sigmoid(-distance).numpy(), abs=2e-3)
    # the threshold is the card's rule: the lowest mpox val score
    assert detector.score_views(views(card["split"]["positives"]["val"])).min() == \
        pytest.approx(card["threshold"]["value"], abs=1e-5)


def test_one_class_cards_use_no_negative_and_say_their_score_is_no_probability():
    for path in CARDS.values():
        card = json.loads(path.with_suffix(".json").read_text())
        assert "one-class" in card["data"]["train_uses"] and "not a probability" in card["description"]
        assert card["training"]["parameters"] == int(np.prod(ClassifierDetector.load(path).model.net.bank.shape))


def test_their_verdict_sentences_speak_of_distance(data_root: Path):
    detector = ClassifierDetector.load(CARDS[ONE_CLASS_ARCHS[0]])
    analysis = detector.analyze(sorted((data_root / "MSLD_v1" / "Monkeypox").iterdir())[0])
    assert analysis.verdict in (Verdict.MPOX_LIKE, Verdict.NOT_MPOX_LIKE)
    assert "probability" not in analysis.reason and "mpox photos" in analysis.reason
