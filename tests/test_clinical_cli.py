"""`python -m clinical` end to end on a few real images, as a study coordinator runs it."""

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, dump

MPOX = ["MSLD_v1/Monkeypox/P13_1.jpg", "MSLD_v1/Monkeypox/P14_1.jpg", "MSLD_v1/Monkeypox/P15_1.jpg"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "clinical", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


def refused(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and pattern in result.stderr


@pytest.fixture
def study(tmp_path: Path, data_root: Path) -> Path:
    """tmp/MSLD_v1/{Monkeypox,Others} with three real photos each and one broken file."""
    others = sorted((data_root / "MSLD_v1" / "Others").iterdir())[:3]
    for rel in MPOX:
        (tmp_path / "MSLD_v1" / "Monkeypox").mkdir(parents=True, exist_ok=True)
        shutil.copy(data_root / rel, tmp_path / "MSLD_v1" / "Monkeypox")
    (tmp_path / "MSLD_v1" / "Others").mkdir()
    for path in others:
        shutil.copy(path, tmp_path / "MSLD_v1" / "Others")
    (tmp_path / "MSLD_v1" / "Others" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return tmp_path


def test_import_run_verdicts_report(study: Path, detector):
    db, out = study / "study.sqlite", study / "report"
    refused(run("import-cases", "--db", str(db), "--label-from-folder", str(study / "missing")), "is not a folder")
    assert not db.exists()
    refused(run("run-models", "--db", str(db)), "No clinical database")
    assert not db.exists()

    result = run("import-cases", "--db", str(db), "--label-from-folder", str(study / "MSLD_v1"))
    assert result.returncode == 0, result.stderr
    assert "imported 6 case(s); 1 excluded" in result.stdout and "broken.jpg" in result.stderr

    result = run("run-models", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^mim-gan: run \d+, scored 6 case\(s\)", result.stdout, re.M)
    baselines = sorted(json.loads(card.read_text())["name"] for card in (REPO / "weights").glob("*.json")
                       if json.loads(card.read_text()).get("kind") == "classifier")
    assert baselines, "the classifier baselines of issue #6 ship in weights/"
    assert all(f"{name}: run " in result.stdout for name in baselines)
    conn = sqlite3.connect(db)
    scores = dict(conn.execute("SELECT c.file_name, p.score FROM predictions p JOIN cases c ON c.id = p.case_id "
                               "JOIN model_runs r ON r.id = p.run_id WHERE r.model_name = 'mim-gan'"))
    conn.close()
    assert len(scores) == 6
    first = study / MPOX[0]
    assert scores[first.name] == pytest.approx(detector.analyze(first).score, abs=1e-6)  # stored pixels = original's

    sha = hashlib.sha256((study / MPOX[1]).read_bytes()).hexdigest()
    others = sorted(p.name for p in (study / "MSLD_v1" / "Others").iterdir() if p.name != "broken.jpg")
    lines = ["reviewer,case,phase,label,confidence"]
    for reviewer, wrong in (("ana", None), ("ben", others[0])):
        for phase in ("aided", "unaided"):  # aided rows first in the file: stored after the unaided ones
            lines += [f"{reviewer},{Path(m).name},{phase},mpox,4" for m in MPOX[:1]]
            lines += [f"{reviewer},{sha},{phase},mpox,3"]
            lines += [f"{reviewer},{o},{phase},{'mpox' if o == wrong else 'not mpox'},2" for o in others]
    good = study / "verdicts.csv"
    good.write_text("\n".join(lines) + "\n")
    result = run("import-verdicts", "--db", str(db), str(good))
    assert result.returncode == 0, result.stderr
    assert "imported 20 verdict(s); reviewers created without a credential: ana, ben" in result.stdout

    before = dump(db)
    bad = study / "bad.csv"
    bad.write_text("reviewer,case,phase,label,confidence\ncy,P13_1.jpg,unaided,mpox,3\ncy,P14_1.jpg,unaided,maybe,3\n")
    refused(run("import-verdicts", "--db", str(db), str(bad)), "Line 3: label 'maybe' is not one of")
    bad.write_text("reviewer,case,phase,label,confidence\ncy,P13_1.jpg,unaided,mpox,3\ncy,nobody.jpg,unaided,mpox,3\n")
    refused(run("import-verdicts", "--db", str(db), str(bad)), "Line 3: no imported case matches 'nobody.jpg'")
    refused(run("import-verdicts", "--db", str(db), str(good)), "already has a verdict")
    assert dump(db) == before  # rejected imports changed nothing (no reviewer 'cy', no session, no verdict)

    result = run("report", "--db", str(db), "--out", str(out), "--n-boot", "200")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"report.html", "metrics.json", "verdicts.csv", "predictions.csv",
                                               "cases.csv"}
    metrics = json.loads((out / "metrics.json").read_text())
    mim = metrics["models"]["mim-gan"]
    assert 0 <= mim["auroc"] <= 1 and len(mim["auroc_ci"]) == 2
    assert mim["sensitivity"] is not None and mim["specificity"] is not None
    assert set(metrics["delong"]) == set(baselines)  # every baseline compared with MIM on the same cases
    assert metrics["reviewers"]["ana"]["unaided"]["sensitivity"] == 1.0
    assert metrics["reviewers"]["ben"]["aided"]["specificity"] == pytest.approx(round(2 / 3, 4))
    assert metrics["kappa"]["cohen"]["ana__ben"]["aided"] is not None
    assert metrics["kappa"]["fleiss"]["unaided"] is not None
    assert metrics["flow"]["excluded"] == 1 and metrics["flow"]["unaided"]["cases_read"] == 5
    assert "No baseline available" not in (out / "report.html").read_text()


class MeanRed:
    """A toy model: the photo's mean red value (for the progress test; no weights to load)."""

    def __init__(self, weights: Path, card: dict) -> None:
        self.card = card

    def score(self, image) -> tuple[float, str]:
        import numpy as np

        return float(np.asarray(image)[..., 0].mean()), "mpox-like"


def test_run_models_reports_progress_per_saved_chunk(study: Path):
    from clinical import models
    from clinical.cases import collect_images, import_images
    from clinical.store import Store

    store = Store(study / "progress.sqlite")
    import_images(store, collect_images([study / "MSLD_v1"]))
    weights = study / "weights"
    weights.mkdir()
    (weights / "red.bin").write_bytes(b"red")
    (weights / "red.json").write_text(json.dumps({"name": "red", "kind": "toy-red", "weights_file": "red.bin",
                                                  "threshold": {"value": 120.0},
                                                  "score_direction": "higher = more mpox-like"}))
    models.register_scorer("toy-red", MeanRed)
    lines: list[str] = []
    models.run_models(store, weights, log=lines.append, chunk=2)
    assert lines == ["red: 2 of 6 case(s) scored and saved", "red: 4 of 6 case(s) scored and saved",
                     "red: 6 of 6 case(s) scored and saved", "red: run 1, scored 6 case(s), 0 already scored"]
