"""Corrections: a new verdict supersedes the old one within its phase (append-only stays true), the
unaided verdict freezes once the model output is shown, the report counts the latest, the audit trail
keeps both; the same through ``python -m clinical correct``."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clinical.analysis import current_verdicts, flow_counts
from clinical.corrections import correct_verdict
from clinical.review import correctable, my_verdicts
from clinical.store import ClinicalError, Store
from tests.conftest import REPO, dump
from tests.clinical_study import signed_in, study_store


@pytest.fixture
def store(tmp_path: Path, data_root: Path) -> Store:
    return study_store(tmp_path, data_root, 2, {"ana": ("Dr Ana", "reviewer"), "ben": ("Dr Ben", "reviewer")})


def ref_of(store: Store, verdict_id: int) -> str:
    return store.query("SELECT ref FROM verdict_refs WHERE verdict_id = ?", [verdict_id])[0]["ref"]


def test_a_correction_supersedes_within_the_phase_and_the_report_counts_the_latest(store: Store):
    ana, ben = signed_in(store, "ana"), signed_in(store, "ben")
    case = store.cases()[0]["id"]
    first = store.add_verdict(ana, case, "unaided", "mpox", 4)
    second, second_ref = correct_verdict(store, ana, ref_of(store, first), "not mpox", 4, "misclick")
    third, _ = correct_verdict(store, ana, second_ref, "uncertain", 2)
    with pytest.raises(ClinicalError, match="already been corrected"):
        correct_verdict(store, ana, ref_of(store, first), "mpox", 5)  # only the latest can be corrected
    with pytest.raises(ClinicalError, match="Nothing to correct"):
        correct_verdict(store, ana, ref_of(store, third), "uncertain", 2)
    with pytest.raises(ClinicalError, match="your own verdicts"):
        correct_verdict(store, ben, ref_of(store, third), "mpox", 5)  # another reviewer's reference
    with pytest.raises(ClinicalError, match="confidence"):
        correct_verdict(store, ana, ref_of(store, third), "mpox", None)

    rows = store.all_verdicts()
    assert [(r["id"], r["supersedes"], r["superseded_by"]) for r in rows] == [
        (first, None, second), (second, first, third), (third, second, None)]
    assert [(v["label"], v["confidence"]) for v in current_verdicts(rows)] == [("uncertain", 2)]  # what counts
    assert flow_counts(store.cases(), rows)["corrections"] == 2
    trail = my_verdicts(store, ana)  # the audit trail keeps every link
    assert [(t[3], t[6], t[7]) for t in trail] == [("mpox", "", "corrected"), ("not mpox", trail[0][0], "corrected"),
                                                   ("uncertain", trail[1][0], "current")]
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE verdicts SET label = 'mpox' WHERE id = ?", [third])
    conn.close()


def test_the_unaided_verdict_freezes_when_the_model_output_is_shown(store: Store):
    ana = signed_in(store, "ana")
    case, other = store.cases()[0]["id"], store.cases()[1]["id"]
    first = store.add_verdict(ana, case, "unaided", "mpox", 3)
    store.add_verdict(ana, other, "unaided", "mpox", 3)
    assert {c[1] for c in correctable(store, ana)} == {ref_of(store, v["id"]) for v in store.verdicts_of(ana)}
    store.mark_model_shown(ana, case)
    store.mark_model_shown(ana, case)  # recorded once
    assert store.query("SELECT count(*) AS n FROM model_shown")[0]["n"] == 1
    with pytest.raises(ClinicalError, match="once the model output has been shown"):
        correct_verdict(store, ana, ref_of(store, first), "not mpox", 3)
    with pytest.raises(ClinicalError, match="once the model output has been shown"):  # the schema refuses it too
        store.add_verdict(ana, case, "unaided", "not mpox", 3, supersedes=first)
    assert ref_of(store, first) not in {c[1] for c in correctable(store, ana)}
    aided = store.add_verdict(ana, case, "aided", "mpox", 3)
    fixed, _ = correct_verdict(store, ana, ref_of(store, aided), "not mpox", 5)  # the aided one stays correctable
    assert store.query("SELECT phase, supersedes FROM verdicts WHERE id = ?", [fixed]) == [
        {"phase": "aided", "supersedes": aided}]
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM model_shown")
    conn.close()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clinical", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_the_correct_command_all_or_nothing(store: Store, tmp_path: Path):
    names = sorted(c["file_name"] for c in store.cases())
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text("reviewer,case,phase,label,confidence\n" + "".join(
        f"ana,{n},{p},mpox,3\n" for n in names[:2] for p in ("unaided", "aided")))
    assert run("import-verdicts", "--db", str(store.path), str(verdicts)).returncode == 0
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("reviewer,case,phase,label,confidence,comment\n"
                     f"ana,{names[0]},aided,not mpox,4,second look\nana,{names[0]},aided,uncertain,2,third look\n")
    result = run("correct", "--db", str(store.path), str(fixes))
    assert result.returncode == 0, result.stderr
    assert "recorded 2 correction(s) for ana" in result.stdout
    chain = store.query("SELECT v.label, v.supersedes, s.kind FROM verdicts v JOIN sessions s ON s.id = v.session_id "
                        "JOIN cases c ON c.id = v.case_id WHERE c.file_name = ? AND phase = 'aided' ORDER BY v.id",
                        [names[0]])
    assert [r["label"] for r in chain] == ["mpox", "not mpox", "uncertain"] and chain[2]["kind"] == "import"
    assert chain[2]["supersedes"] is not None and chain[1]["supersedes"] is not None

    before = dump(store.path)
    for text, message in (
            (f"ana,{names[0]},unaided,not mpox,4\n", "once the model output has been shown"),  # aided exists
            (f"ana,{names[2]},unaided,not mpox,4\n", "no unaided verdict"),
            (f"cy,{names[1]},aided,not mpox,4\n", "no reviewer 'cy'"),
            (f"ana,{names[1]},aided,not mpox,1\n", "Nothing to correct")):
        fixes.write_text("reviewer,case,phase,label,confidence\n" f"ana,{names[1]},aided,not mpox,1\n" + text)
        result = run("correct", "--db", str(store.path), str(fixes))
        assert result.returncode == 2 and result.stderr.startswith("error: Line 3: ") and message in result.stderr
        assert "Traceback" not in result.stderr
    assert dump(store.path) == before  # the good first row was not kept either
