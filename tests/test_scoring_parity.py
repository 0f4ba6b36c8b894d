"""One scoring path: every ``mim:*`` variant the evaluation knows gives the detector's score, and every
score is the mean of its own map."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mim_core.config import MeasureConfig
from mim_core.detector import MIMDetector
from mim_core.evaluation.evaluate import compute_scores, measure_all, measure_config_for, mim_variants
from tests.conftest import located


@pytest.fixture(scope="module")
def photos(data_root: Path) -> pd.DataFrame:
    """Two mpox photos and two DermNet photos, as the evaluation's table."""
    mpox = sorted((data_root / "MSLD_v1" / "Monkeypox").iterdir())[:2]
    other = sorted((data_root / "DermNetNZ" / "Orf").iterdir())[:2]
    rows = [{"path": str(p.relative_to(data_root)), "dataset": "MSLD_v1", "class": "MSLD_v1/Monkeypox",
             "group": p.stem.rpartition("_")[0], "role": "mpox_train"} for p in mpox]
    rows += [{"path": str(p.relative_to(data_root)), "dataset": "DermNetNZ", "class": "DermNetNZ/Orf",
              "group": p.name, "role": "test"} for p in other]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def whole_bank(detector) -> MIMDetector:
    """The shipped detector over the whole mask bank: every variant measurable."""
    return detector.with_measure(scales=())


def test_every_evaluated_variant_is_the_detectors_score(whole_bank, photos, data_root: Path):
    measured = measure_all(whole_bank, data_root, photos)
    evaluated = compute_scores(measured)
    variants = mim_variants(measured)
    # 3 maps x 2 references, over the whole bank and over each of its 3 scales alone
    assert len(variants) == 24
    assert {"mim:ssim/gauss", "mim:l1", "mim:msgms/gauss@32", "mim:ssim/gauss@8"} <= set(variants)
    paths = [located(p) for p in photos["path"]]
    for name in variants:
        # the variant's measure on the same (denoised) views: the card's denoise step and its gate's clean level
        measure = MeasureConfig(**measure_config_for(name), denoise=whole_bank.config.measure.denoise)
        config = whole_bank.config.replace(measure=measure)
        detector = MIMDetector(whole_bank.generator, config, 0.0, {})
        detector.gate = replace(detector.gate, clean_noise=whole_bank.gate.clean_noise)
        analyses = [detector.analyze(p) for p in paths]  # one photo at a time, as the evaluation measures
        scores = np.array([a.score for a in analyses])
        assert np.array_equal(scores, evaluated[name].to_numpy()), name
        for a in analyses:  # the shown map is the score's own: its mean is the score
            assert float(a.heatmap.mean()) == pytest.approx(a.score, abs=2e-6), name
            assert np.allclose(a.scale_heatmaps.mean(axis=0), a.heatmap)
            assert a.diverging == ("/" in name)
            assert a.scales == (measure_config_for(name)["scales"] or whole_bank.config.masks.scales)


def test_reused_measurements_give_the_same_scores(whole_bank, photos, data_root: Path, tmp_path: Path):
    measured = measure_all(whole_bank, data_root, photos)
    measured.to_csv(tmp_path / "measurements.csv", index=False)
    again = compute_scores(pd.read_csv(tmp_path / "measurements.csv"))
    mim = [c for c in again if c.startswith("mim:")]
    assert np.array_equal(again[mim].to_numpy(), compute_scores(measured)[mim].to_numpy())


def test_shipped_score_is_the_mean_of_the_shown_map(detector, data_root: Path):
    """Every demo example and a sample of the data: the map the demo draws is the score's own."""
    from demo.app import example_photos

    examples = [Path(p) for p in example_photos()]
    data = [located(p) for p in detector.card["split"]["test"][:6]]
    data += [sorted((data_root / "DermNetNZ" / c).iterdir())[0] for c in ("Orf", "Scabies", "Impetigo")]
    analyses = dict(zip(examples + data, detector.analyze_batch(examples + data)))
    assert not any(analyses[p].verdict.is_refusal for p in examples)  # the demo's examples all pass the gate
    scored = {p: a for p, a in analyses.items() if not a.verdict.is_refusal}  # the gate refuses ~5 % of clean mpox
    assert len(scored) >= len(examples) + 6
    for path, analysis in scored.items():
        assert float(analysis.heatmap.mean()) == pytest.approx(analysis.score, abs=2e-6), path
