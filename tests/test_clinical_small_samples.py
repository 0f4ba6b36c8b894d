"""Small samples: the report warns when cases or readers are too few for a statistic (limits in clinical.stats)
and never prints a CI that collapsed to a point as if it were one."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from clinical.cases import collect_images, import_images
from clinical.report import NOT_ESTIMABLE, _fmt, write_report
from clinical.stats import MIN_CASES, MIN_PER_CLASS, MIN_READERS, ci_estimable, small_sample_warning
from clinical.store import Store


def study(root: Path, per_class: int) -> Store:
    rng = np.random.default_rng(1)
    for label in ("Monkeypox", "Others"):
        (root / "ds" / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "ds" / label / f"{i}.png")
    store = Store(root / "study.sqlite")
    import_images(store, collect_images([root / "ds"]))
    return store


def add_run(store: Store, name: str, kind: str, mpox_when: str, scores: dict[str, float]) -> None:
    run = store.model_run({"model_name": name, "kind": kind, "version": "1", "weights_sha256": "0" * 64,
                           "threshold": 0.5, "mpox_when": mpox_when, "run_key": name, "config": {}, "card": {}})
    store.add_predictions(run, [{"case_id": c, "score": s, "label": "-"} for c, s in scores.items()])


def read_all(store: Store, tmp_path: Path, readers: dict[str, list[str]]) -> None:
    from clinical.verdicts_io import import_verdicts
    cases = store.cases()
    rows = ["reviewer,case,phase,label,confidence"]
    for reader, labels in readers.items():  # labels: one list for both phases, or (unaided, aided)
        unaided, aided = labels if isinstance(labels, tuple) else (labels, labels)
        rows += [f"{reader},{c['id']},{phase},{label},{1 + (i * step + len(reader)) % 5}"
                 for phase, step, chosen in (("unaided", 1, unaided), ("aided", 2, aided))
                 for i, (c, label) in enumerate(zip(cases, chosen))]
    (tmp_path / "v.csv").write_text("\n".join(rows) + "\n")
    import_verdicts(store, tmp_path / "v.csv")


def test_limits_and_their_warning_text():
    assert (MIN_CASES, MIN_PER_CLASS, MIN_READERS) == (20, 10, 3)
    assert small_sample_warning("x", 10, 10) is None and small_sample_warning("x", n=20) is None
    text = small_sample_warning("the DeLong test", 3, 3)
    assert "6 case(s), 3 mpox / 3 not mpox" in text and "at least 20 cases" in text and "at least 10 per class" in text
    assert "2 reader(s)" in small_sample_warning("MRMC", 15, 15, n_readers=2)
    assert "at least 3 readers" in small_sample_warning("MRMC", 15, 15, n_readers=2)
    assert small_sample_warning("x", 30, 9) is not None  # enough cases, too few in one class
    assert not ci_estimable(0.0, 0.0) and not ci_estimable(0.0001, 0.0004) and not ci_estimable(None, 1.0)
    assert ci_estimable(-0.1, 0.2)
    assert _fmt(0.0, [0.0, 0.0]) == f"0.000 [{NOT_ESTIMABLE}]" and _fmt(0.5, [0.25, 0.75]) == "0.500 [0.250, 0.750]"


def test_a_six_case_report_warns_and_shows_no_point_ci(tmp_path: Path):
    store = study(tmp_path, 3)
    cases = store.cases()
    truth = [c["reference_label"] == "mpox" for c in cases]
    # the two models rank the cases identically: the DeLong variance is 0 and its CI collapses to [0, 0]
    add_run(store, "mim-gan", "mim", "lower", {c["id"]: (0.1 if t else 0.9) + i / 100 for i, (c, t) in
                                               enumerate(zip(cases, truth))})
    add_run(store, "cnn", "classifier", "higher", {c["id"]: (0.9 if t else 0.1) - i / 100 for i, (c, t) in
                                                   enumerate(zip(cases, truth))})
    read_all(store, tmp_path, {r: ["mpox" if t else "not mpox" for t in truth] for r in ("ana", "ben")})
    metrics = write_report(store, tmp_path / "out", n_boot=100)

    delong = metrics["delong"]["cnn"]
    assert delong["ci_low"] == delong["ci_high"] == 0.0 and delong["ci_estimable"] is False  # numbers kept
    assert "6 case(s), 3 mpox / 3 not mpox" in delong["small_sample_warning"]
    assert "not estimable" in delong["ci_warning"]
    assert "3 mpox / 3 not mpox" in metrics["models"]["mim-gan"]["small_sample_warning"]
    assert "2 reader(s)" in metrics["mrmc"]["small_sample_warning"]
    assert metrics["sample_size_limits"] == {"min_cases": 20, "min_per_class": 10, "min_readers": 3}
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["warnings"] == metrics["warnings"] and len(saved["warnings"]) >= 4
    assert delong["small_sample_warning"] in saved["warnings"] and metrics["mrmc"]["small_sample_warning"] in saved["warnings"]

    html = (tmp_path / "out" / "report.html").read_text()
    assert "[0.000, 0.000]" not in html and "[0.0000, 0.0000]" not in html and "[1.000, 1.000]" not in html
    assert f"[{NOT_ESTIMABLE}]" in html and "Small-sample warnings" in html
    assert "at least 20 cases with both classes present and at least 10 per class" in html
    assert "at least 3 readers for MRMC" in html
    assert html.count("<p class=warn><b>Small sample.</b>") >= 4  # under each statistic it concerns


def test_enough_cases_and_readers_no_warnings(tmp_path: Path):
    store = study(tmp_path, MIN_PER_CLASS)  # 20 cases, 10 per class, 3 readers: every limit met
    cases = store.cases()
    truth = [c["reference_label"] == "mpox" for c in cases]
    rng = np.random.default_rng(5)
    add_run(store, "mim-gan", "mim", "lower", {c["id"]: float(-t + rng.normal(0, 0.8)) for c, t in zip(cases, truth)})
    add_run(store, "cnn", "classifier", "higher", {c["id"]: float(t + rng.normal(0, 1.0)) for c, t in zip(cases, truth)})
    def calls(error: float) -> list[str]:
        return [("mpox" if t else "not mpox") if rng.random() > error else ("not mpox" if t else "mpox") for t in truth]

    readers = {r: (calls(0.3), calls(0.15)) for r in ("ana", "ben", "cy")}
    read_all(store, tmp_path, readers)
    metrics = write_report(store, tmp_path / "out", n_boot=100)
    assert metrics["mrmc"]["available"] and metrics["mrmc"]["small_sample_warning"] is None
    assert metrics["delong"]["cnn"]["small_sample_warning"] is None and metrics["delong"]["cnn"]["ci_estimable"]
    assert metrics["warnings"] == []
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Small-sample warnings" not in html and NOT_ESTIMABLE not in html
