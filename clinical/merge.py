"""``python -m clinical merge SITE_A.db SITE_B.db ... --out STUDY.db``: one study from several sites.

- Cases: the same image is the same case (its id is the sha256 of the file), stored once; a case whose
  reference label differs between sites is refused.
- Reviewers: an id found at more than one site is prefixed with each site's name (``SITE_A/ana``,
  ``SITE_B/ana``); the site name is the database file's name without its extension. Credentials,
  sessions, queues (with their opaque references), verdicts with their correction chains, the record of
  when model output was shown, model runs (one per ``run_key``) and predictions are all carried over.
  Sites that ran different designs (washout or not, see :mod:`clinical.design`) are refused.
- Nothing is lost or duplicated: the merged counts and every verdict (with what it corrects) are checked
  against the sources, with ``PRAGMA integrity_check`` and ``foreign_key_check``.
- Schema versions: a site database made by an older version is upgraded in a temporary copy (the site's
  file is never changed); one with migrations this version does not know is refused.
- ``--out`` must not exist; the study is built in a temporary file beside it and only renamed to
  ``--out`` once complete and checked, so a failed merge leaves nothing behind.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

from .backup import check_database
from .design import WASHOUT_KEY
from .schema import MIGRATIONS, SCHEMA
from .store import BUSY_TIMEOUT_S, ClinicalError, Store, new_ref

COPIED = ("cases", "case_images", "reviewers", "sessions", "queue", "verdicts", "model_shown", "model_runs",
          "predictions")


def schema_of(conn: sqlite3.Connection) -> list[str]:
    """The clinical migrations applied to a database, in order ([] when it has none)."""
    try:
        return [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ? "
                                           "ORDER BY rowid", [MIGRATIONS.name])]
    except sqlite3.OperationalError:
        return []


def check_schema(path: Path, applied: list[str]) -> None:
    """Refuse a database whose migrations are not a prefix of this version's (newer or foreign)."""
    if applied == list(SCHEMA[:len(applied)]) and applied:
        return
    unknown = [name for name in applied if name not in SCHEMA]
    if unknown:
        raise ClinicalError(f"{path} has schema version {len(applied)} with migrations this version does not know "
                            f"({', '.join(unknown)}); merge it with the version of MIM that wrote it "
                            f"(this one knows schema version {len(SCHEMA)}).")
    raise ClinicalError(f"{path} has an incompatible schema ({', '.join(applied) or 'no clinical migrations'}); "
                        f"expected the migrations of schema version {len(SCHEMA)} in order.")


def _rows(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    cursor = conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return int(cursor.lastrowid)


def _snapshot(path: Path, folder: Path) -> tuple[Path, int]:
    """A consistent copy of a site database (backup API), its schema checked and brought up to date;
    returns (copy, the site's schema version)."""
    check_database(path, "site database")
    copy = folder / f"{uuid.uuid4().hex}.sqlite"
    with closing(sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)) as source, \
            closing(sqlite3.connect(str(copy))) as target:
        applied = schema_of(source)
        check_schema(path, applied)
        source.backup(target)
    Store(copy)  # pending migrations applied to the copy only
    return copy, len(applied)


def _site_names(paths: list[Path]) -> list[str]:
    names = [p.stem for p in paths]
    for name in names:
        if names.count(name) > 1:
            raise ClinicalError(f"Two site databases are named '{name}'; the file name is the site's name, "
                                "so rename one of them.")
    return names


def reviewer_ids(sites: dict[str, sqlite3.Connection]) -> dict[str, dict[str, str]]:
    """site -> {old reviewer id -> merged id}: ids found at more than one site get a ``site/`` prefix."""
    ids = {site: [r[0] for r in conn.execute("SELECT id FROM reviewers")] for site, conn in sites.items()}
    seen = Counter(rid for site_ids in ids.values() for rid in site_ids)
    mapping: dict[str, dict[str, str]] = {}
    for site, site_ids in ids.items():
        mapping[site] = {rid: (f"{site}/{rid}" if seen[rid] > 1 else rid) for rid in site_ids}
        for new in mapping[site].values():
            if len(new) > 64:
                raise ClinicalError(f"The merged reviewer id '{new}' is longer than 64 characters; "
                                    "shorten the site's file name.")
    return mapping


def _verdict_keys(conn: sqlite3.Connection, reviewers: dict[str, str] | None = None) -> Counter:
    """Every verdict as (reviewer, case, phase, label, confidence, comment, created_at, session, what it
    corrects), ids left out: equal counters mean the same verdicts and the same correction chains."""
    rows = {r["id"]: r for r in _rows(conn, "SELECT * FROM verdicts")}

    def key(row: dict[str, Any]) -> tuple:
        reviewer = reviewers[row["reviewer_id"]] if reviewers else row["reviewer_id"]
        before = key(rows[row["supersedes"]]) if row["supersedes"] is not None else None
        return (reviewer, row["case_id"], row["phase"], row["label"], row["confidence"], row["comment"],
                row["created_at"], row["session_id"], before)

    return Counter(key(r) for r in rows.values())


def _merge_site(target: sqlite3.Connection, source: sqlite3.Connection, site: str, reviewers: dict[str, str],
                stats: dict[str, Any]) -> None:
    """Copy one site into the target (inside the target's open transaction)."""
    for case in _rows(source, "SELECT * FROM cases ORDER BY id"):
        old = target.execute("SELECT reference_label FROM cases WHERE id = ?", [case["id"]]).fetchone()
        if old is not None:
            if old[0] != case["reference_label"]:
                raise ClinicalError(f"Case {case['id'][:12]}… ({case['file_name']}) is '{old[0]}' at one site and "
                                    f"'{case['reference_label']}' at {site}; fix the labels before merging.")
            stats["shared_cases"] += 1
            continue
        _insert(target, "cases", case)
        image = source.execute("SELECT png FROM case_images WHERE case_id = ?", [case["id"]]).fetchone()
        if image is not None:
            _insert(target, "case_images", {"case_id": case["id"], "png": image[0]})
    for row in _rows(source, "SELECT * FROM reviewers"):
        _insert(target, "reviewers", {**row, "id": reviewers[row["id"]]})
    for row in _rows(source, "SELECT * FROM sessions"):
        if target.execute("SELECT 1 FROM sessions WHERE id = ?", [row["id"]]).fetchone():
            raise ClinicalError(f"{site} shares sessions with another site database: one is a copy or backup of "
                                "the other; merge only the databases of distinct sites.")
        _insert(target, "sessions", {**row, "reviewer_id": reviewers[row["reviewer_id"]]})
    for row in _rows(source, "SELECT * FROM queue"):
        ref = row["ref"] if not target.execute("SELECT 1 FROM queue WHERE ref = ?", [row["ref"]]).fetchone() \
            else new_ref()
        _insert(target, "queue", {**row, "reviewer_id": reviewers[row["reviewer_id"]], "ref": ref})
    runs: dict[int, int] = {}
    for row in _rows(source, "SELECT * FROM model_runs ORDER BY id"):
        found = target.execute("SELECT id FROM model_runs WHERE run_key = ?", [row["run_key"]]).fetchone()
        runs[row["id"]] = found[0] if found else _insert(target, "model_runs", {k: v for k, v in row.items()
                                                                                if k != "id"})
    for row in _rows(source, "SELECT * FROM predictions"):
        run = runs[row["run_id"]]
        if target.execute("SELECT 1 FROM predictions WHERE run_id = ? AND case_id = ?", [run, row["case_id"]]).fetchone():
            stats["shared_predictions"] += 1
            continue
        _insert(target, "predictions", {**row, "run_id": run})
    verdicts: dict[int, int] = {}
    for row in _rows(source, "SELECT v.*, r.ref FROM verdicts v LEFT JOIN verdict_refs r ON r.verdict_id = v.id "
                             "ORDER BY v.id"):  # in id order: unaided before aided, originals before corrections
        ref = row.pop("ref")
        new = {k: v for k, v in row.items() if k != "id"}
        new.update(reviewer_id=reviewers[row["reviewer_id"]],
                   supersedes=None if row["supersedes"] is None else verdicts[row["supersedes"]])
        verdicts[row["id"]] = _insert(target, "verdicts", new)
        if ref and not target.execute("SELECT 1 FROM verdict_refs WHERE ref = ?", [ref]).fetchone():
            target.execute("UPDATE verdict_refs SET ref = ? WHERE verdict_id = ?", [ref, verdicts[row["id"]]])
    for row in _rows(source, "SELECT * FROM model_shown"):  # after the verdicts: it freezes unaided corrections
        _insert(target, "model_shown", {**row, "reviewer_id": reviewers[row["reviewer_id"]]})
    for row in _rows(source, "SELECT * FROM study_settings"):  # the same at every site (checked before)
        if not target.execute("SELECT 1 FROM study_settings WHERE key = ?", [row["key"]]).fetchone():
            _insert(target, "study_settings", row)


def check_designs(sources: dict[str, sqlite3.Connection]) -> None:
    """Refuse sites that ran different designs (e.g. one with a washout, one sequential)."""
    designs = {}
    for site, conn in sources.items():
        row = conn.execute("SELECT value FROM study_settings WHERE key = ?", [WASHOUT_KEY]).fetchone()
        designs[site] = float(row[0]) if row else 0.0
    if len(set(designs.values())) > 1:
        found = ", ".join(f"{site}: {days:g}" for site, days in designs.items())
        raise ClinicalError(f"The sites ran different designs (washout days {found}); one study needs one design.")


def _count(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def _check(target: sqlite3.Connection, sources: dict[str, sqlite3.Connection],
           reviewers: dict[str, dict[str, str]]) -> dict[str, int]:
    """Counts and verdict chains of the merged study against its sources; returns the merged counts."""
    counts = {table: _count(target, f"SELECT count(*) FROM {table}") for table in COPIED}
    expected = {table: sum(_count(s, f"SELECT count(*) FROM {table}") for s in sources.values())
                for table in ("reviewers", "sessions", "queue", "verdicts", "model_shown")}
    union = lambda sql: len({row for s in sources.values() for row in s.execute(sql)})  # noqa: E731
    expected.update(cases=union("SELECT id FROM cases"), case_images=union("SELECT case_id FROM case_images"),
                    model_runs=union("SELECT run_key FROM model_runs"),
                    predictions=union("SELECT m.run_key, p.case_id FROM predictions p "
                                      "JOIN model_runs m ON m.id = p.run_id"))
    for table, n in expected.items():
        if counts[table] != n:
            raise ClinicalError(f"The merge check failed: {counts[table]} {table} row(s) instead of {n}; "
                                "nothing was written.")
    merged = _verdict_keys(target)
    wanted = sum((_verdict_keys(conn, reviewers[site]) for site, conn in sources.items()), Counter())
    if merged != wanted:
        raise ClinicalError("The merge check failed: the merged verdicts or their corrections differ from the "
                            "sites'; nothing was written.")
    result = target.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok" or target.execute("PRAGMA foreign_key_check").fetchall():
        raise ClinicalError(f"The merged database failed its integrity check ({result}); nothing was written.")
    return counts


def merge(paths: list[str | Path], out: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Merge the site databases ``paths`` into the new database ``out``; returns what was merged.

    Raises:
        ClinicalError: fewer than two sites, ``out`` exists, a site is missing, damaged, of an
            incompatible schema version, a copy of another site, or conflicts with another (nothing written).
    """
    paths, out = [Path(p) for p in paths], Path(out)
    if len(paths) < 2:
        raise ClinicalError("Give at least two site databases to merge.")
    if len({p.resolve() for p in paths}) < len(paths):
        raise ClinicalError("The same site database is given twice.")
    if out.exists():
        raise ClinicalError(f"{out} already exists; merge into a new file (it is never overwritten).")
    if not out.parent.is_dir():
        raise ClinicalError(f"The folder {out.parent} does not exist.")
    names = _site_names(paths)
    stats: dict[str, Any] = {"shared_cases": 0, "shared_predictions": 0}
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.merge-") as tmp:
        copies, versions = {}, {}
        for name, path in zip(names, paths):
            copies[name], versions[name] = _snapshot(path, Path(tmp))
            if versions[name] < len(SCHEMA):
                log(f"{path}: schema version {versions[name]}, upgraded in a temporary copy to {len(SCHEMA)}")
        partial = Path(tmp) / "merged.sqlite"
        Store(partial)  # the current schema, empty
        with closing(sqlite3.connect(str(partial))) as target:
            sources = {name: sqlite3.connect(f"file:{copy}?mode=ro", uri=True) for name, copy in copies.items()}
            try:
                check_designs(sources)
                reviewers = reviewer_ids(sources)
                target.execute("PRAGMA foreign_keys = ON")
                target.execute("BEGIN IMMEDIATE")
                for name, source in sources.items():
                    _merge_site(target, source, name, reviewers[name], stats)
                counts = _check(target, sources, reviewers)
                target.execute("COMMIT")
            finally:
                for source in sources.values():
                    source.close()
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(partial, out)  # fails rather than overwrite a file that appeared meanwhile
        except FileExistsError:
            raise ClinicalError(f"{out} already exists; merge into a new file (it is never overwritten).") from None
        except OSError:  # a file system without hard links: rename (checked just before)
            if out.exists():
                raise ClinicalError(f"{out} already exists; merge into a new file (it is never overwritten).") from None
            os.replace(partial, out)
    renamed = {f"{site}:{old}": new for site, ids in reviewers.items() for old, new in ids.items() if old != new}
    return {"sites": names, "counts": counts, "renamed_reviewers": renamed, **stats}
