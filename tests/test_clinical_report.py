"""Model runs through cards, and the report's numbers checked against independent computations."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from clinical import models
from clinical.cases import collect_images, import_images
from clinical.delong import delong_test
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
