"""The evaluation harness on a small slice: every file, every control, the watermark check."""

import json
from pathlib import Path

import pytest
import torch

from mim_core.evaluation.evaluate import evaluate
from mim_core.protocol import DEV_CLASSES
from tests.conftest import SHIPPED_WEIGHTS


def test_evaluate_writes_every_table_with_controls(tmp_path: Path, data_root: Path, detector):
    results = evaluate(SHIPPED_WEIGHTS, data_root, tmp_path, per_class_limit=2)
    for name in ("evaluation.md", "results.json", "per_class_auroc.csv", "scores.csv", "roc.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "results.json").read_text())["selected"] == results["selected"]
    assert results["selected"].startswith("mim:")
    controls = set(results["controls"])
    assert {"control:complexity", "control:colour-stats"} <= controls
    assert any(c.startswith("control:gauss-fill") for c in controls)
    assert any(c.startswith("control:fill-ratio") for c in controls)
    # 21 DermNet test classes + MSLD Others, for MIM and each control
    assert len(results["test"]["per_class"]) == 22 * (1 + len(controls))
    assert len(results["test"]["dermnet_test_classes"]) == 21
    assert not set(results["test"]["dermnet_test_classes"]) & {f"DermNetNZ/{c}" for c in DEV_CLASSES}
    # the central crop never reaches the watermark: blanking it changes no crop and no AUROC
    wm = results["watermark"]
    assert wm["identical_crops"] == wm["n_dermnet"] == 62
    assert wm["difference"] == 0
    text = (tmp_path / "evaluation.md").read_text()
    assert "margin over the best control" in text and "Watermark check" in text


def test_dermnet_resampling_stress_check(tmp_path: Path, data_root: Path, detector):
    import pandas as pd
    import pytest

    from mim_core.evaluation.evaluate import measure_all

    table = pd.DataFrame([{"path": "DermNetNZ/Orf/" + sorted(p.name for p in (data_root / "DermNetNZ" / "Orf").iterdir())[0],
                           "dataset": "DermNetNZ", "class": "DermNetNZ/Orf", "group": "g", "role": "test"}])
    native = measure_all(detector, data_root, table).iloc[0]
    shrunk = measure_all(detector, data_root, table, dermnet_short_side=224).iloc[0]
    # shrinking before the crop changes what the model sees (less resampling left to do, a smoother crop)
    assert shrunk["png_bpp"] != native["png_bpp"]
    assert shrunk["err_gan_ssim"] != native["err_gan_ssim"]
    with pytest.raises(ValueError, match="stress check"):
        evaluate(SHIPPED_WEIGHTS, data_root, tmp_path, update_card=True, dermnet_short_side=224)


def test_background_reference_adds_its_scores(data_root: Path):
    import copy

    import pandas as pd

    from mim_core.detector import MIMDetector
    from mim_core.evaluation.evaluate import compute_scores, measure_all

    detector = MIMDetector.load(SHIPPED_WEIGHTS)
    mpox = sorted((data_root / "MSLD_v1" / "Monkeypox").iterdir())[:2]
    table = pd.DataFrame([{"path": str(p.relative_to(data_root)), "dataset": "MSLD_v1", "class": "MSLD_v1/Monkeypox",
                           "group": p.name, "role": "mpox_train"} for p in mpox])
    plain = measure_all(detector, data_root, table)
    assert not any(c.startswith("err_background_") for c in plain)
    # a reference that is a copy of the inpainter itself: the same errors, so every score is ~0
    detector.background = copy.deepcopy(detector.generator).to(memory_format=torch.contiguous_format)
    measured = measure_all(detector, data_root, table)
    scores = compute_scores(measured)
    for kind in ("l1", "ssim", "msgms"):
        assert measured[f"err_background_{kind}"].to_numpy() == pytest.approx(measured[f"err_gan_{kind}"].to_numpy(), rel=1e-4)
        assert scores[f"mim:{kind}/background"].abs().max() < 1e-3
