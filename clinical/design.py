"""The study design: sequential reading (default) or a washout between the unaided and aided readings.

- **Sequential** (``washout_days`` 0 or unset): for each case the unaided verdict, then (once the
  reviewer asks) the model output and the aided verdict, case after case. The aided screen shows the
  reviewer's own unaided verdict beside the model output.
- **Washout** (``washout_days`` > 0): every case is first read unaided; a case's aided reading opens
  ``washout_days`` after the reviewer's first unaided verdict on it, in a second random order, and the
  aided screen does *not* show the earlier unaided verdict (so the aided reading is not anchored on it).

The setting lives in ``study_settings`` (reported under ``design.settings`` in ``metrics.json``). It can
be changed only while no aided verdict has been recorded, so one study never mixes designs.
"""

from __future__ import annotations

import math

from .store import ClinicalError, Store, utc_now

WASHOUT_KEY = "washout_days"
MAX_WASHOUT_DAYS = 365


def washout_days(store: Store) -> float:
    """The configured washout in days (0: sequential reading)."""
    rows = store.query("SELECT value FROM study_settings WHERE key = ?", [WASHOUT_KEY])
    return float(rows[0]["value"]) if rows else 0.0


def set_washout(store: Store, days: float) -> None:
    """Set the washout (0 = sequential).

    Raises:
        ClinicalError: not a number from 0 to 365, or aided verdicts already recorded.
    """
    if not isinstance(days, (int, float)) or not math.isfinite(days) or not 0 <= days <= MAX_WASHOUT_DAYS:
        raise ClinicalError(f"The washout must be a number of days from 0 to {MAX_WASHOUT_DAYS}.")
    with store.write() as db:
        if next(db.query("SELECT 1 FROM verdicts WHERE phase = 'aided' LIMIT 1"), None) is not None:
            raise ClinicalError("The design cannot change once aided verdicts have been recorded.")
        db.execute("INSERT OR REPLACE INTO study_settings (key, value, set_at) VALUES (?, ?, ?)",
                   [WASHOUT_KEY, f"{float(days):g}", utc_now()])


def describe(days: float) -> str:
    """The design in one sentence."""
    if days <= 0:
        return ("sequential reading: for each case the unaided verdict, then the model output and the aided "
                "verdict (the reviewer's unaided verdict shown beside it)")
    return (f"washout of {days:g} day(s): every case read unaided first; each case's aided reading opens "
            f"{days:g} day(s) after its unaided verdict, in a second random order, without the unaided verdict "
            "on screen")
