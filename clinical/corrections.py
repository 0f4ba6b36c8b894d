"""Corrections: a reviewer revises a verdict within its phase by appending a new verdict that
``supersedes`` it (verdicts stay append-only; the report counts only the latest of each chain and the
audit trail keeps every link).

Rules, enforced by the schema's triggers and checked here first for a clear sentence:
- a correction supersedes the *current* verdict (the latest of its chain) of the same reviewer, case and
  phase;
- an unaided verdict can be corrected only until the model output for that case has been shown to the
  reviewer (or an aided verdict recorded);
- a correction that changes nothing (same label, confidence and comment) is refused.

``correct_verdict`` serves the Review tab (the reviewer names their verdict by its opaque reference);
``import_corrections`` serves ``python -m clinical correct`` (a CSV like ``import-verdicts``'), all or
nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from . import APP_VERSION
from .schema import LABELS
from .store import ClinicalError, ReviewSession, Store, explain_integrity_error, utc_now


def latest_in_chain(db: Database, verdict_id: int) -> int:
    """The id of the verdict that currently stands for ``verdict_id``'s chain (itself when uncorrected)."""
    current = verdict_id
    while True:
        row = next(db.query("SELECT id FROM verdicts WHERE supersedes = ?", [current]), None)
        if row is None:
            return current
        current = int(row["id"])


def current_verdict(db: Database, reviewer_id: str, case_id: str, phase: str) -> dict[str, Any] | None:
    """The reviewer's current verdict for (case, phase): the one no correction has replaced."""
    return next(db.query(
        "SELECT * FROM verdicts v WHERE reviewer_id = ? AND case_id = ? AND phase = ? AND NOT EXISTS "
        "(SELECT 1 FROM verdicts n WHERE n.supersedes = v.id) ORDER BY id DESC LIMIT 1",
        [reviewer_id, case_id, phase]), None)


def check_correctable(db: Database, old: dict[str, Any], label: str, confidence: int, comment: str | None) -> None:
    """Raise ClinicalError (one sentence) when ``old`` cannot be corrected into these values."""
    if label not in LABELS:
        raise ClinicalError("Choose a verdict for the correction.")
    if not isinstance(confidence, int) or not 1 <= confidence <= 5:
        raise ClinicalError("Choose a confidence from 1 to 5 for the correction.")
    newer = next(db.query("SELECT id FROM verdicts WHERE supersedes = ?", [old["id"]]), None)
    if newer is not None:
        raise ClinicalError("That verdict has already been corrected; correct the latest correction instead.")
    if old["phase"] == "unaided":
        shown = next(db.query("SELECT 1 FROM model_shown WHERE reviewer_id = ? AND case_id = ? UNION ALL "
                              "SELECT 1 FROM verdicts WHERE reviewer_id = ? AND case_id = ? AND phase = 'aided'",
                              [old["reviewer_id"], old["case_id"], old["reviewer_id"], old["case_id"]]), None)
        if shown is not None:
            raise ClinicalError("The unaided verdict cannot be corrected once the model output has been shown.")
    if (old["label"], int(old["confidence"]), old["comment"] or None) == (label, confidence, comment or None):
        raise ClinicalError("Nothing to correct: that is the verdict already saved.")


def _insert(db: Database, row: dict[str, Any]) -> int:
    try:
        return int(db["verdicts"].insert(row).last_pk)
    except sqlite3.IntegrityError as err:
        raise ClinicalError(explain_integrity_error(err)) from None


def correct_verdict(store: Store, session: ReviewSession, verdict_ref: str, label: str, confidence: int | None,
                    comment: str | None = None, lead_time_s: float | None = None,
                    model_version: str | None = None) -> tuple[int, str]:
    """Append a correction of the signed-in reviewer's verdict ``verdict_ref``; returns (id, its reference).

    Raises:
        ClinicalError: no such verdict of this reviewer, already corrected, frozen, or nothing changed.
    """
    if confidence is None:
        raise ClinicalError("Choose a confidence from 1 to 5 for the correction.")
    comment = (comment or "").strip() or None
    with store.write() as db:
        old = next(db.query("SELECT v.* FROM verdicts v JOIN verdict_refs r ON r.verdict_id = v.id "
                            "WHERE r.ref = ? AND v.reviewer_id = ?", [(verdict_ref or "").strip(),
                                                                      session.reviewer_id]), None)
        if old is None:  # someone else's reference reads exactly like an unknown one
            raise ClinicalError("Choose one of your own verdicts to correct.")
        check_correctable(db, old, label, int(confidence), comment)
        new_id = _insert(db, {
            "case_id": old["case_id"], "reviewer_id": session.reviewer_id, "session_id": session.session_id,
            "phase": old["phase"], "label": label, "confidence": int(confidence),
            "lead_time_s": None if lead_time_s is None else round(float(lead_time_s), 3), "created_at": utc_now(),
            "app_version": APP_VERSION, "model_version": model_version, "comment": comment,
            "supersedes": old["id"]})
        ref = next(db.query("SELECT ref FROM verdict_refs WHERE verdict_id = ?", [new_id]))["ref"]
    return new_id, ref


def import_corrections(store: Store, path: str | Path) -> dict[str, Any]:
    """``python -m clinical correct``: each CSV row (reviewer, case, phase, label, confidence, optional
    comment and lead_time_s; as ``import-verdicts``) corrects that reviewer's current verdict for the case
    and phase. Rows for the same verdict apply in file order (a chain). One transaction: any refused row
    leaves the database unchanged.

    Raises:
        ClinicalError: a bad row, an unknown reviewer, no verdict to correct, or a refused correction.
    """
    from .verdicts_io import parse_csv, resolve_case

    rows = parse_csv(path)
    sessions: dict[str, str] = {}
    with store.write() as db:
        known = {r["id"] for r in db.query("SELECT id FROM reviewers")}
        for row in rows:
            if row.reviewer not in known:
                raise ClinicalError(f"Line {row.line}: no reviewer '{row.reviewer}' in the database.")
            case_id = resolve_case(db, row.case, row.line)
            old = current_verdict(db, row.reviewer, case_id, row.phase)
            if old is None:
                raise ClinicalError(f"Line {row.line}: {row.reviewer} has no {row.phase} verdict for "
                                    f"'{row.case}' to correct; import it with import-verdicts.")
            try:
                check_correctable(db, old, row.label, row.confidence, row.comment)
            except ClinicalError as err:
                raise ClinicalError(f"Line {row.line}: {err}") from None
            if row.reviewer not in sessions:
                sessions[row.reviewer] = store.open_import_session(db, row.reviewer, Path(path).name)
            try:
                _insert(db, {"case_id": case_id, "reviewer_id": row.reviewer, "session_id": sessions[row.reviewer],
                             "phase": row.phase, "label": row.label, "confidence": row.confidence,
                             "lead_time_s": row.lead_time_s, "created_at": utc_now(), "app_version": APP_VERSION,
                             "model_version": None, "comment": row.comment, "supersedes": old["id"]})
            except ClinicalError as err:
                raise ClinicalError(f"Line {row.line}: {err}") from None
    return {"corrections": len(rows), "reviewers": sorted(sessions)}

