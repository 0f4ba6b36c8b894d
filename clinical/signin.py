"""Sign-in rate limiting, persisted in the clinical database (so it holds across restarts, browser
sessions and processes).

Policy: after :data:`MAX_FAILURES` failed sign-ins for one reviewer id within :data:`WINDOW_S`, further
attempts for that id are refused, without checking the credential (no scrypt work for an attacker to
trigger), until the oldest of those failures is :data:`WINDOW_S` old. Refused attempts are not counted,
so a locked-out reviewer is never locked out for longer than the window. A successful sign-in, or a new
credential set by the study admin (``python -m clinical add-reviewer``), clears the id's failures.
Unknown ids are counted exactly like known ones, so the limiter reveals nothing about which ids exist.
Failures older than the window are pruned, so the table stays small.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from sqlite_utils import Database

MAX_FAILURES = 5
WINDOW_S = 15 * 60
_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _stamp(moment: datetime) -> str:
    return moment.strftime(_FORMAT)


def seconds_locked(db: Database, reviewer_id: str, now: datetime | None = None) -> float:
    """Seconds until ``reviewer_id`` may try again; 0 when not locked."""
    now = now or datetime.now(timezone.utc)
    recent = [r[0] for r in db.execute(
        "SELECT at FROM sign_in_failures WHERE reviewer_id = ? AND at > ? ORDER BY at DESC LIMIT ?",
        [reviewer_id, _stamp(now - timedelta(seconds=WINDOW_S)), MAX_FAILURES]).fetchall()]
    if len(recent) < MAX_FAILURES:
        return 0.0
    oldest = datetime.strptime(recent[-1], _FORMAT).replace(tzinfo=timezone.utc)
    return max(0.0, WINDOW_S - (now - oldest).total_seconds())


def record_failure(db: Database, reviewer_id: str, now: datetime | None = None) -> None:
    """Inside a write transaction: count one failed sign-in for ``reviewer_id`` (and prune old ones)."""
    now = now or datetime.now(timezone.utc)
    db.execute("DELETE FROM sign_in_failures WHERE at <= ?", [_stamp(now - timedelta(seconds=WINDOW_S))])
    db.execute("INSERT INTO sign_in_failures (reviewer_id, at) VALUES (?, ?)", [reviewer_id, _stamp(now)])


def clear_failures(db: Database, reviewer_id: str) -> None:
    """Inside a write transaction: forget ``reviewer_id``'s failed sign-ins."""
    db.execute("DELETE FROM sign_in_failures WHERE reviewer_id = ?", [reviewer_id])


def locked_message(seconds: float) -> str:
    """The sentence a locked-out reviewer sees."""
    minutes = max(1, math.ceil(seconds / 60))
    return (f"Too many failed sign-ins for this reviewer id; try again in {minutes} minute(s), "
            "or ask the study admin to set a new credential.")
