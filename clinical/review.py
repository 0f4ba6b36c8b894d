"""Reading sessions without any UI: the reviewer's queue, the next (case, phase) and recording verdicts.

For each case of the reviewer's randomised queue the unaided verdict comes first; then the MIM panels
are revealed and the aided verdict is recorded. Progress is derived from the verdicts already stored,
so a session that was interrupted resumes exactly where it stopped, in any browser. Everything goes
through a :class:`~clinical.store.ReviewSession` obtained by signing in: a reviewer can only read and
write their own verdicts. Reviewers are blinded: nothing here exposes file names, datasets or labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .store import ClinicalError, ReviewSession, Store


@dataclass(frozen=True)
class ReviewItem:
    """What to show next: a case, the phase to record, and progress through the queue."""

    case_id: str
    phase: str  # "unaided" or "aided"
    position: int  # 1-based place in the queue
    total: int
    completed: int  # cases with both verdicts

    @property
    def short_id(self) -> str:
        return self.case_id[:12]


def _recorded(store: Store, session: ReviewSession) -> set[tuple[str, str]]:
    return {(r["case_id"], r["phase"]) for r in store.query(
        "SELECT DISTINCT case_id, phase FROM verdicts WHERE reviewer_id = ?", [session.reviewer_id])}


def _model_version(detector: Any) -> str | None:
    """The detector's model version; :mod:`clinical.models` (and torch) is imported only when there is one."""
    if detector is None:
        return None
    from .models import model_version

    return model_version(detector.card)


def next_item(store: Store, session: ReviewSession) -> ReviewItem | None:
    """The first case of the queue still lacking a verdict, with the phase it needs; None when all done."""
    queue = store.queue(session.reviewer_id)
    recorded = _recorded(store, session)
    completed = sum((case, "aided") in recorded for case in queue)
    for position, case in enumerate(queue, start=1):
        if (case, "aided") not in recorded:
            phase = "aided" if (case, "unaided") in recorded else "unaided"
            return ReviewItem(case, phase, position, len(queue), completed)
    return None


def progress_text(store: Store, session: ReviewSession, item: ReviewItem | None) -> str:
    """One line of progress for the screen."""
    if item is None:
        total = len(store.queue(session.reviewer_id))
        return f"All {total} case(s) read in both phases. Thank you, {session.display_name}."
    step = "1 of 2: your own verdict, before the model" if item.phase == "unaided" else \
        "2 of 2: the model output is shown; record your verdict again"
    return (f"Case {item.position} of {item.total} (ref {item.short_id}) · {item.completed} case(s) complete · "
            f"step {step}")


def record_verdict(store: Store, session: ReviewSession, expected: tuple[str, str] | None, label: str,
                   confidence: int, lead_time_s: float | None, comment: str | None, detector: Any = None) -> str:
    """Store the verdict for the item on screen; returns the on-screen confirmation.

    ``expected`` is the (case_id, phase) that was displayed; if it is no longer the next item (a double
    click, a second browser tab) nothing is written.

    Raises:
        ClinicalError: missing label, stale screen, or a rule of the schema refused the verdict.
    """
    item = next_item(store, session)
    if item is None or expected is None or (item.case_id, item.phase) != tuple(expected):
        raise ClinicalError("This case was already saved or is no longer the current one; "
                            "the screen is now up to date.")
    if not label:
        raise ClinicalError("Choose a verdict before saving.")
    # the app's model version, recorded in both phases (in the unaided one it was not shown yet)
    version = _model_version(detector)
    verdict_id = store.add_verdict(session, item.case_id, item.phase, label, int(confidence), lead_time_s,
                                   model_version=version, comment=comment)
    return (f"Saved {item.phase} verdict #{verdict_id} for case {item.position} of {item.total} "
            f"(ref {item.short_id}): {label}, confidence {int(confidence)}.")


def mim_panels(store: Store, detector: Any, case_id: str) -> tuple[str, list[tuple[np.ndarray, str]]]:
    """The model output for the aided phase: a summary line and (image, caption) panels."""
    analysis = detector.analyze(store.case_png(case_id))
    text = (f"**MIM ({_model_version(detector)}):** {analysis.verdict.value} — score {analysis.score:.4f}, "
            f"threshold {analysis.threshold:.4f} (higher = less mpox-like). {analysis.reason}")
    panels: list[tuple[np.ndarray, str]] = [(analysis.original, "model input (central crop)")]
    for index, scale in enumerate(analysis.scales):
        panels.append((analysis.masked[index], f"masked ({scale} px cells)"))
        panels.append((analysis.inpainted[index], f"inpainted ({scale} px cells)"))
    panels.append((analysis.heatmap_overlay(), "dissimilarity heatmap (fixed scale)"))
    return text, panels


def my_verdicts(store: Store, session: ReviewSession) -> list[list[Any]]:
    """The signed-in reviewer's own verdicts as table rows (no file names or reference labels)."""
    return [[v["id"], v["case_id"][:12], v["phase"], v["label"], v["confidence"], v["created_at"],
             v["supersedes"] or ""] for v in store.verdicts_of(session)]


MY_VERDICT_HEADERS = ["verdict", "case ref", "phase", "label", "confidence", "saved (UTC)", "corrects"]
