"""The clinical store: one SQLite file, opened through sqlite-utils, one connection per request.

:class:`Store` holds only the database path. Every method opens its own connection (foreign keys on,
30 s busy timeout; the file is in WAL mode), does its work and closes it, so Gradio handlers on worker
threads and several processes can use one store at the same time. Writes take the write lock up
front (``BEGIN IMMEDIATE``) so concurrent writers queue instead of failing.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from sqlite_utils import Database

from . import APP_VERSION, signin
from .credentials import check_strength, hash_credential, new_token, token_digest, verify_credential
from .schema import LABELS, PHASES, ROLES, migrate

BUSY_TIMEOUT_S = 30.0
SESSION_HOURS = 12  # a review session signs itself out after this long
CASE_COLUMNS = ("id, file_name, source_path, dataset, label_class, reference_label, label_provenance, group_id, "
                "excluded_reason, width, height, image_sha256, imported_at")
# Who is a reader (SQL on ``reviewers r``): every reviewer; an admin (study coordinator) only when explicitly
# given a reading queue (``reads`` = 1: ``add-reviewer --reads``) or once they have verdicts of their own.
IS_READER_SQL = ("(r.role = 'reviewer' OR r.reads = 1 OR EXISTS "
                 "(SELECT 1 FROM verdicts v WHERE v.reviewer_id = r.id))")


class ClinicalError(ValueError):
    """A request the store refuses; ``str(err)`` is one sentence for the user."""


def utc_now() -> str:
    """UTC timestamp, ISO 8601 with microseconds and a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NewCase:
    """A case ready to store. ``png`` is None for an excluded (unreadable) file."""

    id: str
    file_name: str
    source_path: str
    dataset: str
    label_class: str
    reference_label: str
    label_provenance: str
    group_id: str
    png: bytes | None
    width: int | None = None
    height: int | None = None
    image_sha256: str | None = None
    excluded_reason: str | None = None


@dataclass(frozen=True)
class ReviewSession:
    """A signed-in reviewer: who, which session row, and their role."""

    session_id: str
    reviewer_id: str
    display_name: str
    role: str


class Store:
    """The clinical database at ``path`` (created and migrated when ``create``; else it must exist)."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ClinicalError(f"No clinical database at {self.path}; create it with `import-cases` first.")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            migrate(db)

    # -- connections -------------------------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[Database]:
        """A fresh connection for one request; closed on exit."""
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            yield Database(conn)
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[Database]:
        """A connection inside one write transaction: committed on success, rolled back on any error."""
        with self.connect() as db:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.conn.execute("COMMIT")

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Rows of a read-only query as dicts."""
        with self.connect() as db:
            return list(db.query(sql, params or []))

    # -- cases -------------------------------------------------------------------------------------
    def add_cases(self, cases: Iterable[NewCase]) -> dict[str, int]:
        """Store new cases in one transaction (``cases`` may be a generator, consumed inside it); an
        identical file already stored is skipped.

        Raises:
            ClinicalError: the same image arrives with two different reference labels (nothing stored).
        """
        counts = {"added": 0, "excluded": 0, "already_stored": 0}
        with self.write() as db:
            for case in cases:
                old = next(db.query("SELECT reference_label, source_path FROM cases WHERE id = ?", [case.id]), None)
                if old:
                    if old["reference_label"] != case.reference_label:
                        raise ClinicalError(
                            f"{case.source_path} is the same image as {old['source_path']} but is labelled "
                            f"'{case.reference_label}' instead of '{old['reference_label']}'; fix the folders.")
                    counts["already_stored"] += 1
                    continue
                row = {k: getattr(case, k) for k in ("id", "file_name", "source_path", "dataset", "label_class",
                       "reference_label", "label_provenance", "group_id", "excluded_reason", "width", "height",
                       "image_sha256")}
                db["cases"].insert({**row, "imported_at": utc_now()})
                if case.png is not None:
                    db["case_images"].insert({"case_id": case.id, "png": case.png})
                counts["excluded" if case.excluded_reason else "added"] += 1
        return counts

    def cases(self, usable_only: bool = False) -> list[dict[str, Any]]:
        """All cases (no image bytes), by id."""
        where = "WHERE excluded_reason IS NULL" if usable_only else ""
        return self.query(f"SELECT {CASE_COLUMNS} FROM cases {where} ORDER BY id")

    def case_png(self, case_id: str) -> bytes:
        """The stored, metadata-free PNG of a case."""
        rows = self.query("SELECT png FROM case_images WHERE case_id = ?", [case_id])
        if not rows:
            raise ClinicalError(f"Case {case_id[:12]}… has no stored image.")
        return rows[0]["png"]

    # -- reviewers and sessions --------------------------------------------------------------------
    def create_reviewer(self, reviewer_id: str, display_name: str | None = None, role: str = "reviewer",
                        credential: str | None = None, db: Database | None = None, reads: bool = False) -> None:
        """Add a reviewer (credential optional: without one they cannot sign in until it is set).

        ``reads``: give an admin a reading queue (reviewers always have one; an admin without it is no reader).
        """
        reviewer_id = reviewer_id.strip()
        if not reviewer_id or len(reviewer_id) > 64:
            raise ClinicalError("A reviewer id must be 1 to 64 characters long.")
        if role not in ROLES:
            raise ClinicalError(f"Role must be one of {', '.join(ROLES)}, not '{role}'.")
        if credential is not None:
            try:
                check_strength(credential)
            except ValueError as err:
                raise ClinicalError(str(err)) from None
        row = {"id": reviewer_id, "display_name": (display_name or reviewer_id).strip(), "role": role,
               "reads": int(bool(reads)), "credential_hash": hash_credential(credential) if credential is not None else None,
               "created_at": utc_now()}
        try:
            if db is not None:
                db["reviewers"].insert(row)
            else:
                with self.write() as conn:
                    conn["reviewers"].insert(row)
        except sqlite3.IntegrityError:
            raise ClinicalError(f"A reviewer with id '{reviewer_id}' already exists.") from None

    def set_credential(self, reviewer_id: str, credential: str) -> None:
        """Set or replace a reviewer's credential."""
        try:
            check_strength(credential)
        except ValueError as err:
            raise ClinicalError(str(err)) from None
        with self.write() as db:
            cursor = db.execute("UPDATE reviewers SET credential_hash = ? WHERE id = ?",
                                [hash_credential(credential), reviewer_id])
            if cursor.rowcount != 1:
                raise ClinicalError(f"No reviewer with id '{reviewer_id}'.")
            signin.clear_failures(db, reviewer_id)  # an admin reset also lifts a sign-in lockout

    def set_reads(self, reviewer_id: str, reads: bool = True) -> None:
        """Give (or take back) an admin's reading queue; a reviewer always reads, whatever this says."""
        with self.write() as db:
            cursor = db.execute("UPDATE reviewers SET reads = ? WHERE id = ?", [int(bool(reads)), reviewer_id])
            if cursor.rowcount != 1:
                raise ClinicalError(f"No reviewer with id '{reviewer_id}'.")

    def reviewers(self) -> list[dict[str, Any]]:
        """Reviewer ids, names and roles (never credential hashes); ``is_reader``: see :data:`IS_READER_SQL`."""
        return self.query("SELECT id, display_name, role, credential_hash IS NOT NULL AS can_sign_in, created_at, "
                          f"reads, {IS_READER_SQL} AS is_reader FROM reviewers r ORDER BY id")

    def is_reader(self, reviewer_id: str, db: Database | None = None) -> bool:
        """Whether the reviewer reads cases (has a queue): see :data:`IS_READER_SQL`. An unknown id counts as a
        reader (the queue then fails on its foreign key, as before)."""
        sql = f"SELECT {IS_READER_SQL} AS is_reader FROM reviewers r WHERE r.id = ?"
        rows = list(db.query(sql, [reviewer_id])) if db is not None else self.query(sql, [reviewer_id])
        return not rows or bool(rows[0]["is_reader"])

    def sign_in(self, reviewer_id: str, credential: str) -> tuple[str, ReviewSession] | None:
        """Check the credential; on success open a review session and return (token, session); None when
        the id or credential is wrong.

        Raises:
            ClinicalError: too many failed sign-ins for this id recently (see :mod:`clinical.signin`);
                the credential is then not even checked.
        """
        reviewer_id = reviewer_id.strip()
        with self.connect() as db:
            wait = signin.seconds_locked(db, reviewer_id)
        if wait:
            raise ClinicalError(signin.locked_message(wait))
        rows = self.query("SELECT id, display_name, role, credential_hash FROM reviewers WHERE id = ?",
                          [reviewer_id])
        stored = rows[0]["credential_hash"] if rows else None
        if not verify_credential(credential, stored) or not rows:
            with self.write() as db:
                signin.record_failure(db, reviewer_id)
            return None
        token, session_id = new_token(), uuid.uuid4().hex
        with self.write() as db:
            signin.clear_failures(db, reviewer_id)
            db["sessions"].insert({"id": session_id, "reviewer_id": rows[0]["id"], "kind": "review",
                                   "token_sha256": token_digest(token), "started_at": utc_now(),
                                   "app_version": APP_VERSION, "source": None})
        return token, ReviewSession(session_id, rows[0]["id"], rows[0]["display_name"], rows[0]["role"])

    def session(self, token: str | None) -> ReviewSession | None:
        """The open review session a token belongs to; None when unknown, signed out or expired."""
        if not token:
            return None
        rows = self.query("SELECT s.id, s.started_at, r.id AS reviewer_id, r.display_name, r.role FROM sessions s "
                          "JOIN reviewers r ON r.id = s.reviewer_id WHERE s.token_sha256 = ? AND s.kind = 'review' "
                          "AND s.ended_at IS NULL", [token_digest(token)])
        if not rows:
            return None
        started = datetime.strptime(rows[0]["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        if (datetime.now(timezone.utc) - started).total_seconds() > SESSION_HOURS * 3600:
            return None
        return ReviewSession(rows[0]["id"], rows[0]["reviewer_id"], rows[0]["display_name"], rows[0]["role"])

    def end_session(self, token: str | None) -> None:
        """Sign out: the token stops working (its verdicts stay)."""
        if token:
            with self.write() as db:
                db.execute("UPDATE sessions SET ended_at = ? WHERE token_sha256 = ? AND ended_at IS NULL",
                           [utc_now(), token_digest(token)])

    def open_import_session(self, db: Database, reviewer_id: str, source: str) -> str:
        """Inside a write transaction: a session row for verdicts imported from ``source``."""
        session_id = uuid.uuid4().hex
        db["sessions"].insert({"id": session_id, "reviewer_id": reviewer_id, "kind": "import", "token_sha256": None,
                               "started_at": utc_now(), "app_version": APP_VERSION, "source": source})
        return session_id

    # -- queue -------------------------------------------------------------------------------------
    def queue(self, reviewer_id: str) -> list[str]:
        """The reviewer's randomised reading order, extended with cases imported since it was made.

        New cases are shuffled (seeded by reviewer and count) and appended, so positions already read
        never move and an interrupted session resumes where it stopped. An admin who is not a reader (see
        :data:`IS_READER_SQL`) has no queue: the list is empty and nothing is written.
        """
        with self.write() as db:
            if not self.is_reader(reviewer_id, db):
                return []
            queued = [r["case_id"] for r in db.query(
                "SELECT case_id FROM queue WHERE reviewer_id = ? ORDER BY position", [reviewer_id])]
            new = [r["id"] for r in db.query(
                "SELECT id FROM cases WHERE excluded_reason IS NULL AND id NOT IN "
                "(SELECT case_id FROM queue WHERE reviewer_id = ?) ORDER BY id", [reviewer_id])]
            if new:
                seed = int(token_digest(f"{reviewer_id}/{len(queued)}")[:16], 16)
                order = np.random.default_rng(seed).permutation(len(new))
                db["queue"].insert_all({"reviewer_id": reviewer_id, "position": len(queued) + i, "case_id": new[j],
                                        "ref": new_ref()} for i, j in enumerate(order))
                queued += [new[j] for j in order]
        return queued

    def case_refs(self, reviewer_id: str) -> dict[str, str]:
        """case id -> the reviewer's own opaque reference for it (random; unrelated to the image or its hash)."""
        self.queue(reviewer_id)  # every usable case has a queue row, hence a reference
        return {r["case_id"]: r["ref"] for r in self.query(
            "SELECT case_id, ref FROM queue WHERE reviewer_id = ?", [reviewer_id])}

    def mark_model_shown(self, session: ReviewSession, case_id: str) -> None:
        """Record (once) that the model output for ``case_id`` is being shown to the signed-in reviewer;
        from then on their unaided verdict for it can no longer be corrected."""
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO model_shown (reviewer_id, case_id, session_id, shown_at) "
                       "VALUES (?, ?, ?, ?)", [session.reviewer_id, case_id, session.session_id, utc_now()])

    def model_shown(self, reviewer_id: str) -> set[str]:
        """Cases whose model output this reviewer has been shown."""
        return {r["case_id"] for r in self.query("SELECT case_id FROM model_shown WHERE reviewer_id = ?",
                                                   [reviewer_id])}

    # -- verdicts ----------------------------------------------------------------------------------
    def add_verdict(self, session: ReviewSession, case_id: str, phase: str, label: str, confidence: int,
                    lead_time_s: float | None = None, model_version: str | None = None, comment: str | None = None,
                    supersedes: int | None = None) -> int:
        """Append one verdict for the signed-in reviewer; returns its id.

        Raises:
            ClinicalError: invalid values, or a rule of the schema refused it (e.g. aided before unaided).
        """
        if phase not in PHASES:
            raise ClinicalError(f"Phase must be one of {', '.join(PHASES)}.")
        if label not in LABELS:
            raise ClinicalError(f"Label must be one of {', '.join(LABELS)}.")
        if not isinstance(confidence, (int, np.integer)) or not 1 <= int(confidence) <= 5:
            raise ClinicalError("Confidence must be a whole number from 1 to 5.")
        row = {"case_id": case_id, "reviewer_id": session.reviewer_id, "session_id": session.session_id,
               "phase": phase, "label": label, "confidence": int(confidence),
               "lead_time_s": None if lead_time_s is None else round(float(lead_time_s), 3),
               "created_at": utc_now(), "app_version": APP_VERSION, "model_version": model_version,
               "comment": (comment or "").strip() or None, "supersedes": supersedes}
        for attempt in range(3):  # a clash of the random verdict reference (48 bits) is retried
            try:
                with self.write() as db:
                    return int(db["verdicts"].insert(row).last_pk)
            except sqlite3.IntegrityError as err:
                if "verdict_refs.ref" in str(err) and attempt < 2:
                    continue
                raise ClinicalError(explain_integrity_error(err)) from None
        raise AssertionError("unreachable")

    def verdicts_of(self, session: ReviewSession) -> list[dict[str, Any]]:
        """The signed-in reviewer's own verdicts (never anyone else's), oldest first, with their opaque
        references: ``ref`` (the verdict), ``case_ref`` (the reviewer's reference of the case),
        ``supersedes_ref`` / ``superseded_by`` (the chain of corrections)."""
        self.queue(session.reviewer_id)  # case references exist for every usable case
        return self.query(
            "SELECT v.id, r.ref, v.case_id, q.ref AS case_ref, c.file_name, v.phase, v.label, v.confidence, "
            "v.lead_time_s, v.created_at, v.comment, v.supersedes, sr.ref AS supersedes_ref, "
            "(SELECT n.id FROM verdicts n WHERE n.supersedes = v.id) AS superseded_by "
            "FROM verdicts v JOIN cases c ON c.id = v.case_id JOIN verdict_refs r ON r.verdict_id = v.id "
            "LEFT JOIN queue q ON q.reviewer_id = v.reviewer_id AND q.case_id = v.case_id "
            "LEFT JOIN verdict_refs sr ON sr.verdict_id = v.supersedes "
            "WHERE v.reviewer_id = ? ORDER BY v.id", [session.reviewer_id])

    def all_verdicts(self) -> list[dict[str, Any]]:
        """Every verdict with its case's reference label and whether a correction replaced it (reports only)."""
        return self.query(
            "SELECT v.*, c.file_name, c.dataset, c.label_class, c.reference_label, c.group_id, "
            "(SELECT s.id FROM verdicts s WHERE s.supersedes = v.id) AS superseded_by "
            "FROM verdicts v JOIN cases c ON c.id = v.case_id ORDER BY v.id")

    # -- model runs --------------------------------------------------------------------------------
    def model_run(self, run: dict[str, Any]) -> int:
        """The id of the run with ``run['run_key']``, created from ``run`` when new."""
        with self.write() as db:
            rows = list(db.query("SELECT id FROM model_runs WHERE run_key = ?", [run["run_key"]]))
            if rows:
                return int(rows[0]["id"])
            row = {**run, "config": json.dumps(run["config"]), "card": json.dumps(run["card"]),
                   "created_at": utc_now(), "app_version": APP_VERSION}
            return int(db["model_runs"].insert(row).last_pk)

    def add_predictions(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        """Store (case_id, score, label) rows of one run."""
        now = utc_now()
        with self.write() as db:
            db["predictions"].insert_all({"run_id": run_id, "created_at": now, **r} for r in rows)

    def runs(self) -> list[dict[str, Any]]:
        """All model runs, oldest first, config and card decoded."""
        rows = self.query("SELECT * FROM model_runs ORDER BY id")
        return [{**r, "config": json.loads(r["config"]), "card": json.loads(r["card"])} for r in rows]

    def predictions(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Predictions joined with their run and case."""
        where, params = ("WHERE p.run_id = ?", [run_id]) if run_id is not None else ("", [])
        return self.query(
            "SELECT p.run_id, m.model_name, m.kind, m.version, m.weights_sha256, m.threshold, m.mpox_when, "
            "p.case_id, c.file_name, c.dataset, c.label_class, c.reference_label, c.group_id, p.score, p.label, "
            f"p.created_at FROM predictions p JOIN model_runs m ON m.id = p.run_id JOIN cases c ON c.id = p.case_id "
            f"{where} ORDER BY p.run_id, p.case_id", params)


def new_ref() -> str:
    """A random opaque reference (12 hex digits), as the schema's ``lower(hex(randomblob(6)))``."""
    return secrets.token_hex(6)


def explain_integrity_error(err: sqlite3.IntegrityError) -> str:
    """One sentence for a constraint or trigger failure on the verdicts table."""
    text = str(err)
    if "verdicts_one_original" in text or "UNIQUE constraint failed: verdicts.case_id" in text:
        return ("This reviewer already has a verdict for this case and phase; "
                "a change must be recorded as a correction that supersedes it.")
    if "verdicts_one_correction" in text or "verdicts.supersedes" in text:
        return "That verdict has already been corrected; correct the latest correction instead."
    if "FOREIGN KEY" in text:
        return "The verdict refers to a case, reviewer or session that does not exist."
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
