"""``import-verdicts``: clinicians' verdicts collected elsewhere, from a CSV file, all or nothing.

Columns: ``reviewer, case, phase, label, confidence`` (``case`` = the image's sha256 or its original
file name), optional ``comment`` and ``lead_time_s``. Reviewers not yet known are created without a
credential; each reviewer's rows get one import session. Unaided rows are stored before aided ones.
Any bad row rejects the whole file and leaves the database unchanged.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from . import APP_VERSION
from .schema import LABELS, PHASES
from .store import ClinicalError, Store, explain_integrity_error, utc_now

REQUIRED = ("reviewer", "case", "phase", "label", "confidence")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class VerdictRow:
    """One validated CSV row; ``line`` is its line number in the file (header = 1)."""

    line: int
    reviewer: str
    case: str
    phase: str
    label: str
    confidence: int
    comment: str | None
    lead_time_s: float | None


def parse_csv(path: str | Path) -> list[VerdictRow]:
    """Read and check every row's format.

    Raises:
        ClinicalError: missing file or columns, or a row with a bad value (the first one found).
    """
    path = Path(path)
    if not path.is_file():
        raise ClinicalError(f"Verdict file {path} not found.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in fields]
            if missing:
                raise ClinicalError(f"{path.name} lacks the column(s) {', '.join(missing)}; "
                                    f"expected {', '.join(REQUIRED)}.")
            raw = [({k.strip().lower(): (v or "").strip() for k, v in row.items() if k}, reader.line_num)
                   for row in reader]
    except UnicodeDecodeError:
        raise ClinicalError(f"{path.name} is not a UTF-8 text CSV file.") from None
    if not raw:
        raise ClinicalError(f"{path.name} has no verdict rows.")
    return [_row(values, line) for values, line in raw]


def _row(values: dict[str, str], line: int) -> VerdictRow:
    label = values["label"].lower().replace("_", " ")
    phase = values["phase"].lower()
    if not values["reviewer"]:
        raise ClinicalError(f"Line {line}: the reviewer is empty.")
    if not values["case"]:
        raise ClinicalError(f"Line {line}: the case is empty.")
    if phase not in PHASES:
        raise ClinicalError(f"Line {line}: phase '{values['phase']}' is not one of {', '.join(PHASES)}.")
    if label not in LABELS:
        raise ClinicalError(f"Line {line}: label '{values['label']}' is not one of {', '.join(LABELS)}.")
    if not values["confidence"].isdigit() or not 1 <= int(values["confidence"]) <= 5:
        raise ClinicalError(f"Line {line}: confidence '{values['confidence']}' is not a whole number from 1 to 5.")
    lead = values.get("lead_time_s") or None
    try:
        lead_time = None if lead is None else float(lead)
    except ValueError:
        raise ClinicalError(f"Line {line}: lead_time_s '{lead}' is not a number of seconds.") from None
    return VerdictRow(line, values["reviewer"], values["case"], phase, label, int(values["confidence"]),
                      values.get("comment") or None, lead_time)


def resolve_case(db: Database, ref: str, line: int) -> str:
    """A case id from a sha256 or an original file name (which must be unambiguous)."""
    if SHA256.match(ref.lower()):
        rows = list(db.query("SELECT id FROM cases WHERE id = ?", [ref.lower()]))
    else:
        rows = list(db.query("SELECT id FROM cases WHERE file_name = ?", [ref]))
    if not rows:
        raise ClinicalError(f"Line {line}: no imported case matches '{ref}'.")
    if len(rows) > 1:
        raise ClinicalError(f"Line {line}: {len(rows)} cases are named '{ref}'; use the sha256 instead.")
    return str(rows[0]["id"])


def import_verdicts(store: Store, path: str | Path) -> dict[str, Any]:
    """Import a verdict CSV in one transaction; returns counts.

    Raises:
        ClinicalError: any bad row (nothing is stored).
    """
    rows = parse_csv(path)
    ordered = sorted(rows, key=lambda r: (PHASES.index(r.phase), r.line))
    created: list[str] = []
    with store.write() as db:
        known = {r["id"] for r in db.query("SELECT id FROM reviewers")}
        sessions: dict[str, str] = {}
        for row in ordered:
            case_id = resolve_case(db, row.case, row.line)
            if row.reviewer not in known:
                store.create_reviewer(row.reviewer, db=db)
                known.add(row.reviewer)
                created.append(row.reviewer)
            if row.reviewer not in sessions:
                sessions[row.reviewer] = store.open_import_session(db, row.reviewer, Path(path).name)
            record = {"case_id": case_id, "reviewer_id": row.reviewer, "session_id": sessions[row.reviewer],
                      "phase": row.phase, "label": row.label, "confidence": row.confidence,
                      "lead_time_s": row.lead_time_s, "created_at": utc_now(), "app_version": APP_VERSION,
                      "model_version": None, "comment": row.comment, "supersedes": None}
            try:
                db["verdicts"].insert(record)
            except sqlite3.IntegrityError as err:
                raise ClinicalError(f"Line {row.line}: {explain_integrity_error(err)}") from None
    return {"verdicts": len(rows), "reviewers_created": created}
