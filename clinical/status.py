"""Study progress for the coordinator: per reader, cases done per phase, corrections, median reading
time and last activity (``python -m clinical status`` and the Review tab's admin panel).

Only readers are listed: every reviewer, and an admin only when given a reading queue (``add-reviewer
--reads``) or once they have verdicts (:data:`clinical.store.IS_READER_SQL`). Admins who do not read are
named apart (``admins_not_reading``), never as a reader with 0 of N cases done.

Counts are cases (not verdicts): a corrected verdict still counts its case once. Reading time is the
median of the first verdict's ``lead_time_s`` per case and phase (the time from the case appearing to
the save; corrections and imported verdicts without a time are left out).
"""

from __future__ import annotations

import statistics
from typing import Any

from .schema import PHASES
from .store import Store

HEADERS = ["reader", "name", "role", "unaided done", "aided done", "of cases", "corrections",
           "median s unaided", "median s aided", "last activity (UTC)"]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def reader_progress(store: Store) -> dict[str, Any]:
    """``{"cases": usable cases, "readers": [one dict per reader, by id], "admins_not_reading": [ids]}``."""
    usable = store.query("SELECT count(*) AS n FROM cases WHERE excluded_reason IS NULL")[0]["n"]
    verdicts = store.query("SELECT reviewer_id, case_id, phase, lead_time_s, supersedes, created_at FROM verdicts")
    last = {r["reviewer_id"]: r["at"] for r in store.query(
        "SELECT reviewer_id, max(at) AS at FROM (SELECT reviewer_id, created_at AS at FROM verdicts "
        "UNION ALL SELECT reviewer_id, started_at FROM sessions WHERE kind = 'review' "
        "UNION ALL SELECT reviewer_id, shown_at FROM model_shown) GROUP BY reviewer_id")}
    readers, admins = [], []
    for reviewer in store.reviewers():
        rid = reviewer["id"]
        if not reviewer["is_reader"]:
            admins.append(rid)
            continue
        mine = [v for v in verdicts if v["reviewer_id"] == rid]
        row: dict[str, Any] = {"reader": rid, "name": reviewer["display_name"], "role": reviewer["role"],
                               "cases": usable, "corrections": sum(v["supersedes"] is not None for v in mine),
                               "last_activity": last.get(rid)}
        for phase in PHASES:
            rows = [v for v in mine if v["phase"] == phase]
            row[f"{phase}_done"] = len({v["case_id"] for v in rows})
            row[f"median_s_{phase}"] = _median([v["lead_time_s"] for v in rows
                                                if v["supersedes"] is None and v["lead_time_s"] is not None])
        readers.append(row)
    return {"cases": usable, "readers": readers, "admins_not_reading": admins}


def _admins_note(progress: dict[str, Any]) -> str:
    admins = progress.get("admins_not_reading") or []
    return f"; admin(s) without a reading queue, not readers: {', '.join(admins)}" if admins else ""


def table_rows(progress: dict[str, Any]) -> list[list[Any]]:
    """Rows under :data:`HEADERS` (None shown as an empty cell; time stamps to the second)."""
    def cell(value: Any) -> Any:
        return "" if value is None else value

    return [[r["reader"], r["name"], r["role"], r["unaided_done"], r["aided_done"], r["cases"], r["corrections"],
             cell(r["median_s_unaided"]), cell(r["median_s_aided"]), cell((r["last_activity"] or "")[:19].replace("T", " "))]
            for r in progress["readers"]]


def summary_lines(progress: dict[str, Any]) -> str:
    """One Markdown line per reader (readable on a phone, where the table scrolls sideways)."""
    def seconds(value: float | None) -> str:
        return "–" if value is None else f"{value:g} s"

    lines = [f"**{progress['cases']} usable case(s).**{_admins_note(progress)}"]
    for r in progress["readers"]:
        last = (r["last_activity"] or "never")[:19].replace("T", " ")
        lines.append(f"- **{r['reader']}** ({r['name']}, {r['role']}): unaided {r['unaided_done']}/{r['cases']}, "
                     f"aided {r['aided_done']}/{r['cases']}, {r['corrections']} correction(s); median reading time "
                     f"{seconds(r['median_s_unaided'])} unaided, {seconds(r['median_s_aided'])} aided; last activity "
                     f"{last}")
    return "\n".join(lines)


def format_table(progress: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    rows = [HEADERS] + [[str(c) for c in row] for row in table_rows(progress)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    readers = sum(1 for r in progress["readers"] if r["unaided_done"] or r["aided_done"])
    return "\n".join([f"{progress['cases']} usable case(s); {readers} reader(s) with verdicts{_admins_note(progress)}",
                      *lines])
