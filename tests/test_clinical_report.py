"""Model runs through cards, and the report's numbers checked against independent computations."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from clinical import models
from clinical.cases import collect_images, import_images
from clinical.csv_export import safe_cell
from clinical.delong import delong_test
from clinical.mrmc import analyze
from clinical.report import write_report
from clinical.store import Store

N_PER_CLASS = 6


@pytest.fixture
def store(tmp_path: Path) -> Store:
    rng = np.random.default_rng(3)
    for label in ("Monkeypox", "Others"):
        (tmp_path / "ds" / label).mkdir(parents=True)
        for i in range(N_PER_CLASS):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "ds" / label / f"{i}.png")
    store = Store(tmp_path / "study.sqlite")
    import_images(store, collect_images([tmp_path / "ds"]))
    return store


class MeanBrightness:
    """A toy 'classifier' for the registry: score = mean pixel value."""

    def __init__(self, weights: Path, card: dict) -> None:
        self.card = card

    def score(self, image: Image.Image) -> tuple[float, str]:
        value = float(np.asarray(image).mean())
        return value, "mpox-like" if value >= self.card["threshold"]["value"] else "not mpox-like"


def test_run_models_uses_cards_and_the_registry(store: Store, tmp_path: Path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "toy.bin").write_bytes(b"toy weights")
    card = {"name": "toy", "kind": "toy", "weights_file": "toy.bin", "score_direction": "higher = more mpox-like",
            "threshold": {"value": 127.5}}
    (weights / "toy.json").write_text(json.dumps(card))
    (weights / "cnn.json").write_text(json.dumps({"name": "cnn", "kind": "classifier", "weights_file": "cnn.pt"}))
    vit = {"name": "vit", "kind": "vision-transformer", "weights_file": "vit.bin"}  # a kind nobody registered
    (weights / "vit.json").write_text(json.dumps(vit))
    (weights / "vit.bin").write_bytes(b"x")
    models.register_scorer("toy", MeanBrightness)
    notes: list[str] = []
    first = models.run_models(store, weights, log=notes.append)
    assert [(s["model"], s["scored"], s["already"]) for s in first] == [("toy", 2 * N_PER_CLASS, 0)]
    assert any("cnn: skipped, weights file cnn.pt not present" in n for n in notes)
    assert any("vit: skipped, no scorer registered for kind 'vision-transformer'" in n for n in notes)
    again = models.run_models(store, weights, log=notes.append)
    assert [(s["scored"], s["already"]) for s in again] == [(0, 2 * N_PER_CLASS)]
    run = store.runs()[0]
    assert (run["mpox_when"], run["threshold"], run["kind"]) == ("higher", 127.5, "toy")
    scores = {p["case_id"]: p["score"] for p in store.predictions()}
    some = store.cases()[0]["id"]
    assert scores[some] == pytest.approx(np.asarray(Image.open(io.BytesIO(store.case_png(some)))).mean())


def add_run(store: Store, name: str, kind: str, mpox_when: str, threshold: float, scores: dict[str, float]) -> None:
    run_id = store.model_run({"model_name": name, "kind": kind, "version": f"{name}-1", "weights_sha256": "0" * 64,
                              "threshold": threshold, "mpox_when": mpox_when, "run_key": name, "config": {},
                              "card": {"name": name}})
    store.add_predictions(run_id, [{"case_id": c, "score": s, "label": "-"} for c, s in scores.items()])


def test_report_numbers_match_independent_computations(store: Store, tmp_path: Path):
    cases = store.cases()
    truth = np.array([c["reference_label"] == "mpox" for c in cases])
    rng = np.random.default_rng(7)
    mim = np.round(np.where(truth, 0.0, 1.0) + rng.normal(0, 0.8, len(cases)), 2)  # lower = mpox
    cnn = np.round(np.where(truth, 1.0, 0.0) + rng.normal(0, 1.2, len(cases)), 2)  # higher = mpox
    add_run(store, "mim-gan", "mim", "lower", 0.5, dict(zip([c["id"] for c in cases], mim)))
    add_run(store, "cnn", "classifier", "higher", 0.5, dict(zip([c["id"] for c in cases], cnn)))
    labels = {"ana": ["mpox" if t else "not mpox" for t in truth],
              "ben": ["mpox" if (t if i % 4 else not t) else "not mpox" for i, t in enumerate(truth)],
              "cy": ["uncertain" if i % 3 == 0 else ("mpox" if t else "not mpox") for i, t in enumerate(truth)]}
    rows = ["reviewer,case,phase,label,confidence"]
    for reviewer, chosen in labels.items():
        for phase in ("unaided", "aided"):
            rows += [f"{reviewer},{c['id']},{phase},{label},3" for c, label in zip(cases, chosen)]
    (tmp_path / "v.csv").write_text("\n".join(rows) + "\n")
    from clinical.verdicts_io import import_verdicts
    import_verdicts(store, tmp_path / "v.csv")

    metrics = write_report(store, tmp_path / "out", n_boot=200)
    m = metrics["models"]
    assert m["mim-gan"]["auroc"] == pytest.approx(roc_auc_score(truth, -mim), abs=1e-4)
    assert m["cnn"]["auroc"] == pytest.approx(roc_auc_score(truth, cnn), abs=1e-4)
    assert m["mim-gan"]["sensitivity"] == pytest.approx(round((mim[truth] <= 0.5).mean(), 4))
    assert m["cnn"]["specificity"] == pytest.approx(round((cnn[~truth] < 0.5).mean(), 4))
    assert len(m["mim-gan"]["auroc_ci"]) == 2
    expected = delong_test(truth, -mim, cnn)
    assert metrics["delong"]["cnn"]["p_value"] == pytest.approx(expected.p_value, abs=1e-6)
    assert metrics["delong"]["cnn"]["vs"] == "mim-gan"
    ben = np.array([lab == "mpox" for lab in labels["ben"]])
    assert metrics["reviewers"]["ben"]["aided"]["sensitivity"] == pytest.approx(round(ben[truth].mean(), 4))
    assert metrics["reviewers"]["cy"]["unaided"]["specificity"] == pytest.approx(
        round(np.mean([lab == "not mpox" for lab, t in zip(labels["cy"], truth) if not t]), 4))  # uncertain = positive
    assert metrics["kappa"]["cohen"]["ana__ben"]["unaided"] == pytest.approx(
        cohen_kappa_score(labels["ana"], labels["ben"]), abs=1e-4)
    assert metrics["kappa"]["fleiss"]["aided"] is not None and metrics["kappa"]["fleiss_n"]["aided"] == len(cases)
    assert metrics["flow"]["cases_imported"] == 2 * N_PER_CLASS
    assert metrics["flow"]["aided"]["verdicts"] == 3 * len(cases)
    assert metrics["mim_vs_reviewer_majority"]["unaided"]["n"] > 0

    out = tmp_path / "out"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "src='http" not in html and "<link" not in html
    assert json.loads((out / "metrics.json").read_text()) == metrics
    with (out / "predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2 * len(cases)
    with (out / "verdicts.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 6 * len(cases)


def test_single_model_report_says_no_baseline(store: Store, tmp_path: Path):
    cases = store.cases()
    add_run(store, "mim-gan", "mim", "lower", 0.5, {c["id"]: float(i) for i, c in enumerate(cases)})
    metrics = write_report(store, tmp_path / "out", n_boot=100)
    assert metrics["delong"] == {} and metrics["reviewers"] == {} and metrics["kappa"]["fleiss"]["unaided"] is None
    assert "No baseline available" in (tmp_path / "out" / "report.html").read_text()


def _import(store: Store, path: Path, rows: list[dict]) -> None:
    from clinical.verdicts_io import import_verdicts
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import_verdicts(store, path)


def test_report_mrmc_reading_time_cases_and_design(store: Store, tmp_path: Path):
    cases = store.cases()
    truth = {c["id"]: c["reference_label"] == "mpox" for c in cases}
    rng = np.random.default_rng(5)
    mim = {c["id"]: float(np.round(rng.normal(0.0 if truth[c["id"]] else 1.0, 0.7), 3)) for c in cases}
    add_run(store, "mim-gan", "mim", "lower", 0.5, mim)
    rows, skipped = [], {cases[0]["id"], cases[-1]["id"]}  # cy never reads these two aided
    for reader, skill in (("ana", 0.6), ("ben", 0.2), ("cy", 0.4)):
        for phase, boost in (("unaided", 0.0), ("aided", 0.4)):
            for c in cases:
                if reader == "cy" and phase == "aided" and c["id"] in skipped:
                    continue
                x = (skill + boost) * (1 if truth[c["id"]] else -1) + rng.normal()
                label = "mpox" if x > 0.4 else "not mpox" if x < -0.4 else rng.choice(["uncertain", "ungradable"])
                rows.append({"reviewer": reader, "case": c["id"], "phase": phase, "label": label,
                             "confidence": int(np.clip(round(abs(x) * 2) + 1, 1, 5)),
                             "lead_time_s": round(float(rng.uniform(3, 40)), 1)})
    _import(store, tmp_path / "v.csv", rows)
    metrics = write_report(store, tmp_path / "out", n_boot=50)

    # MRMC: the cases all three read in both phases, on a scale coded independently here
    # (any monotone coding of verdict and confidence gives the same AUROCs and the same analysis)
    common = sorted(set(truth) - skipped)
    code = {"mpox": 1, "not mpox": -1, "uncertain": 0, "ungradable": 0}
    table = pd.DataFrame([{"reader": r["reviewer"], "case": r["case"], "modality": r["phase"],
                           "truth": int(truth[r["case"]]), "score": code[r["label"]] * r["confidence"]}
                          for r in rows if r["case"] in common])
    expected = analyze(table, modalities=("aided", "unaided"))
    m = metrics["mrmc"]
    assert m["available"] and m["n_cases"] == 10 and m["cases_left_out"] == 2 and m["case_sets_differ"]
    assert "only the 10 cases that every reader read in both phases" in m["warning"]
    assert m["auroc"]["difference"] == pytest.approx(expected["difference"])
    assert m["auroc"]["ci"] == pytest.approx(expected["ci"])
    assert m["auroc"]["p_value"] == pytest.approx(expected["p_value"]) and 0 < expected["p_value"] < 1
    assert m["auroc"]["ddf"] == pytest.approx(expected["ddf"])
    assert m["auroc"]["difference"] == pytest.approx(m["auroc"]["auc"]["aided"] - m["auroc"]["auc"]["unaided"])
    for reader in ("ana", "ben", "cy"):
        mine = table[(table.reader == reader) & (table.modality == "unaided")]
        assert m["auroc"]["reader_auc"]["unaided"][reader] == pytest.approx(roc_auc_score(mine.truth, mine.score))
    positive = table.assign(score=[r["label"] != "not mpox" for r in rows if r["case"] in common])
    sens = positive[(positive.truth == 1) & (positive.modality == "aided")].groupby("reader").score.mean().mean()
    assert m["sensitivity"]["auc"]["aided"] == pytest.approx(sens)  # uncertain/ungradable = referred (positive)

    times = [r["lead_time_s"] for r in rows if r["reviewer"] == "ben" and r["phase"] == "aided"]
    ben = metrics["reading_time"]["readers"]["ben"]["aided"]
    assert (ben["n"], ben["median_s"]) == (len(times), pytest.approx(np.median(times), abs=0.005))
    assert [ben["q1_s"], ben["q3_s"]] == pytest.approx(np.percentile(times, [25, 75]), abs=0.005)
    assert metrics["reading_time"]["all_readers"]["aided"]["n"] == 3 * len(cases) - 2
    assert metrics["design"]["imported_verdicts"] == len(rows)
    assert metrics["design"]["washout"].startswith("sequential reading") and metrics["design"]["settings"] == {}

    out = tmp_path / "out"
    html = (out / "report.html").read_text()
    for text in ("Multi-reader multi-case", "Different case sets", "Reading time", "Randomisation", "Washout",
                 "<h2>8. Cases</h2>", "not mpox with confidence 5", "name=viewport", "overflow-x:auto"):
        assert text in html
    assert html.count("<img") == 1  # models, reviewers and per-reader ROC curves in one figure
    with (out / "cases.csv").open(newline="") as handle:
        table_rows = list(csv.DictReader(handle))
    assert len(table_rows) == len(cases)
    by_case = {r["case_id"]: r for r in table_rows}
    first = next(r for r in rows if r["reviewer"] == "ana" and r["phase"] == "aided")
    assert by_case[first["case"]]["ana aided label"] == first["label"]
    assert by_case[first["case"]]["ana aided confidence"] == str(first["confidence"])
    assert float(by_case[first["case"]]["score mim-gan"]) == pytest.approx(mim[first["case"]])
    assert by_case[cases[0]["id"]]["cy aided label"] == ""


def test_report_without_a_second_reader_says_why_there_is_no_mrmc(store: Store, tmp_path: Path):
    cases = store.cases()
    _import(store, tmp_path / "v.csv", [{"reviewer": "ana", "case": c["id"], "phase": p, "label": "mpox",
                                         "confidence": 3} for c in cases for p in ("unaided", "aided")])
    metrics = write_report(store, tmp_path / "out", n_boot=50)
    assert not metrics["mrmc"]["available"] and "at least 2 readers" in metrics["mrmc"]["reason"]
    assert metrics["reading_time"]["readers"]["ana"]["aided"] == {"n": 0, "median_s": None, "q1_s": None,
                                                                  "q3_s": None, "without_time": len(cases)}
    assert "at least 2 readers" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("value, written", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+1", "'+1+1"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tcmd", "'\tcmd"), ("\rcmd", "'\rcmd"), ("-12.5", "-12.5"), ("+3", "+3"),
    ("-1e-3", "-1e-3"), ("plain = text", "plain = text"), ("", ""), (-0.25, -0.25), (7, 7), (None, None),
])
def test_safe_cell(value, written):
    assert safe_cell(value) == written


def test_exported_csvs_are_neutralised(store: Store, tmp_path: Path):
    (tmp_path / "evil" / "Others").mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "evil" / "Others" / "=cmd.png")
    import_images(store, collect_images([tmp_path / "evil"]))
    cases = store.cases()
    add_run(store, "mim-gan", "mim", "lower", 0.5, {c["id"]: -0.5 - i for i, c in enumerate(cases)})
    comments = ["=1+1", "@SUM(A1)", "-2+3", "-7", "fine"]
    _import(store, tmp_path / "v.csv", [
        {"reviewer": reader, "case": c["id"], "phase": p, "label": "mpox" if i % 2 else "not mpox",
         "confidence": 1 + i % 5, "comment": comments[i % len(comments)]}
        for reader in ("+ana", "ben") for i, c in enumerate(cases) for p in ("unaided", "aided")])
    write_report(store, tmp_path / "out", n_boot=50)
    out = tmp_path / "out"
    cells = {name: [row for row in csv.reader((out / name).open(newline=""))]
             for name in ("verdicts.csv", "predictions.csv", "cases.csv")}
    for name, table in cells.items():
        for row in table:
            for cell in row:
                assert cell[:1] not in ("=", "+", "@", "\t", "\r") and not (
                    cell.startswith("-") and not cell.lstrip("-").replace(".", "").replace("e", "").isdigit()), \
                    (name, cell)
    verdicts = list(csv.DictReader((out / "verdicts.csv").open(newline="")))
    assert {v["comment"] for v in verdicts} == {"'=1+1", "'@SUM(A1)", "'-2+3", "-7", "fine"}
    assert {v["reviewer_id"] for v in verdicts} == {"'+ana", "ben"}
    predictions = list(csv.DictReader((out / "predictions.csv").open(newline="")))
    assert "'=cmd.png" in {p["file_name"] for p in predictions}
    assert max(float(p["score"]) for p in predictions) == -0.5  # negative numbers stay numbers
    header = cells["cases.csv"][0]
    assert "'+ana unaided label" in header and "'=cmd.png" in {r[1] for r in cells["cases.csv"][1:]}
