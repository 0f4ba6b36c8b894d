"""Pictures that are not skin are refused as "not a usable skin photo", before any judgement of their noise,
blur, compression or light; skin photos, mpox or grainy, keep their verdicts.

The non-skin photos are real photos that ship inside installed packages (located through the package, never
copied): Gradio's cheetahs, scikit-learn's temple and flower.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mim_core.benchmark.corruptions import gaussian_noise
from mim_core.data import decode_image, preprocess, to_uint8
from mim_core.detector import NOT_SKIN_REASON
from mim_core.gate import REFUSALS, acquisition_refusal, effective_resolution, measure_quality, quality_gate
from mim_core.verdict import Verdict
from tests.conftest import located

NON_SKIN = [("gradio", "media_assets/images/cheetah.jpg"), ("gradio", "test_data/cheetah2.jpg"),
            ("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg")]


def package_file(package: str, relative: str) -> Path:
    path = Path(importlib.import_module(package).__file__).parent / relative
    assert path.is_file(), f"{relative} no longer ships with {package}"
    return path


@pytest.mark.parametrize("package, relative", NON_SKIN, ids=[Path(r).stem for _, r in NON_SKIN])
def test_a_photo_of_no_skin_is_refused_as_not_a_skin_photo(detector, package: str, relative: str):
    analysis = detector.analyze(package_file(package, relative))
    assert analysis.verdict is Verdict.UNUSABLE and analysis.reason == NOT_SKIN_REASON
    assert "skin" in analysis.reason and "grain" not in analysis.reason  # the cause, not a photo fault
    assert np.isnan(analysis.score) and analysis.inpainted is None  # refused before the model


def _gate_alone(detector, photo: Path | Image.Image):
    """What the model-free and acquisition checks alone say, without the appearance checks."""
    photo = decode_image(photo)
    view = to_uint8(preprocess(photo, detector.config.preprocess))
    return quality_gate(view, None) or acquisition_refusal(
        measure_quality(view, effective_resolution(photo, detector.config.preprocess)), detector.gate)


def test_not_skin_wins_over_the_noise_its_fur_shows(detector):
    """Gradio's small cheetah: its fur passes the skin-colour check and reads as grain to the noise
    measurement, so the acquisition gate alone calls it too noisy; the whole-view check runs first."""
    cheetah = package_file("gradio", "media_assets/images/cheetah1.jpg")
    assert _gate_alone(detector, cheetah).verdict is Verdict.TOO_NOISY
    analysis = detector.analyze(cheetah)
    assert analysis.verdict is Verdict.UNUSABLE and analysis.reason == NOT_SKIN_REASON


def test_grainy_skin_is_still_too_noisy(detector, data_root: Path):
    """Noise added to an mpox photo, and sharp DermNet dev photos whose scaly texture reads as grain: skin
    photos with a photo fault keep that fault as their reason."""
    photo = np.asarray(decode_image(located(detector.card["split"]["val"][0])))
    noisy = [Image.fromarray(gaussian_noise(photo, severity, seed=5)) for severity in (2, 3, 4, 5)]
    textured = sorted((data_root / "DermNetNZ" / "Basal_cell_carcinoma").iterdir())
    grainy = [p for p in noisy + textured if (d := _gate_alone(detector, p)) is not None
              and d.verdict is Verdict.TOO_NOISY]  # what the acquisition gate alone calls too noisy
    assert len([p for p in grainy if isinstance(p, Image.Image)]) >= 3 and len(grainy) >= 6
    for analysis in detector.analyze_batch(grainy):
        assert analysis.verdict is Verdict.TOO_NOISY and analysis.reason == REFUSALS[Verdict.TOO_NOISY]


def test_no_mpox_photo_of_either_source_is_refused_as_not_skin(detector, data_root: Path, msid_root: Path):
    """Every MSLD and MSID mpox photo gets what the gate alone gives it: the not-skin checks refuse none
    (the refused share of mpox photos does not rise)."""
    paths = sorted((data_root / "MSLD_v1" / "Monkeypox").iterdir()) + sorted((msid_root / "MSID" / "Monkeypox").iterdir())
    for start in range(0, len(paths), 32):
        chunk = paths[start:start + 32]
        photos = [decode_image(p) for p in chunk]
        views = torch.stack([preprocess(p, detector.config.preprocess) for p in photos])
        resolutions = [effective_resolution(p, detector.config.preprocess) for p in photos]
        refusals = detector.refusals(views, resolutions)[0]
        for path, refusal in zip(chunk, refusals):
            alone = _gate_alone(detector, path)
            assert (refusal and refusal.reason) == (alone and alone.reason), path.name
