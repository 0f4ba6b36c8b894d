"""The shipped recipe and ``calibrate`` end to end on real photos (a two-step run): the card they write has
the shipped card's shape, its sections come in the enforced order, and a failure writes nothing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mim_core.calibrate import score_paths
from mim_core.checkpoint import load_card, sha256_file
from mim_core.cli import main
from mim_core.detector import MIMDetector
from mim_core.screening import load_detector
from mim_core.verdict import Verdict
from tests.conftest import REPO, SHIPPED_WEIGHTS, located

# what may differ between a rebuilt card and the shipped one: hashes, measured numbers, and the run's own words
RUN_SPECIFIC = {"weights_sha256", "bank_sha256", "command", "rule", "manifest_sha256", "run_settings", "evaluation",
                "cross_source",
                "weights_file", "bank", "steps", "split", "roots", "note"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root: Path) -> Path:
    """``train --recipe recipes/mim_gan.toml`` (its roots: both mpox sources) for 2 steps, then ``calibrate --export``."""
    out = tmp_path_factory.mktemp("recipe")
    assert main(["train", "--recipe", str(REPO / "recipes" / "mim_gan.toml"), "--out", str(out / "run"),
                 "--steps", "2", "--batch-size", "2", "--threads", "2"]) == 0
    assert main(["calibrate", str(out / "run" / "model.pt"), "--export", str(out / "weights" / "mim_gan.pt")]) == 0
    return out


def _shape(value, key=""):
    """The card with numbers, hashes and run-specific text blanked: what a rebuild must reproduce exactly."""
    if isinstance(value, dict):
        return {k: _shape(v, k) for k, v in value.items() if k not in RUN_SPECIFIC}
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return "numbers"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("seed", "split_seed"):
        return "number"
    return value


def test_the_rebuilt_card_is_the_shipped_card_but_for_hashes_and_numbers(run: Path):
    rebuilt, shipped = load_card(run / "weights" / "mim_gan.pt"), load_card(SHIPPED_WEIGHTS)
    assert _shape(rebuilt) == _shape(shipped)
    assert rebuilt["config"] == {**shipped["config"], "train": {**shipped["config"]["train"], "steps": 2, "batch_size": 2}}
    assert rebuilt["training"]["steps"] == 2 and rebuilt["recipe"] == shipped["recipe"]
    assert rebuilt["training"]["command"].startswith("python -m mim_core train --recipe")
    assert rebuilt["calibration"]["order"] == ["quality_gate", "threshold", "appearance"]
    # the exported files are named after the target and verified on load
    assert rebuilt["appearance"]["bank"] == "mim_gan_appearance.pt"
    assert rebuilt["appearance"]["bank_sha256"] == sha256_file(run / "weights" / "mim_gan_appearance.pt")
    detector = load_detector(run / "weights" / "mim_gan.pt")
    assert isinstance(detector, MIMDetector) and detector.appearance is not None


def test_the_threshold_was_set_after_the_gate_on_the_views_the_detector_sees(run: Path, data_root: Path):
    """The val scores behind the threshold are the loaded detector's own: computed with the gate's
    clean-noise level, so the gate was calibrated first."""
    weights = run / "run" / "model.pt"
    card = load_card(weights)
    detector = MIMDetector.load(weights)
    assert detector.gate.clean_noise == card["quality_gate"]["thresholds"]["clean_noise"] > 0
    scores = score_paths(detector, card["data"]["roots"], card["split"]["val"])
    assert np.allclose(scores, card["threshold"]["val_scores"], atol=1e-5)
    assert card["threshold"]["value"] == pytest.approx(scores.max(), abs=1e-6)
    # every val photo the gates pass is at or under the threshold: mpox-like unless "no rash" overrides
    verdicts = [a.verdict for a in detector.analyze_batch([located(p) for p in card["split"]["val"]])]
    assert Verdict.NOT_MPOX_LIKE not in verdicts


def test_calibrate_needs_the_training_record_and_writes_nothing_on_failure(run: Path, tmp_path: Path, capsys):
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copyfile(run / "run" / "model.pt", lone / "model.pt")
    assert main(["calibrate", str(lone / "model.pt")]) == 2
    assert "training.json" in capsys.readouterr().err and not (lone / "model.json").exists()
    # a run whose photos are not where it says: an error sentence, and no card
    shutil.copyfile(run / "run" / "training.json", lone / "training.json")
    assert main(["calibrate", str(lone / "model.pt"), "--data", str(tmp_path / "nowhere")]) == 2
    assert "error: " in capsys.readouterr().err and not (lone / "model.json").exists()
    # weights that are not the ones trained
    record = json.loads((lone / "training.json").read_text())
    (lone / "training.json").write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    assert main(["calibrate", str(lone / "model.pt")]) == 2
    assert "sha256" in capsys.readouterr().err and not (lone / "model.json").exists()


def test_two_mpox_sources_train_and_calibrate_together(run: Path):
    card = load_card(run / "run" / "model.pt")  # the roots came from the recipe, then from training.json
    assert card["data"]["roots"] == ["../shared/data", "../shared/data_msid"]
    assert set(card["data"]["manifest_sha256"]) == set(card["data"]["roots"])
    for part in ("train", "val", "test"):
        assert {p.split("/")[0] for p in card["split"][part]} == {"MSLD_v1", "MSID"}
    assert "MSID/Monkeypox" in card["data"]["train_uses"] and "MSLD_v1/Monkeypox" in card["data"]["train_uses"]
    assert len(card["threshold"]["val_scores"]) == len(card["split"]["val"])
    assert card["quality_gate"]["n_photos"] == card["appearance"]["n_photos"] == len(card["split"]["train"] + card["split"]["val"])


def test_data_overrides_the_recipes_roots(tmp_path: Path, data_root: Path):
    one = tmp_path / "one"
    assert main(["train", "--recipe", str(REPO / "recipes" / "mim_gan.toml"), "--out", str(one), "--data",
                 str(data_root), "--steps", "1", "--batch-size", "2", "--threads", "2"]) == 0
    # the record calibrate reads its roots and split from (as the module's run shows for the recipe's roots)
    record = json.loads((one / "training.json").read_text())
    assert record["data_roots"] == [str(data_root)]
    assert {p.split("/")[0] for part in ("train", "val", "test") for p in record["split"][part]} == {"MSLD_v1"}
