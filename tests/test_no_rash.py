"""The no-rash check: the card's bank and limit, its calibration rule, and what it does to verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mim_core.appearance import NoRashCheck, calibrate_no_rash, nearest_distances
from mim_core.checkpoint import WeightsError, sha256_file
from mim_core.data import decode_image, preprocess, source_group
from mim_core.detector import MIMDetector, NO_RASH_REASON
from mim_core.verdict import Verdict
from tests.conftest import SHIPPED_WEIGHTS, shipped_copy

CARD = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())
HEALTHY = Path(__file__).resolve().parents[2] / "shared" / "healthy_skin_dev" / "Normal"


def test_card_holds_the_bank_its_limit_and_rule():
    section = CARD["no_rash"]
    bank = SHIPPED_WEIGHTS.parent / section["bank"]
    assert sha256_file(bank) == section["bank_sha256"]
    assert "leave-one-source-out" in section["rule"] and "mpox only" in section["calibration_photos"]
    assert section["n_cells"] == section["n_photos"] * section["config"]["grid"] ** 2
    check = NoRashCheck.from_card(CARD, SHIPPED_WEIGHTS.parent)
    assert check.threshold == section["threshold"] and check.bank.shape[0] == section["n_cells"]


def test_card_threshold_is_the_largest_leave_one_source_out_distance():
    """Recomputed from the stored bank alone: the limit is what the rule says it is."""
    stored = torch.load(SHIPPED_WEIGHTS.parent / CARD["no_rash"]["bank"], weights_only=True)
    cells = CARD["no_rash"]["config"]["grid"] ** 2
    patches = stored["bank"].float().view(len(stored["groups"]), cells, -1)
    loo = nearest_distances(patches, stored["bank"], np.repeat(stored["groups"], cells), stored["groups"])
    threshold = CARD["no_rash"]["threshold"]
    assert 0 < loo.min() and np.min(np.abs(loo - threshold)) < 2e-3  # the bank is stored in fp16
    refused = CARD["no_rash"]["n_photos"] - CARD["no_rash"]["n_threshold_photos"]
    assert np.sum(loo > threshold + 2e-3) <= refused  # only photos the gate refuses may lie above


def test_calibration_writes_a_bank_and_sets_the_limit_on_judged_photos(tmp_path: Path, data_root: Path, detector):
    paths = CARD["split"]["train"][:6]
    views = torch.stack([preprocess(decode_image(data_root / p), detector.config.preprocess) for p in paths])
    groups = [source_group(*Path(p).parts[-3:]) for p in paths]
    judged = [True] * 5 + [False]
    section = calibrate_no_rash(views, groups, judged, tmp_path / "bank.pt")
    assert section["bank_sha256"] == sha256_file(tmp_path / "bank.pt") and section["n_threshold_photos"] == 5
    check = NoRashCheck(torch.load(tmp_path / "bank.pt", weights_only=True)["bank"], section["threshold"],
                        detector.no_rash.config)
    assert np.all(check.distances(views) < 1e-2)  # each photo's own cells are in the bank (fp16 rounding)


def test_a_missing_or_tampered_bank_is_refused(tmp_path: Path):
    weights = shipped_copy(tmp_path)
    bank = tmp_path / CARD["no_rash"]["bank"]
    data = bytearray(bank.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bank.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its model card"):
        MIMDetector.load(weights)
    bank.unlink()
    with pytest.raises(WeightsError, match="calibrate-no-rash"):
        MIMDetector.load(weights)


def test_held_out_mpox_photos_are_never_called_no_rash(detector, data_root: Path):
    analyses = detector.analyze_batch([data_root / p for p in CARD["split"]["test"]])
    mpox_like = [a for a in analyses if a.verdict is Verdict.MPOX_LIKE]
    assert len(mpox_like) >= 0.85 * len(analyses)
    assert all(a.patch_distance is not None and a.patch_distance <= detector.no_rash.threshold for a in mpox_like)
    assert not any(a.verdict is Verdict.NO_RASH for a in analyses)


def test_check_only_overrides_mpox_like_calls(detector, data_root: Path):
    """A detector whose limit is 0 calls every mpox-like photo 'no rash visible', and nothing else changes."""
    strict = MIMDetector(detector.generator, detector.config, detector.threshold, detector.card,
                         no_rash=NoRashCheck(detector.no_rash.bank, 0.0, detector.no_rash.config))
    photos = [data_root / p for p in CARD["split"]["test"][:6]] + \
             [sorted((data_root / "DermNetNZ" / c).iterdir())[0] for c in ("Scabies", "Orf", "Melanoma")]
    for plain, overridden in zip(detector.analyze_batch(photos), strict.analyze_batch(photos)):
        if plain.verdict is Verdict.MPOX_LIKE:
            assert overridden.verdict is Verdict.NO_RASH and overridden.reason == NO_RASH_REASON
            assert not overridden.verdict.is_refusal and overridden.score == plain.score
            assert overridden.inpainted is not None and overridden.summary()["patch_distance"] > 0
        else:
            assert overridden.verdict is plain.verdict and overridden.patch_distance is None


@pytest.mark.skipif(not HEALTHY.is_dir(), reason="shared/healthy_skin_dev is not on this machine")
def test_healthy_skin_development_photos_are_mostly_not_called_mpox_like(detector):
    """The design set itself: without the check most of these are mpox-like; with it, a minority."""
    analyses = detector.analyze_batch(sorted(HEALTHY.iterdir()))
    verdicts = [a.verdict for a in analyses]
    assert verdicts.count(Verdict.NO_RASH) >= 0.3 * len(verdicts)
    assert verdicts.count(Verdict.MPOX_LIKE) < 0.5 * len(verdicts)
