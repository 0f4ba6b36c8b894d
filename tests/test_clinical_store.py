"""The clinical store: migrations, append-only verdicts, concurrent writers, credentials, isolation."""

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlite_utils import Database

from clinical.cases import collect_images, import_images
from clinical.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION, migrate
from clinical.store import ClinicalError, Store

TABLES = {"cases", "case_images", "reviewers", "sessions", "queue", "verdicts", "model_runs", "predictions"}


def make_images(root: Path, per_class: int = 3) -> Path:
    """Random 48x48 photos in root/ds/Monkeypox and root/ds/Others."""
    rng = np.random.default_rng(0)
    for label in ("Monkeypox", "Others"):
        (root / "ds" / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "ds" / label / f"{label[0]}{i}.png")
    return root / "ds"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "study.sqlite")
    import_images(store, collect_images([make_images(tmp_path)]))
    store.create_reviewer("ana", "Dr Ana", "reviewer", "ana-secret-1")
    store.create_reviewer("ben", "Dr Ben", "reviewer", "ben-secret-1")
    return store


def signed_in(store: Store, reviewer: str):
    token, session = store.sign_in(reviewer, f"{reviewer}-secret-1")
    return session


def test_migrations_from_empty_and_reapplied(tmp_path: Path):
    path = tmp_path / "new.sqlite"
    db = Database(path)
    assert db.table_names() == []
    migrate(db)
    assert TABLES <= set(db.table_names())
    names = ["m001_initial", "m002_session_end", "m003_sign_in_failures", "m004_refs_and_model_shown",
             "m005_study_settings", "m006_admin_reads"]
    assert tuple(names) == SCHEMA
    assert [m.name for m in MIGRATIONS.applied(db)] == names
    assert "ended_at" in db["sessions"].columns_dict and db.journal_mode == "wal"
    db["reviewers"].insert({"id": "x", "display_name": "X", "role": "reviewer", "created_at": "now"})
    migrate(db)  # re-applied: nothing runs twice, data kept
    assert [m.name for m in MIGRATIONS.applied(db)] == names and db["reviewers"].count == 1
    assert MIGRATIONS.pending(db) == [] and db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    db.close()
    Store(path)  # opening through the store is idempotent too
    with Store(path).connect() as conn:
        assert next(conn.query("PRAGMA foreign_keys"))["foreign_keys"] == 1


def test_an_older_database_is_upgraded_in_place(tmp_path: Path):
    db = Database(tmp_path / "old.sqlite")
    MIGRATIONS.apply(db, stop_before="m002_session_end")  # a database made before sessions could end
    assert "ended_at" not in db["sessions"].columns_dict
    db["reviewers"].insert({"id": "x", "display_name": "X", "role": "reviewer", "created_at": "t"})
    db["sessions"].insert({"id": "s1", "reviewer_id": "x", "kind": "import", "started_at": "t", "app_version": "v"})
    migrate(db)
    assert db["sessions"].get("s1")["ended_at"] is None and db["reviewers"].count == 1
    db.close()


def test_a_schema_3_study_gets_opaque_references_and_keeps_its_verdicts(tmp_path: Path):
    """m004 on a database with queues and verdicts: every queue row and verdict gets a random reference,
    in one transaction with the record of the migration (statements run one by one, not executescript)."""
    path = tmp_path / "v3.sqlite"
    db = Database(path)
    MIGRATIONS.apply(db, stop_before="m004_refs_and_model_shown")
    db.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO cases (id, file_name, source_path, dataset, label_class, reference_label, "
                     "label_provenance, group_id, imported_at) VALUES (?, 'a.png', 'a.png', 'ds', 'Monkeypox', "
                     "'mpox', 'folder', 'g', 't')", ["a" * 64])
        conn.execute("INSERT INTO reviewers VALUES ('ana', 'Ana', 'reviewer', NULL, 't')")
        conn.execute("INSERT INTO sessions (id, reviewer_id, kind, started_at, app_version) "
                     "VALUES ('s', 'ana', 'import', 't', 'v')")
        conn.execute("INSERT INTO queue VALUES ('ana', 0, ?)", ["a" * 64])
        for label in ("mpox", "not mpox"):
            conn.execute("INSERT INTO verdicts (case_id, reviewer_id, session_id, phase, label, confidence, "
                         "created_at, app_version, supersedes) VALUES (?, 'ana', 's', 'unaided', ?, 3, 't', 'v', ?)",
                         ["a" * 64, label, None if label == "mpox" else 1])
    conn.close()
    store = Store(path)
    refs = store.query("SELECT q.ref AS case_ref, r.ref FROM queue q, verdict_refs r ORDER BY r.verdict_id")
    assert len(refs) == 2 and all(len(r["ref"]) == 12 and len(r["case_ref"]) == 12 for r in refs)
    assert refs[0]["ref"] != refs[1]["ref"]
    assert [r["label"] for r in store.all_verdicts()] == ["mpox", "not mpox"]


def test_verdicts_are_append_only(store: Store):
    ana = signed_in(store, "ana")
    case = store.cases()[0]["id"]
    first = store.add_verdict(ana, case, "unaided", "mpox", 4)
    conn = sqlite3.connect(store.path)  # even raw SQL outside the store cannot change or remove a verdict
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE verdicts SET label = 'not mpox' WHERE id = ?", [first])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM verdicts")
    conn.close()
    with pytest.raises(ClinicalError, match="already has a verdict"):
        store.add_verdict(ana, case, "unaided", "not mpox", 2)
    fix = store.add_verdict(ana, case, "unaided", "uncertain", 2, supersedes=first)  # a correction is a new row
    rows = store.all_verdicts()
    assert [(r["id"], r["label"], r["superseded_by"]) for r in rows] == [(first, "mpox", fix), (fix, "uncertain", None)]
    with pytest.raises(ClinicalError, match="already been corrected"):
        store.add_verdict(ana, case, "unaided", "mpox", 2, supersedes=first)


def test_aided_needs_unaided_first_and_unaided_freezes_once_model_is_shown(store: Store):
    ana = signed_in(store, "ana")
    case = store.cases()[1]["id"]
    with pytest.raises(ClinicalError, match="unaided verdict on the same case"):
        store.add_verdict(ana, case, "aided", "mpox", 3)
    first = store.add_verdict(ana, case, "unaided", "mpox", 3)
    store.add_verdict(ana, case, "aided", "not mpox", 3)
    with pytest.raises(ClinicalError, match="cannot be corrected once the model output"):
        store.add_verdict(ana, case, "unaided", "not mpox", 3, supersedes=first)
    ben = signed_in(store, "ben")
    with pytest.raises(ClinicalError, match="same reviewer, case and phase"):
        store.add_verdict(ben, case, "unaided", "mpox", 3, supersedes=first)
    with pytest.raises(ClinicalError, match="Confidence"):
        store.add_verdict(ben, case, "unaided", "mpox", 6)


def test_concurrent_writers_lose_nothing(store: Store):
    cases = [c["id"] for c in store.cases()]
    reviewers = [f"r{i}" for i in range(6)]
    for r in reviewers:
        store.create_reviewer(r, credential=f"{r}-secret-1")
    sessions = {r: signed_in(store, r) for r in reviewers}
    errors: list[BaseException] = []
    start = threading.Barrier(len(reviewers))

    def work(reviewer: str) -> None:
        try:
            start.wait()
            for case in cases:
                store.add_verdict(sessions[reviewer], case, "unaided", "mpox", 3)
                store.add_verdict(sessions[reviewer], case, "aided", "not mpox", 4)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(r,)) for r in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = store.query("SELECT reviewer_id, count(*) AS n FROM verdicts GROUP BY reviewer_id ORDER BY reviewer_id")
    assert counts == [{"reviewer_id": r, "n": 2 * len(cases)} for r in reviewers]


def test_credentials_are_scrypt_hashes_and_checked(store: Store):
    stored = store.query("SELECT credential_hash FROM reviewers WHERE id = 'ana'")[0]["credential_hash"]
    assert stored.startswith("scrypt$") and "ana-secret-1" not in stored
    assert store.sign_in("ana", "wrong-secret") is None
    assert store.sign_in("nobody", "ana-secret-1") is None
    token, session = store.sign_in("ana", "ana-secret-1")
    assert store.session(token) == session and store.session("forged-token") is None
    store.end_session(token)  # signed out: the token no longer works
    assert store.session(token) is None
    with pytest.raises(ClinicalError, match="at least 8"):
        store.create_reviewer("cy", credential="short")
    with pytest.raises(ClinicalError, match="already exists"):
        store.create_reviewer("ana")


def test_a_reviewer_reads_only_their_own_verdicts(store: Store):
    ana, ben = signed_in(store, "ana"), signed_in(store, "ben")
    case = store.cases()[0]["id"]
    store.add_verdict(ana, case, "unaided", "mpox", 5, comment="ana's note")
    store.add_verdict(ben, case, "unaided", "not mpox", 1)
    assert [(v["label"], v["comment"]) for v in store.verdicts_of(ana)] == [("mpox", "ana's note")]
    assert [v["label"] for v in store.verdicts_of(ben)] == ["not mpox"]
    forged = ben.__class__(ben.session_id, "ana", "x", "reviewer")  # ben's session row with ana's id
    with pytest.raises(ClinicalError, match="session does not belong"):
        store.add_verdict(forged, store.cases()[1]["id"], "unaided", "mpox", 3)


def test_queues_are_randomised_per_reviewer_and_stable(store: Store):
    ana, ben = store.queue("ana"), store.queue("ben")
    assert sorted(ana) == sorted(ben) == sorted(c["id"] for c in store.cases())
    assert store.queue("ana") == ana
    assert ana != ben  # 6! orderings; these two seeds differ (a fixed, deterministic fact)
