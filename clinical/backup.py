"""Online backup and restore of the clinical database, with SQLite's backup API.

``backup`` copies a live database (reviewers may be saving verdicts meanwhile: the copy is one
consistent snapshot) into a new single-file database, checks it and only then gives it its final name,
so a backup file either is complete or does not exist. ``restore`` checks a backup, keeps a copy of the
database it replaces, and copies the backup in, again with the backup API (open connections see the
restored content at their next query).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from .store import BUSY_TIMEOUT_S, ClinicalError, Store

PAGES_PER_STEP = 256  # copy in steps so writers are not blocked for the whole copy
REQUIRED_TABLES = {"cases", "verdicts", "reviewers", "_sqlite_migrations"}


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("cases", "reviewers", "verdicts")}


def check_database(path: str | Path, what: str = "database") -> dict[str, int]:
    """Open ``path`` read-only and check it is a whole clinical database; returns row counts.

    Raises:
        ClinicalError: missing, not SQLite, damaged (integrity check fails) or not a clinical database.
    """
    path = Path(path)
    if not path.is_file():
        raise ClinicalError(f"No {what} at {path}.")
    try:
        with closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise ClinicalError(f"The {what} {path} is damaged (integrity check: {result}).")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not REQUIRED_TABLES <= tables:
                raise ClinicalError(f"{path} is an SQLite file but not a clinical database.")
            return _counts(conn)
    except sqlite3.DatabaseError as err:
        raise ClinicalError(f"{path} is not a usable clinical {what} ({err}).") from None


def _copy(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    source.backup(target, pages=PAGES_PER_STEP)


def backup(db_path: str | Path, out_path: str | Path) -> dict[str, int]:
    """Copy the live database ``db_path`` into the new file ``out_path``; returns the copy's row counts.

    The copy is written as ``<out>.partial``, switched out of WAL mode (one self-contained file),
    checked with ``PRAGMA integrity_check`` and fsynced before it is renamed to ``out_path``.

    Raises:
        ClinicalError: no database, ``out_path`` already exists (backups are never overwritten), or the
            copy failed its check (then no file is left behind).
    """
    db_path, out_path = Path(db_path), Path(out_path)
    check_database(db_path)
    if out_path.exists():
        raise ClinicalError(f"{out_path} already exists; backups are never overwritten, choose a new file name.")
    if not out_path.parent.is_dir():
        raise ClinicalError(f"The folder {out_path.parent} does not exist.")
    partial = out_path.with_name(out_path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_S)) as source, \
                closing(sqlite3.connect(str(partial))) as target:
            _copy(source, target)
            target.execute("PRAGMA journal_mode = DELETE")  # a single file, not file + -wal
            target.commit()
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        counts = check_database(partial, "backup")
        os.replace(partial, out_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return counts


def restore(backup_path: str | Path, db_path: str | Path, replace: bool = False) -> tuple[dict[str, int], Path | None]:
    """Restore the backup ``backup_path`` into ``db_path``; returns (row counts, where the replaced
    database was saved, or None when there was none).

    Raises:
        ClinicalError: the backup is missing or not whole, or ``db_path`` exists and ``replace`` is False
            (nothing is changed in either case).
    """
    backup_path, db_path = Path(backup_path), Path(db_path)
    check_database(backup_path, "backup")
    kept: Path | None = None
    if db_path.exists():
        if not replace:
            raise ClinicalError(f"{db_path} already exists; add --replace to overwrite it "
                                "(a copy of it is kept beside it first).")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        kept = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
        backup(db_path, kept)
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(f"file:{backup_path.resolve()}?mode=ro", uri=True)) as source, \
            closing(sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_S)) as target:
        _copy(source, target)
    Store(db_path)  # WAL on again and any newer migration applied
    return check_database(db_path), kept
