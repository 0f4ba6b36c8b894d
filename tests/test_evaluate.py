"""The evaluation harness on a small slice: every file, every control, the watermark check."""

import json
from pathlib import Path

from mim_core.evaluate import evaluate
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

    from mim_core.evaluate import measure_all

    table = pd.DataFrame([{"path": "DermNetNZ/Orf/" + sorted(p.name for p in (data_root / "DermNetNZ" / "Orf").iterdir())[0],
                           "dataset": "DermNetNZ", "class": "DermNetNZ/Orf", "group": "g", "role": "test"}])
    native = measure_all(detector, data_root, table).iloc[0]
    shrunk = measure_all(detector, data_root, table, dermnet_short_side=224).iloc[0]
    # shrinking before the crop changes what the model sees (less resampling left to do, a smoother crop)
    assert shrunk["png_bpp"] != native["png_bpp"]
    assert shrunk["err_gan_ssim"] != native["err_gan_ssim"]
    with pytest.raises(ValueError, match="stress check"):
        evaluate(SHIPPED_WEIGHTS, data_root, tmp_path, update_card=True, dermnet_short_side=224)
