"""Two sites' databases built with `import-cases` and `import-verdicts` (plus a correction, a Review-tab
session and a model run), then `status` and `merge` from the command line, and merge's refusals."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlite_utils import Database

from clinical.schema import MIGRATIONS
from clinical.store import Store
from tests.conftest import REPO, dump

MPOX = {"SITE_A": ["P13_1.jpg", "P14_1.jpg"], "SITE_B": ["P14_1.jpg", "P15_1.jpg"]}  # P14 read at both sites


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clinical", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and pattern in result.stderr, result.stderr


def build_site(root: Path, data_root: Path, site: str, others: list[Path], readers: list[str]) -> Path:
    folder = root / site / "MSLD_v1"
    for name in MPOX[site]:
        (folder / "Monkeypox").mkdir(parents=True, exist_ok=True)
        shutil.copy(data_root / "MSLD_v1" / "Monkeypox" / name, folder / "Monkeypox")
    (folder / "Others").mkdir()
    for path in others:
        shutil.copy(path, folder / "Others")
    db = root / f"{site}.db"
    ok(run("import-cases", "--db", str(db), "--label-from-folder", str(folder)))
    add = subprocess.run([sys.executable, "-m", "clinical", "add-reviewer", "--db", str(db), "--id", "admin",
                          "--role", "admin", "--credential-stdin"], input=f"{site}-admin-secret\n", cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert add.returncode == 0, add.stderr
    names = MPOX[site] + [p.name for p in others]
    lines = ["reviewer,case,phase,label,confidence,lead_time_s"]
    for reader in readers:
        lines += [f"{reader},{n},{p},{'mpox' if n.startswith('P') else 'not mpox'},4,{10 + i}"
                  for p in ("unaided", "aided") for i, n in enumerate(names)]
    (root / f"{site}.csv").write_text("\n".join(lines) + "\n")
    ok(run("import-verdicts", "--db", str(db), str(root / f"{site}.csv")))
    return db


def add_model_run(db: Path) -> None:
    """The same model run (same run_key) at both sites, scoring each site's cases."""
    store = Store(db)
    run_id = store.model_run({"model_name": "toy", "kind": "mim", "version": "toy@1", "weights_sha256": "0" * 64,
                              "threshold": 0.5, "mpox_when": "lower", "run_key": "toy-run", "config": {}, "card": {}})
    store.add_predictions(run_id, [{"case_id": c["id"], "score": 0.25, "label": "mpox-like"}
                                   for c in store.cases(usable_only=True)])


@pytest.fixture(scope="module")
def built_sites(tmp_path_factory, data_root: Path) -> Path:
    """The two sites, built once (a dozen command runs); each test gets its own copy (:func:`sites`)."""
    tmp_path = tmp_path_factory.mktemp("sites")
    others = sorted((data_root / "MSLD_v1" / "Others").iterdir())[:3]
    a = build_site(tmp_path, data_root, "SITE_A", others[:2], ["ana", "ben"])
    b = build_site(tmp_path, data_root, "SITE_B", others[1:], ["ana", "cy"])
    fixes = tmp_path / "fix.csv"
    fixes.write_text(f"reviewer,case,phase,label,confidence\nben,{others[0].name},aided,mpox,2\n")
    ok(run("correct", "--db", str(a), str(fixes)))
    store = Store(b)  # a Review-tab session at site B: model output shown, verdicts with reading times
    store.create_reviewer("dee", "Dr Dee", "reviewer", "dee-secret-1")
    _, dee = store.sign_in("dee", "dee-secret-1")
    first = store.queue("dee")[0]
    store.add_verdict(dee, first, "unaided", "mpox", 3, lead_time_s=7.0)
    store.mark_model_shown(dee, first)
    add_model_run(a)
    add_model_run(b)
    return tmp_path


@pytest.fixture
def sites(built_sites: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the two sites' folders and databases (every connection was closed, so no -wal file is pending)."""
    shutil.copytree(built_sites, tmp_path, dirs_exist_ok=True)
    return tmp_path / "SITE_A.db", tmp_path / "SITE_B.db"


def status_table(status: str) -> dict[str, list[str]]:
    """The status command's table, by reader: cells cut at the columns of its dashed rule."""
    lines = status.splitlines()
    starts = [i for i, ch in enumerate(lines[2]) if ch == "-" and (i == 0 or lines[2][i - 1] == " ")]
    bounds = list(zip(starts, starts[1:] + [None]))
    rows = [[line[a:b].strip() for a, b in bounds] for line in lines[3:]]
    return {row[0]: row for row in rows}


def counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("cases", "reviewers", "sessions", "verdicts", "queue", "model_shown", "model_runs",
                          "predictions")}
    finally:
        conn.close()


def test_status_then_merge_two_sites(sites, tmp_path: Path):
    a, b = sites
    status = ok(run("status", "--db", str(a)))
    rows = status_table(status)
    assert status.startswith("4 usable case(s); 2 reader(s) with verdicts")
    assert rows["ana"][3:7] == ["4", "4", "4", "0"] and rows["ben"][3:7] == ["4", "4", "4", "1"]
    assert rows["ana"][7:9] == ["11.5", "11.5"]  # median reading time per phase, seconds
    assert "admin" not in rows  # a coordinator who reads nothing is no reader (no "0/4" row)
    assert "admin(s) without a reading queue, not readers: admin" in status.splitlines()[0]

    before = {db: dump(db) for db in (a, b)}
    site_counts = {db: counts(db) for db in (a, b)}
    out = tmp_path / "STUDY.db"
    text = ok(run("merge", str(a), str(b), "--out", str(out)))
    assert "merged 2 site(s)" in text and "6 case(s) (2 seen at more than one site)" in text
    assert "reviewer SITE_A:ana is SITE_A/ana" in text and "reviewer SITE_B:admin is SITE_B/admin" in text
    assert {db: dump(db) for db in (a, b)} == before  # the sites' files are untouched

    merged = counts(out)
    for table in ("reviewers", "sessions", "verdicts", "queue", "model_shown"):
        assert merged[table] == site_counts[a][table] + site_counts[b][table]  # nothing lost or duplicated
    assert merged["cases"] == 6 and merged["model_runs"] == 1 and merged["predictions"] == 6
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    ids = {r[0] for r in conn.execute("SELECT id FROM reviewers")}
    assert ids == {"SITE_A/admin", "SITE_B/admin", "SITE_A/ana", "SITE_B/ana", "ben", "cy", "dee"}
    chain = conn.execute("SELECT v.label, o.label FROM verdicts v JOIN verdicts o ON o.id = v.supersedes "
                         "WHERE v.reviewer_id = 'ben'").fetchall()
    assert chain == [("mpox", "not mpox")]  # the correction still supersedes the verdict it replaced
    site_refs = sqlite3.connect(a).execute(
        "SELECT r.ref FROM verdict_refs r JOIN verdicts v ON v.id = r.verdict_id WHERE v.reviewer_id = 'ben'")
    merged_refs = {r[0] for r in conn.execute(
        "SELECT r.ref FROM verdict_refs r JOIN verdicts v ON v.id = r.verdict_id WHERE v.reviewer_id = 'ben'")}
    assert {r[0] for r in site_refs} == merged_refs  # a reviewer's references survive the merge
    conn.close()
    assert Store(out).sign_in("SITE_A/admin", "SITE_A-admin-secret") is not None  # credentials carried over

    status = ok(run("status", "--db", str(out)))
    rows = status_table(status)
    assert status.startswith("6 usable case(s); 5 reader(s) with verdicts")
    assert rows["SITE_B/ana"][3:6] == ["4", "4", "6"] and rows["dee"][3:5] == ["1", "0"]

    ok(run("report", "--db", str(out), "--out", str(tmp_path / "report"), "--n-boot", "50"))
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["flow"]["reviewers"] == 5 and metrics["flow"]["corrections"] == 1

    refused(run("merge", str(a), str(b), "--out", str(out)), "already exists")
    assert not list(tmp_path.glob(".STUDY.db.merge-*"))  # no temporary files left behind


def test_merge_refuses_what_it_cannot_merge_and_writes_nothing(sites, tmp_path: Path):
    a, b = sites
    out = tmp_path / "STUDY.db"
    refused(run("merge", str(a), str(a), "--out", str(out)), "given twice")
    refused(run("merge", str(a), "--out", str(out)), "at least two")
    copy = tmp_path / "SITE_C.db"
    shutil.copy(a, copy)
    refused(run("merge", str(a), str(copy), "--out", str(out)), "is a copy or backup of the other")

    future = tmp_path / "SITE_F.db"
    shutil.copy(b, future)
    conn = sqlite3.connect(future)
    with conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, 'now')",
                     [MIGRATIONS.name, "m099_future"])
    conn.close()
    refused(run("merge", str(a), str(future), "--out", str(out)),
            "has schema version 7 with migrations this version does not know (m099_future)")

    labels = tmp_path / "relabelled" / "MSLD_v1" / "Others"  # P14 called 'not mpox' at another site
    labels.mkdir(parents=True)
    shutil.copy(tmp_path / "SITE_A" / "MSLD_v1" / "Monkeypox" / "P14_1.jpg", labels)
    other = tmp_path / "SITE_D.db"
    ok(run("import-cases", "--db", str(other), "--label-from-folder", str(labels.parent)))
    refused(run("merge", str(a), str(other), "--out", str(out)), "is 'mpox' at one site and 'not mpox' at SITE_D")
    refused(run("merge", str(a), str(tmp_path / "nowhere.db"), "--out", str(out)), "No site database")
    (tmp_path / "notes.db").write_text("not a database")
    refused(run("merge", str(a), str(tmp_path / "notes.db"), "--out", str(out)), "not a usable clinical")
    assert not out.exists() and not list(tmp_path.glob(".STUDY.db.merge-*"))  # never a partial --out


def test_an_older_site_database_is_upgraded_in_a_copy(sites, tmp_path: Path):
    a, _ = sites
    old = tmp_path / "SITE_OLD.db"
    db = Database(old)
    MIGRATIONS.apply(db, stop_before="m004_refs_and_model_shown")  # schema version 3, as a site made it
    db["reviewers"].insert({"id": "eve", "display_name": "Eve", "role": "reviewer", "created_at": "t"})
    db.close()
    before = dump(old)
    out = tmp_path / "STUDY.db"
    text = ok(run("merge", str(a), str(old), "--out", str(out)))
    assert "schema version 3, upgraded in a temporary copy to 6" in text
    assert dump(old) == before and "eve" in {r["id"] for r in Store(out).reviewers()}
