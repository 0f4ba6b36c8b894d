"""The evaluation harness on a small slice: every file, every control, the watermark check."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mim_core.evaluation.evaluate import evaluate
from mim_core.evaluation.protocol import DEV_CLASSES
from tests.conftest import SHIPPED_WEIGHTS, shipped_copy


def test_evaluate_writes_every_table_with_controls(tmp_path: Path, data_root: Path, msid_root: Path, detector):
    weights = shipped_copy(tmp_path / "model")
    card = json.loads(weights.with_suffix(".json").read_text())
    card["config"]["measure"] = {"map": "l1", "reference": "none", "heatmap_max": 0.25}  # a worse measure
    weights.with_suffix(".json").write_text(json.dumps(card))
    results = evaluate(weights, [data_root, msid_root], tmp_path, per_class_limit=1)
    for name in ("evaluation.md", "results.json", "per_class_auroc.csv", "scores.csv", "roc.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "results.json").read_text())["selected"] == results["selected"] == "mim:l1"
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
    assert wm["identical_crops"] == wm["n_dermnet"] == 31
    assert wm["difference"] == 0
    text = (tmp_path / "evaluation.md").read_text()
    assert "margin over the best control" in text and "Watermark check" in text

    # both mpox sources: every figure also per source, with the same negatives
    scores = pd.read_csv(tmp_path / "scores.csv")
    others = scores["class"] == "MSLD_v1/Others"
    for source in ("MSLD_v1", "MSID"):
        mpox = (scores["role"] == "mpox_test") & (scores["dataset"] == source)
        assert mpox.any() and f"Mpox test photos of `{source}` only" in text
        oriented = -scores["mim:l1"]  # lower = more mpox-like in scores.csv; AUROC for "mpox scores higher"
        expected = roc_auc_score(np.r_[np.ones(mpox.sum()), np.zeros(others.sum())],
                                 np.r_[oriented[mpox], oriented[others]])
        assert results["per_source"][source]["mim:l1"]["others"]["auroc"] == pytest.approx(expected, abs=1e-4)

    # the card's own measure is reported and the card is left alone; every variant is ranked on dev beside it
    assert json.loads(weights.with_suffix(".json").read_text()) == card
    dev = {row["score"]: row for row in results["dev"]}
    assert len([s for s in dev if s.startswith("mim:")]) == 24  # 3 maps x 2 references x (whole bank + 3 scales)
    # every MIM score keeps MIM's direction; each control gets the direction that is better on dev
    assert all(dev[s]["mpox_when"] == "lower" for s in dev if s.startswith("mim:"))
    assert all(dev[s]["dev_mean_auroc"] >= 0.5 for s in dev if s.startswith("control:"))

    # --reuse-measurements: the same tables from measurements.csv, without the model
    reused = evaluate(weights, [data_root, msid_root], tmp_path, per_class_limit=1, reuse_measurements=True)
    assert reused["test"]["summary"] == results["test"]["summary"]
    assert reused["dev"] == results["dev"]
    stale = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**stale, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="measured with other weights"):  # never mixes two models' numbers
        evaluate(weights, [data_root, msid_root], tmp_path, per_class_limit=1, reuse_measurements=True)


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


def test_orient_keeps_mims_direction_and_gives_controls_their_better_one():
    import numpy as np
    import pandas as pd

    from mim_core.evaluation.report import orient

    rows = [{"class": "MSLD_v1/Monkeypox", "role": "mpox_val", "group": f"m{i}"} for i in range(6)]
    rows += [{"class": f"DermNetNZ/{c}", "role": "dev", "group": f"{c}{i}"} for c in DEV_CLASSES for i in range(3)]
    table = pd.DataFrame(rows)
    mpox = (table["role"] == "mpox_val").to_numpy()
    noise = np.random.default_rng(0).normal(0, 0.1, len(table))
    lower_for_mpox = np.where(mpox, 0.0, 1.0) + noise  # separates perfectly with lower = mpox
    scores = pd.DataFrame({"mim:backwards": -lower_for_mpox, "control:backwards": -lower_for_mpox,
                           "control:forwards": lower_for_mpox})
    oriented, dev = orient(scores, table)
    dev = dev.set_index("score")
    assert dev.loc["mim:backwards", "mpox_when"] == "lower"  # MIM is never flipped, even when it loses
    assert dev.loc["mim:backwards", "dev_mean_auroc"] < 0.5
    assert dev.loc["control:backwards", "mpox_when"] == "higher" and dev.loc["control:backwards", "dev_mean_auroc"] == 1
    assert dev.loc["control:forwards", "mpox_when"] == "lower" and dev.loc["control:forwards", "dev_mean_auroc"] == 1
    assert np.array_equal(oriented["control:backwards"], lower_for_mpox)
