"""Reading sessions without any UI: the reviewer's queue, the next step and recording verdicts.

For each case of the reviewer's randomised queue there are three steps:

1. ``unaided``: the reviewer's own verdict, the model output hidden;
2. ``reveal``: the unaided verdict is saved and can still be corrected; the model output is not shown
   until the reviewer asks for it (that moment is recorded and freezes the unaided verdict);
3. ``aided``: the model output is shown (the demo's four panels, colour bar, verdict and reason, beside
   the reviewer's own unaided verdict) and the aided verdict is recorded.

Under a washout design (:mod:`clinical.design`) every case is read unaided first, the aided readings
open ``washout_days`` later in a second random order, without the unaided verdict on screen (and without
a reveal step: an unaided verdict can be corrected from "My verdicts" until its model output is shown).

Progress is derived from what is stored, so an interrupted session resumes exactly where it stopped, in
any browser. Everything goes through a :class:`~clinical.store.ReviewSession`: a reviewer reads and writes
only their own verdicts, and sees only their own opaque references (never file names, datasets, labels,
image hashes or global verdict ids).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from .corrections import correct_verdict, current_verdict
from .credentials import token_digest
from .design import washout_days
from .store import ClinicalError, ReviewSession, Store

STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"  # the store's UTC time stamps

STEPS = ("unaided", "reveal", "aided")
MISSING_BOTH = "Choose a verdict (keys M, N, U, G) and your confidence (keys 1 to 5) before saving."
MISSING_LABEL = "Choose a verdict (keys M, N, U, G) before saving."
MISSING_CONFIDENCE = "Choose your confidence, from 1 (a guess) to 5 (certain; keys 1 to 5), before saving."


@dataclass(frozen=True)
class ReviewItem:
    """What to show next: a case, its step, progress, and the reviewer's current unaided verdict."""

    case_id: str
    case_ref: str  # the reviewer's own opaque reference of the case
    step: str  # one of STEPS
    position: int  # 1-based place in the queue
    total: int
    completed: int  # cases with both verdicts
    unaided: dict[str, Any] | None = None  # the current unaided verdict (steps reveal and aided)

    @property
    def phase(self) -> str:
        """The phase a verdict saved now belongs to."""
        return "unaided" if self.step in ("unaided", "reveal") else "aided"


def _model_version(detector: Any) -> str | None:
    """The detector's model version (a Screening's: the verdict model's, then MIM's); :mod:`clinical.models` (and
    torch) is imported only when there is one."""
    if detector is None:
        return None
    from .models import model_version

    verdict_card = getattr(detector, "verdict_card", None)
    own = model_version(detector.card)
    return own if verdict_card is None else f"{model_version(verdict_card)} (verdict) + {own} (panels)"


def next_item(store: Store, session: ReviewSession, now: datetime | None = None) -> ReviewItem | None:
    """The next step of the reviewer's reading, or None when nothing is open (all done, or waiting for a
    washout to end: see :func:`aided_opens_at`)."""
    rid = session.reviewer_id
    queue = store.queue(rid)
    refs = {r["case_id"]: r["ref"] for r in store.query("SELECT case_id, ref FROM queue WHERE reviewer_id = ?", [rid])}
    recorded = {(r["case_id"], r["phase"]) for r in store.query(
        "SELECT DISTINCT case_id, phase FROM verdicts WHERE reviewer_id = ?", [rid])}
    completed = sum((case, "aided") in recorded for case in queue)
    days = washout_days(store)
    if days > 0:  # washout design: every case unaided first, then the aided readings as they open
        for position, case in enumerate(queue, start=1):
            if (case, "unaided") not in recorded:
                return ReviewItem(case, refs[case], "unaided", position, len(queue), completed)
        opens, now = _aided_openings(store, rid, days), now or datetime.now(timezone.utc)
        for position, case in enumerate(aided_order(rid, queue), start=1):
            if (case, "aided") not in recorded and opens[case] <= now:
                return ReviewItem(case, refs[case], "aided", position, len(queue), completed)  # no unaided shown
        return None
    shown = store.model_shown(rid)
    for position, case in enumerate(queue, start=1):
        if (case, "aided") in recorded:
            continue
        if (case, "unaided") not in recorded:
            return ReviewItem(case, refs[case], "unaided", position, len(queue), completed)
        with store.connect() as db:
            unaided = current_verdict(db, rid, case, "unaided")
        step = "aided" if case in shown else "reveal"
        return ReviewItem(case, refs[case], step, position, len(queue), completed, unaided)
    return None


def aided_order(reviewer_id: str, queue: list[str]) -> list[str]:
    """The washout design's second random order (independent of the unaided one, stable as cases are added)."""
    return sorted(queue, key=lambda case: token_digest(f"{reviewer_id}/aided/{case}"))


def _aided_openings(store: Store, reviewer_id: str, days: float) -> dict[str, datetime]:
    """case -> when its aided reading opens: ``days`` after the reviewer's first unaided verdict on it."""
    rows = store.query("SELECT case_id, min(created_at) AS at FROM verdicts WHERE reviewer_id = ? AND "
                       "phase = 'unaided' GROUP BY case_id", [reviewer_id])
    return {r["case_id"]: datetime.strptime(r["at"], STAMP).replace(tzinfo=timezone.utc) + timedelta(days=days)
            for r in rows}


def aided_opens_at(store: Store, session: ReviewSession, now: datetime | None = None) -> datetime | None:
    """Under a washout, when the reviewer's next aided reading opens (None: open now, or nothing left)."""
    days = washout_days(store)
    if days <= 0:
        return None
    rid, now = session.reviewer_id, now or datetime.now(timezone.utc)
    aided = {r["case_id"] for r in store.query("SELECT case_id FROM verdicts WHERE reviewer_id = ? AND "
                                               "phase = 'aided'", [rid])}
    waiting = [at for case, at in _aided_openings(store, rid, days).items() if case not in aided and at > now]
    return min(waiting) if waiting else None


def progress_text(store: Store, session: ReviewSession, item: ReviewItem | None) -> str:
    """One line of progress for the screen."""
    if item is None:
        total = len(store.queue(session.reviewer_id))
        if not total and session.role == "admin" and not store.is_reader(session.reviewer_id):
            return ("You are signed in as a study admin without a reading queue, so you are not one of the "
                    "readers. To read cases too, give yourself a queue: python -m clinical add-reviewer "
                    f"--db … --id {session.reviewer_id} --reads --credential-stdin.")
        opens = aided_opens_at(store, session)
        if opens is not None:
            return (f"All {total} case(s) read unaided. Your aided reading opens on {opens:%Y-%m-%d %H:%M} UTC "
                    f"(a washout of {washout_days(store):g} day(s) after your unaided verdicts); sign in again then.")
        return f"All {total} case(s) read in both phases. Thank you, {session.display_name}."
    step = {"unaided": "1 of 2: your own verdict, before the model",
            "reveal": "1 of 2 saved: correct it if needed, then show the model output",
            "aided": "2 of 2: the model output is shown; record your verdict again"}[item.step]
    return (f"Case {item.position} of {item.total} (ref {item.case_ref}) · {item.completed} case(s) complete · "
            f"step {step}")


def unaided_text(item: ReviewItem | None) -> str:
    """The reviewer's own unaided verdict for the case on screen, in one line."""
    if item is None or item.unaided is None:
        return ""
    v = item.unaided
    corrected = " (corrected)" if v["supersedes"] is not None else ""
    return f"**Your unaided verdict{corrected}:** {v['label']}, confidence {v['confidence']}."


def _check_choice(label: str | None, confidence: int | None) -> None:
    if not label and confidence is None:
        raise ClinicalError(MISSING_BOTH)
    if not label:
        raise ClinicalError(MISSING_LABEL)
    if confidence is None:
        raise ClinicalError(MISSING_CONFIDENCE)


def _current_or_stale(store: Store, session: ReviewSession, expected: Any) -> ReviewItem:
    item = next_item(store, session)
    if item is None or expected is None or [item.case_id, item.step] != list(expected):
        raise ClinicalError("This case was already saved or is no longer the current one; "
                            "the screen is now up to date.")
    return item


def record_verdict(store: Store, session: ReviewSession, expected: Any, label: str | None,
                   confidence: int | None, lead_time_s: float | None, comment: str | None,
                   detector: Any = None) -> str:
    """Store the verdict for the step on screen (at step ``reveal``: a correction of the unaided verdict);
    returns the on-screen confirmation.

    ``expected`` is the [case_id, step] that was displayed; if it is no longer the current step (a double
    click, a second browser tab) nothing is written.

    Raises:
        ClinicalError: no verdict or confidence chosen, stale screen, or a rule of the schema refused it.
    """
    item = _current_or_stale(store, session, expected)
    _check_choice(label, confidence)
    version = _model_version(detector)  # recorded in both phases (in the unaided one it was not shown yet)
    if item.step == "reveal":
        _, ref = correct_verdict(store, session, _ref_of(store, item.unaided["id"]), label, int(confidence),
                                 comment, lead_time_s, version)
        return (f"Corrected your unaided verdict for case {item.position} of {item.total} (ref {item.case_ref}): "
                f"now {label}, confidence {int(confidence)} (correction {ref}).")
    verdict_id = store.add_verdict(session, item.case_id, item.phase, label, int(confidence), lead_time_s,
                                   model_version=version, comment=comment)
    return (f"Saved {item.phase} verdict {_ref_of(store, verdict_id)} for case {item.position} of {item.total} "
            f"(ref {item.case_ref}): {label}, confidence {int(confidence)}.")


def reveal(store: Store, session: ReviewSession, expected: Any) -> str:
    """The reviewer asks for the model output: record it (the unaided verdict is frozen from now on)."""
    item = _current_or_stale(store, session, expected)
    if item.step != "reveal":
        raise ClinicalError("Save your own verdict first; the model output comes after it.")
    store.mark_model_shown(session, item.case_id)
    return f"Model output shown for case {item.position} of {item.total} (ref {item.case_ref})."


def _ref_of(store: Store, verdict_id: int) -> str:
    return store.query("SELECT ref FROM verdict_refs WHERE verdict_id = ?", [verdict_id])[0]["ref"]


def correct(store: Store, session: ReviewSession, verdict_ref: str | None, label: str | None,
            confidence: int | None, comment: str | None, detector: Any = None) -> str:
    """A correction from the "My verdicts" panel; returns the confirmation.

    Raises:
        ClinicalError: nothing chosen, not the reviewer's verdict, or a rule refused it.
    """
    if not verdict_ref:
        raise ClinicalError("Choose which of your verdicts to correct.")
    _check_choice(label, confidence)
    _, ref = correct_verdict(store, session, verdict_ref, label, int(confidence), comment, None,
                             _model_version(detector))
    return f"Saved correction {ref} of verdict {verdict_ref}: {label}, confidence {int(confidence)}."


def my_verdicts(store: Store, session: ReviewSession) -> list[list[Any]]:
    """The signed-in reviewer's own verdicts, corrections and what they replaced included (the audit
    trail), with opaque references only: no file names, labels, image hashes or global ids."""
    return [[v["ref"], v["case_ref"] or "", v["phase"], v["label"], v["confidence"], v["created_at"],
             v["supersedes_ref"] or "", "corrected" if v["superseded_by"] else "current"]
            for v in store.verdicts_of(session)]


MY_VERDICT_HEADERS = ["verdict", "case ref", "phase", "label", "confidence", "saved (UTC)", "corrects", "status"]


def correctable(store: Store, session: ReviewSession) -> list[tuple[str, str]]:
    """(choice text, verdict reference) of the reviewer's verdicts that can still be corrected: current
    aided verdicts, and current unaided ones whose model output has not been shown."""
    rows = store.verdicts_of(session)
    frozen = store.model_shown(session.reviewer_id) | {v["case_id"] for v in rows if v["phase"] == "aided"}
    return [(f"{v['ref']} · case {v['case_ref']} · {v['phase']}: {v['label']}, confidence {v['confidence']}", v["ref"])
            for v in reversed(rows) if not v["superseded_by"] and (v["phase"] == "aided" or v["case_id"] not in frozen)]


@dataclass(frozen=True)
class AidView:
    """What the aided step shows, rendered by the demo's own code: the four panels (original, masked,
    inpainted, score map over the original), the verdict card, the score bar and the colour bar."""

    original: np.ndarray
    masked: np.ndarray | None
    inpainted: np.ndarray | None
    score_map: np.ndarray | None
    verdict_html: str
    score_bar_html: str
    colour_bar_html: str
    model: str | None


def render_aid(detector: Any, png: bytes) -> AidView:
    """Run the model on one case and render its output exactly as the demo's Analyse tab does."""
    from demo import handlers, views

    analysis = detector.analyze(png)
    outcome = handlers.Outcome(analysis=analysis, message="")
    original, masked, inpainted, score_map = handlers.panels(outcome, handlers.default_scale_label(analysis.scales))
    measure = detector.config.measure
    calibration = list(detector.card.get("threshold", {}).get("val_scores") or [])
    colour_bar = views.colour_bar_html(measure.heatmap_max, measure.reference != "none", measure.map)
    return AidView(original, masked, inpainted, score_map, handlers.verdict_card(outcome),
                   handlers.score_bar(outcome, calibration), colour_bar, _model_version(detector))


class AidCache:
    """The model output per case, computed once per (case, model run) and kept for the next screens
    (an error, a correction, a reload or a second tab never re-runs the model). Least recently used
    entries beyond ``size`` are dropped."""

    def __init__(self, detector: Any, size: int = 32) -> None:
        self.detector = detector
        self.size = size
        card = getattr(detector, "card", {}) or {}
        self.run_key = (card.get("weights_sha256"), _model_version(detector), getattr(detector, "threshold", None))
        self._views: OrderedDict[tuple, AidView] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, case_id: str) -> AidView:
        """The cached view of ``case_id``, rendering it (once) when missing."""
        key = (case_id, self.run_key)
        with self._lock:  # one analysis at a time; a second request for the same case waits for the first
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
            view = render_aid(self.detector, store.case_png(case_id))
            self._views[key] = view
            while len(self._views) > self.size:
                self._views.popitem(last=False)
            return view
