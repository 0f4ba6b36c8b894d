"""The detector API on the shipped weights."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mim_core.checkpoint import WeightsError
from mim_core.detector import MIMDetector, Verdict
from tests.conftest import SHIPPED_WEIGHTS, located, shipped_copy

MPOX = "MSLD_v1/Monkeypox"
# oneDNN runs other kernels on other CPUs (AVX2 vs AVX-512): the card's scores, computed on one, move by about
# 1e-6 on another (up to 1.6e-6 seen on an AVX2-only AMD EPYC against the card's values, stored to 6 decimals)
CROSS_CPU_SCORE_TOLERANCE = 1e-5


def _test_split_image(detector, data_root: Path) -> Path:
    return located(detector.card["split"]["test"][0])


def test_analysis_has_everything_a_person_needs(detector, data_root: Path):
    result = detector.analyze(_test_split_image(detector, data_root))
    size, scales = detector.config.preprocess.size, len(detector.scales)
    assert result.original.shape == (size, size, 3) and result.original.dtype == np.uint8
    assert result.masked.shape == result.inpainted.shape == (scales, size, size, 3)
    assert result.heatmap.shape == (size, size)
    assert result.score == pytest.approx(float(result.heatmap.mean()), abs=1e-6)  # the score's own map
    assert result.heatmap_overlay().shape == (size, size, 3)
    assert result.threshold == detector.card["threshold"]["value"]
    assert result.verdict in set(Verdict)
    assert np.isfinite(result.score)
    # the masked view really hides pixels and the inpainting is not a copy of the original
    assert (result.masked[0] != result.original).any()
    assert not np.array_equal(result.inpainted[0], result.original)


def test_same_photo_same_score_across_detectors_and_batching(detector, data_root: Path):
    paths = [located(p) for p in detector.card["split"]["val"][-2:]]  # MSLD photos the gates pass
    first = [detector.analyze(p).score for p in paths]
    assert np.isfinite(first).all()
    again = MIMDetector.load(SHIPPED_WEIGHTS)
    assert [again.analyze(p).score for p in paths] == first
    batched = [a.score for a in detector.analyze_batch(paths)]
    assert np.allclose(batched, first, rtol=0, atol=1e-6)  # batch size changes float summation order


def test_val_mpox_photos_fall_at_or_under_the_threshold(detector, data_root: Path):
    # the threshold was set as the max MIM score over the mpox val split: re-derive it
    scores = [detector.analyze(located(p)).score for p in detector.card["split"]["val"]]
    assert max(scores) == pytest.approx(detector.threshold, abs=CROSS_CPU_SCORE_TOLERANCE)


def test_flat_and_non_skin_pictures_are_not_usable(detector):
    flat = np.full((300, 300, 3), 128, dtype=np.uint8)
    assert detector.analyze(flat).verdict is Verdict.UNUSABLE
    blue = np.zeros((300, 300, 3), dtype=np.uint8)
    blue[..., 2] = np.random.default_rng(0).integers(100, 255, (300, 300))
    assert detector.analyze(blue).verdict is Verdict.UNUSABLE
    assert detector.analyze(Image.fromarray(blue).convert("L").convert("RGB")).verdict is Verdict.UNUSABLE


def test_tampered_weights_are_refused(tmp_path: Path):
    weights = tmp_path / "mim_gan.pt"
    shipped_copy(tmp_path)
    MIMDetector.load(weights)  # an intact copy loads
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its model card"):
        MIMDetector.load(weights)


def test_missing_card_is_a_clear_error(tmp_path: Path):
    weights = tmp_path / "alone.pt"
    shutil.copy(SHIPPED_WEIGHTS, weights)
    with pytest.raises(WeightsError, match="Model card"):
        MIMDetector.load(weights)


def test_a_card_without_threshold_is_refused(tmp_path: Path):
    import json

    weights = shipped_copy(tmp_path)
    card = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())
    del card["threshold"]
    weights.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="no calibrated threshold"):
        MIMDetector.load(weights)


def test_a_card_written_for_another_network_is_refused(tmp_path: Path):
    import json

    weights = shipped_copy(tmp_path)
    card = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())
    wider = {**card, "architecture": {**card["architecture"], "width": 32}}
    weights.with_suffix(".json").write_text(json.dumps(wider))
    with pytest.raises(WeightsError, match="describes another network"):
        MIMDetector.load(weights)
    other_recipe = json.loads(json.dumps(card))
    other_recipe["config"]["masks"]["seed"] = 1
    weights.with_suffix(".json").write_text(json.dumps(other_recipe))
    with pytest.raises(WeightsError, match=r"written for another model .*masks\.seed"):
        MIMDetector.load(weights)


def test_a_refused_photo_never_reaches_the_model(detector, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the quality gate must refuse before any inference")

    monkeypatch.setattr(detector, "score_tensors", no_model)
    result = detector.analyze(np.full((300, 300, 3), 128, dtype=np.uint8))
    assert result.verdict is Verdict.UNUSABLE and result.verdict.is_refusal and "blank" in result.reason
    assert np.isnan(result.score) and result.inpainted is None and result.heatmap is None
    assert result.summary()["score"] is None
