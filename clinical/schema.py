"""The clinical database schema, as sqlite-utils migrations.

Every schema change is a new function registered on :data:`MIGRATIONS`; applied ones are recorded in
``_sqlite_migrations`` and never run twice. Verdicts are append-only: triggers RAISE on UPDATE and
DELETE, and a correction is a new row whose ``supersedes`` names the verdict it replaces.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("mim_clinical")

LABELS = ("mpox", "not mpox", "uncertain", "ungradable")
PHASES = ("unaided", "aided")
ROLES = ("reviewer", "admin")

_INITIAL = """
CREATE TABLE cases (
    id TEXT PRIMARY KEY CHECK (length(id) = 64),      -- sha256 of the file as imported
    file_name TEXT NOT NULL,
    source_path TEXT NOT NULL,
    dataset TEXT NOT NULL,
    label_class TEXT NOT NULL,
    reference_label TEXT NOT NULL CHECK (reference_label IN ('mpox', 'not mpox')),
    label_provenance TEXT NOT NULL,
    group_id TEXT NOT NULL,                             -- source photo / patient
    excluded_reason TEXT,                               -- NULL when the image is usable
    width INTEGER,
    height INTEGER,
    image_sha256 TEXT,                                  -- sha256 of the stored (metadata-free) PNG
    imported_at TEXT NOT NULL
);
CREATE INDEX cases_file_name ON cases(file_name);

CREATE TABLE case_images (
    case_id TEXT PRIMARY KEY REFERENCES cases(id),
    png BLOB NOT NULL                                   -- EXIF-oriented RGB, no metadata
);

CREATE TABLE reviewers (
    id TEXT PRIMARY KEY CHECK (length(trim(id)) > 0 AND length(id) <= 64),
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
    credential_hash TEXT,                               -- scrypt; NULL: cannot sign in yet
    created_at TEXT NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    reviewer_id TEXT NOT NULL REFERENCES reviewers(id),
    kind TEXT NOT NULL CHECK (kind IN ('review', 'import')),
    token_sha256 TEXT UNIQUE,                           -- review sessions only
    started_at TEXT NOT NULL,
    app_version TEXT NOT NULL,
    source TEXT                                         -- e.g. the imported CSV's name
);

CREATE TABLE queue (
    reviewer_id TEXT NOT NULL REFERENCES reviewers(id),
    position INTEGER NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases(id),
    PRIMARY KEY (reviewer_id, position),
    UNIQUE (reviewer_id, case_id)
);

CREATE TABLE verdicts (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases(id),
    reviewer_id TEXT NOT NULL REFERENCES reviewers(id),
    session_id TEXT NOT NULL REFERENCES sessions(id),
    phase TEXT NOT NULL CHECK (phase IN ('unaided', 'aided')),
    label TEXT NOT NULL CHECK (label IN ('mpox', 'not mpox', 'uncertain', 'ungradable')),
    confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5),
    lead_time_s REAL CHECK (lead_time_s IS NULL OR lead_time_s >= 0),
    created_at TEXT NOT NULL,
    app_version TEXT NOT NULL,
    model_version TEXT,
    comment TEXT,
    supersedes INTEGER REFERENCES verdicts(id)
);
CREATE INDEX verdicts_reviewer ON verdicts(reviewer_id, case_id);
CREATE UNIQUE INDEX verdicts_one_original ON verdicts(case_id, reviewer_id, phase) WHERE supersedes IS NULL;
CREATE UNIQUE INDEX verdicts_one_correction ON verdicts(supersedes) WHERE supersedes IS NOT NULL;

CREATE TRIGGER verdicts_no_update BEFORE UPDATE ON verdicts BEGIN
    SELECT RAISE(ABORT, 'verdicts are append-only: record a correction as a new verdict that supersedes it');
END;
CREATE TRIGGER verdicts_no_delete BEFORE DELETE ON verdicts BEGIN
    SELECT RAISE(ABORT, 'verdicts are append-only: they cannot be deleted');
END;
CREATE TRIGGER verdicts_session_owner BEFORE INSERT ON verdicts
WHEN (SELECT reviewer_id FROM sessions WHERE id = NEW.session_id) IS NOT NEW.reviewer_id BEGIN
    SELECT RAISE(ABORT, 'the session does not belong to this reviewer');
END;
CREATE TRIGGER verdicts_unaided_first BEFORE INSERT ON verdicts
WHEN NEW.phase = 'aided' AND NOT EXISTS (
    SELECT 1 FROM verdicts WHERE case_id = NEW.case_id AND reviewer_id = NEW.reviewer_id AND phase = 'unaided'
) BEGIN
    SELECT RAISE(ABORT, 'an aided verdict needs an unaided verdict on the same case by the same reviewer first');
END;
CREATE TRIGGER verdicts_correction_matches BEFORE INSERT ON verdicts
WHEN NEW.supersedes IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM verdicts WHERE id = NEW.supersedes AND case_id = NEW.case_id
        AND reviewer_id = NEW.reviewer_id AND phase = NEW.phase
) BEGIN
    SELECT RAISE(ABORT, 'a correction must supersede a verdict of the same reviewer, case and phase');
END;
CREATE TRIGGER verdicts_unaided_frozen BEFORE INSERT ON verdicts
WHEN NEW.phase = 'unaided' AND NEW.supersedes IS NOT NULL AND EXISTS (
    SELECT 1 FROM verdicts WHERE case_id = NEW.case_id AND reviewer_id = NEW.reviewer_id AND phase = 'aided'
) BEGIN
    SELECT RAISE(ABORT, 'the unaided verdict cannot be corrected once the model output has been shown');
END;

CREATE TABLE model_runs (
    id INTEGER PRIMARY KEY,
    model_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    version TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    threshold REAL NOT NULL,
    mpox_when TEXT NOT NULL CHECK (mpox_when IN ('lower', 'higher')),   -- which scores mean mpox
    run_key TEXT NOT NULL UNIQUE,                                        -- weights + config + threshold
    config TEXT NOT NULL,                                                -- JSON
    card TEXT NOT NULL,                                                  -- JSON, the whole model card
    created_at TEXT NOT NULL,
    app_version TEXT NOT NULL
);

CREATE TABLE predictions (
    run_id INTEGER NOT NULL REFERENCES model_runs(id),
    case_id TEXT NOT NULL REFERENCES cases(id),
    score REAL NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, case_id)
);
"""


@MIGRATIONS(name="m001_initial")
def m001_initial(db: Database) -> None:
    """Cases, reviewers, sessions, queue, append-only verdicts, model runs and predictions."""
    db.executescript(_INITIAL)


@MIGRATIONS(name="m002_session_end")
def m002_session_end(db: Database) -> None:
    """Sessions can be ended (sign-out) and expire; ``ended_at`` is NULL while a session is open."""
    db.execute("ALTER TABLE sessions ADD COLUMN ended_at TEXT")


@MIGRATIONS(name="m003_sign_in_failures")
def m003_sign_in_failures(db: Database) -> None:
    """Failed sign-ins per reviewer id, for rate limiting (see :mod:`clinical.signin`)."""
    db.executescript("CREATE TABLE sign_in_failures (reviewer_id TEXT NOT NULL, at TEXT NOT NULL);"
                     "CREATE INDEX sign_in_failures_id_at ON sign_in_failures(reviewer_id, at);")


_M004 = """
-- per-reviewer opaque case references: random, so they reveal nothing about the image or its sha256
ALTER TABLE queue ADD COLUMN ref TEXT;
UPDATE queue SET ref = lower(hex(randomblob(6)));
CREATE UNIQUE INDEX queue_ref ON queue(ref);

-- per-verdict opaque references: what a reviewer sees instead of the global (counting) verdict id
CREATE TABLE verdict_refs (
    verdict_id INTEGER PRIMARY KEY REFERENCES verdicts(id),
    ref TEXT NOT NULL UNIQUE
);
INSERT INTO verdict_refs (verdict_id, ref) SELECT id, lower(hex(randomblob(6))) FROM verdicts;
CREATE TRIGGER verdicts_ref AFTER INSERT ON verdicts BEGIN
    INSERT INTO verdict_refs (verdict_id, ref) VALUES (NEW.id, lower(hex(randomblob(6))));
END;

-- when the model output was first shown to a reviewer for a case (append-only, like verdicts)
CREATE TABLE model_shown (
    reviewer_id TEXT NOT NULL REFERENCES reviewers(id),
    case_id TEXT NOT NULL REFERENCES cases(id),
    session_id TEXT REFERENCES sessions(id),
    shown_at TEXT NOT NULL,
    PRIMARY KEY (reviewer_id, case_id)
);
CREATE TRIGGER model_shown_no_update BEFORE UPDATE ON model_shown BEGIN
    SELECT RAISE(ABORT, 'model_shown is append-only');
END;
CREATE TRIGGER model_shown_no_delete BEFORE DELETE ON model_shown BEGIN
    SELECT RAISE(ABORT, 'model_shown is append-only');
END;
DROP TRIGGER verdicts_unaided_frozen;
CREATE TRIGGER verdicts_unaided_frozen BEFORE INSERT ON verdicts
WHEN NEW.phase = 'unaided' AND NEW.supersedes IS NOT NULL AND (EXISTS (
    SELECT 1 FROM verdicts WHERE case_id = NEW.case_id AND reviewer_id = NEW.reviewer_id AND phase = 'aided'
) OR EXISTS (
    SELECT 1 FROM model_shown WHERE case_id = NEW.case_id AND reviewer_id = NEW.reviewer_id
)) BEGIN
    SELECT RAISE(ABORT, 'the unaided verdict cannot be corrected once the model output has been shown');
END;
"""


@MIGRATIONS(name="m004_refs_and_model_shown")
def m004_refs_and_model_shown(db: Database) -> None:
    """Opaque per-reviewer case and verdict references (random, not counters or hashes); the moment the
    model output was shown, which freezes the unaided verdict (a correction must come before it)."""
    for statement in _statements(_M004):  # one by one, inside the migration's transaction
        db.execute(statement)


def _statements(script: str) -> list[str]:
    """The SQL statements of ``script`` (triggers kept whole). ``executescript`` would commit the
    migration's transaction first, so a crash could leave a migration half applied."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:60]}")
    return statements


@MIGRATIONS(name="m005_study_settings")
def m005_study_settings(db: Database) -> None:
    """Study-wide design settings as key/value rows (``washout_days``: see :mod:`clinical.design`)."""
    db.execute("CREATE TABLE study_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, set_at TEXT NOT NULL)")


@MIGRATIONS(name="m006_admin_reads")
def m006_admin_reads(db: Database) -> None:
    """``reviewers.reads``: 1 when an admin was explicitly given a reading queue. Reviewers always read; an
    admin (study coordinator) is a reader only with ``reads`` = 1 or once they have verdicts."""
    db.execute("ALTER TABLE reviewers ADD COLUMN reads INTEGER NOT NULL DEFAULT 0")


SCHEMA = ("m001_initial", "m002_session_end", "m003_sign_in_failures", "m004_refs_and_model_shown",
          "m005_study_settings", "m006_admin_reads")
"""The migrations of this version, in order; the schema version is their number (also ``PRAGMA user_version``)."""
SCHEMA_VERSION = len(SCHEMA)


def migrate(db: Database) -> None:
    """Bring ``db`` to the current schema (WAL on, pending migrations applied; idempotent)."""
    db.enable_wal()
    MIGRATIONS.apply(db)
    if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def applied_names(db: Database) -> list[str]:
    """Names of this module's migrations applied to ``db``, in the order they were applied."""
    return [m.name for m in MIGRATIONS.applied(db)]
