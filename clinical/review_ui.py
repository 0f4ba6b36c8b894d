"""The Review tab (Gradio): sign in, unaided verdict, (correct it,) model output revealed, aided verdict.

Mount it inside any ``gr.Blocks``::

    with gr.Blocks() as app:
        with gr.Tabs():
            ...                      # the demo's own tabs
            build_review_tab("clinical.sqlite", detector)

Handlers translate between widgets and :mod:`clinical.review`; each call opens its own database
connection. The session token lives in ``gr.State`` (server side), so every read and write is scoped to
the signed-in reviewer; values a client sends for a ``gr.State`` are ignored by Gradio. Admin-only
actions (creating reviewers, study progress, the report) check the role on the server, not just hide the
widgets. A refused save changes only the status line: the form, its choices and the reading-time timer
stay as they were. The model runs once per case (:class:`clinical.review.AidCache`). The report is never
written where Gradio serves files: it is built in a private temporary folder and sent to the signed-in
admin inside the event's answer, as download links carrying the files' bytes. API names are prefixed
``review_`` so they cannot clash with the demo's.
"""

from __future__ import annotations

import base64
import io
import logging
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from . import review
from .review import MY_VERDICT_HEADERS, AidCache, next_item, progress_text
from .review_assets import CONFIDENCE_CHOICES, KEYS_JS, PANEL_LINES, SHORTCUTS, VERDICT_CARD_CSS
from .schema import LABELS, ROLES
from .status import HEADERS as STATUS_HEADERS
from .status import reader_progress, summary_lines, table_rows
from .store import ClinicalError, Store

NOT_SIGNED_IN = "Please sign in first."
ADMIN_ONLY = "Only an admin can do this."
REPORT_FILES = ("report.html", "metrics.json", "verdicts.csv", "predictions.csv", "cases.csv")
REPORT_TYPES = {".html": "text/html", ".json": "application/json", ".csv": "text/csv"}
log = logging.getLogger(__name__)

# What every screen refresh returns, in this order (see ``build_review_tab`` for the components).
SCREEN = ("token", "current", "shown_at", "status", "signin_box", "work_box", "progress", "photo", "reveal_box",
          "aid_box", "unaided", "verdict_card", "score_bar", "original", "masked", "inpainted", "score_map",
          "colour_bar", "label", "confidence", "comment", "save", "credential", "admin_box")
# The same outputs as an API client receives them (states, buttons and layout blocks are not sent).
API_SCREEN = tuple(n for n in SCREEN if n not in {"token", "current", "shown_at", "signin_box", "work_box",
                                                  "reveal_box", "aid_box", "save", "admin_box"})


def _screen(**values: Any) -> tuple:
    return tuple(values[name] for name in SCREEN)


def _skip_except_status(status: str) -> tuple:
    """A refused action: only the status line changes (form, choices, timer and panels are kept)."""
    return tuple(status if name == "status" else gr.skip() for name in SCREEN)


def _download_links(folder: Path) -> str:
    """The report files as download links whose ``data:`` URLs carry the bytes (no file is served)."""
    links = []
    for name in REPORT_FILES:
        data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
        mime = REPORT_TYPES[Path(name).suffix]
        links.append(f'<a class="review-download" download="{name}" href="data:{mime};base64,{data}">{name}</a>')
    return '<div class="review-downloads">' + " · ".join(links) + "</div>"


class ReviewHandlers:
    """The tab's event handlers, UI-agnostic enough to be called directly in tests."""

    def __init__(self, db_path: str | Path, detector: Any, report_boot: int = 2000) -> None:
        self.store = Store(db_path)
        self.detector = detector
        self.aids = AidCache(detector)
        self.report_boot = report_boot

    def screen(self, token: str | None, message: str) -> tuple:
        """The whole screen for the session's current step (see :data:`SCREEN`)."""
        hidden, empty = gr.update(visible=False), dict(original=None, masked=None, inpainted=None, score_map=None,
                                                      verdict_card="", score_bar="", colour_bar="", unaided="")
        session = self.store.session(token)
        if session is None:
            return _screen(token=None, current=None, shown_at=None, status=message or NOT_SIGNED_IN,
                           signin_box=gr.update(visible=True), work_box=hidden, progress="", photo=None,
                           reveal_box=hidden, aid_box=hidden, label=None, confidence=None, comment="",
                           save=gr.update(value="Save verdict"), credential="", admin_box=hidden, **empty)
        item = next_item(self.store, session)
        header = f"Signed in as **{session.display_name}** ({session.reviewer_id})."
        common = dict(token=token, status=f"{message}\n\n{header}" if message else header,
                      signin_box=gr.update(visible=False), work_box=gr.update(visible=True),
                      progress=progress_text(self.store, session, item), credential="",
                      admin_box=gr.update(visible=session.role == "admin"))
        if item is None:
            return _screen(current=None, shown_at=None, photo=None, reveal_box=hidden, aid_box=hidden, label=None,
                           confidence=None, comment="", save=gr.update(value="Nothing left to read",
                                                                       interactive=False), **common, **empty)
        photo = Image.open(io.BytesIO(self.store.case_png(item.case_id)))
        values = dict(empty, unaided=review.unaided_text(item))
        if item.step == "aided":
            self.store.mark_model_shown(session, item.case_id)  # recorded before the output leaves (washout too)
            aid = self.aids.get(self.store, item.case_id)
            values.update(original=aid.original, masked=aid.masked, inpainted=aid.inpainted, score_map=aid.score_map,
                          verdict_card=aid.verdict_html, score_bar=aid.score_bar_html, colour_bar=aid.colour_bar_html)
        preset = item.unaided if item.step == "reveal" else None  # a correction starts from what is saved
        button = {"unaided": "Save unaided verdict", "reveal": "Save correction of my unaided verdict",
                  "aided": "Save aided verdict (with the model)"}[item.step]
        return _screen(current=[item.case_id, item.step], shown_at=time.time(), photo=photo,
                       reveal_box=gr.update(visible=item.step == "reveal"),
                       aid_box=gr.update(visible=item.step == "aided"),
                       label=preset["label"] if preset else None, confidence=preset["confidence"] if preset else None,
                       comment=(preset["comment"] or "") if preset else "",
                       save=gr.update(value=button, interactive=True,
                                      variant="secondary" if item.step == "reveal" else "primary"),
                       **common, **values)

    def sign_in(self, reviewer_id: str, credential: str) -> tuple:
        try:
            result = self.store.sign_in(reviewer_id or "", credential or "")
        except ClinicalError as err:  # rate limited
            return self.screen(None, f"Sign-in refused: {err}")
        if result is None:
            return self.screen(None, "Sign-in failed: unknown reviewer or wrong credential.")
        token, session = result
        welcome = "Your queue resumes where you left it." if self.store.is_reader(session.reviewer_id) else \
            "You are a study admin without a reading queue."
        return self.screen(token, f"Welcome, {session.display_name}. {welcome}")

    def save(self, token: str | None, current: list | None, shown_at: float | None, label: str | None,
             confidence: int | None, comment: str) -> tuple:
        session = self.store.session(token)
        if session is None:
            return self.screen(None, NOT_SIGNED_IN)
        lead = None if shown_at is None else max(0.0, time.time() - float(shown_at))
        try:
            message = review.record_verdict(self.store, session, current, label or None,
                                            None if confidence is None else int(confidence), lead, comment,
                                            self.detector)
        except ClinicalError as err:
            if "no longer the current one" in str(err):
                return self.screen(token, f"Not saved: {err}")
            return _skip_except_status(f"Not saved: {err}")
        return self.screen(token, message)

    def reveal(self, token: str | None, current: list | None) -> tuple:
        session = self.store.session(token)
        if session is None:
            return self.screen(None, NOT_SIGNED_IN)
        try:
            message = review.reveal(self.store, session, current)
        except ClinicalError as err:
            return self.screen(token, f"Not shown: {err}")
        return self.screen(token, message)

    def sign_out(self, token: str | None) -> tuple:
        self.store.end_session(token)
        return self.screen(None, "Signed out. Your verdicts are saved; sign in again to resume.")

    def mine(self, token: str | None) -> tuple[pd.DataFrame, Any]:
        """The reviewer's audit trail and the verdicts they can still correct."""
        session = self.store.session(token)
        rows = review.my_verdicts(self.store, session) if session else []
        choices = review.correctable(self.store, session) if session else []
        return pd.DataFrame(rows, columns=MY_VERDICT_HEADERS), gr.update(choices=choices, value=None)

    def correct(self, token: str | None, verdict_ref: str | None, label: str | None, confidence: int | None,
                comment: str) -> tuple:
        """(message, table, choices, label, confidence, comment) after a correction from "My verdicts"."""
        session = self.store.session(token)
        if session is None:
            return (NOT_SIGNED_IN, *self.mine(None), None, None, "")
        try:
            message = review.correct(self.store, session, verdict_ref, label or None,
                                     None if confidence is None else int(confidence), comment, self.detector)
        except ClinicalError as err:
            return (f"Not corrected: {err}", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
        return (message, *self.mine(token), None, None, "")

    def _admin(self, token: str | None):
        session = self.store.session(token)
        return session if session is not None and session.role == "admin" else None

    def create_reviewer(self, token: str | None, reviewer_id: str, name: str, role: str, credential: str) -> tuple:
        """(message, id, name, role, credential): the credential field is always cleared, every field on
        success; the message never contains the credential."""
        if self._admin(token) is None:
            return "Only an admin can create reviewers.", gr.skip(), gr.skip(), gr.skip(), ""
        try:
            self.store.create_reviewer(reviewer_id or "", name or None, role or "reviewer", credential or "")
        except ClinicalError as err:
            return f"Not created: {err}", gr.skip(), gr.skip(), gr.skip(), ""
        return (f"Created {role} '{reviewer_id.strip()}'. Give them their credential in person.", "", "", "reviewer",
                "")

    def study_progress(self, token: str | None) -> tuple[str, pd.DataFrame]:
        """Admin only: (one line per reader, for narrow screens; the table) of cases done per phase,
        corrections, median reading time and last activity."""
        if self._admin(token) is None:
            return "", pd.DataFrame([], columns=STATUS_HEADERS)
        progress = reader_progress(self.store)
        return summary_lines(progress), pd.DataFrame(table_rows(progress), columns=STATUS_HEADERS)

    def report(self, token: str | None) -> tuple[str, str]:
        """Admin only: (message, download links) of the validation report (all reviewers' verdicts)."""
        session = self._admin(token)
        if session is None:
            return "Only an admin can export the validation report.", ""
        from .report import write_report

        with tempfile.TemporaryDirectory(prefix="mim-report-") as folder:  # private, deleted at once
            try:
                write_report(self.store, Path(folder), n_boot=self.report_boot)
            except (ClinicalError, ValueError) as err:
                log.exception("report failed")
                return f"The report could not be written: {err}", ""
            links = _download_links(Path(folder))
        return (f"Report for {escape(session.display_name)}: download each file below (they are not stored "
                "on the server).", links)


def build_review_tab(db_path: str | Path, detector: Any, label: str = "Review") -> ReviewHandlers:
    """Create the Review tab inside the current ``gr.Blocks`` (or ``gr.Tabs``) context.

    Args:
        db_path: the clinical SQLite database (created and migrated when missing).
        detector: a loaded :class:`mim_core.detector.MIMDetector`, used for the aided-phase panels.
        label: the tab's title.
    Returns:
        The handlers, for tests and for apps that want to wire more events.
    """
    handlers = ReviewHandlers(db_path, detector)
    c: dict[str, Any] = {}
    with gr.Tab(label, id="review"):
        c["token"], c["current"], c["shown_at"] = gr.State(None), gr.State(None), gr.State(None)
        gr.Markdown("Reading study: for each case give your own verdict first; then ask for the model's output "
                    "and give your verdict again. You see only your own verdicts.")
        c["status"] = gr.Markdown(NOT_SIGNED_IN, elem_id="review-status")
        with gr.Column(visible=True) as c["signin_box"]:
            reviewer_id = gr.Textbox(label="Reviewer id", elem_id="review-id")
            c["credential"] = gr.Textbox(label="Credential", type="password", elem_id="review-credential")
            sign_in = gr.Button("Sign in", variant="primary", elem_id="review-sign-in")
        with gr.Column(visible=False, elem_id="review-admin") as c["admin_box"]:
            with gr.Accordion("Admin: study progress", open=True):
                refresh = gr.Button("Refresh study progress", elem_id="review-refresh")
                progress_lines = gr.Markdown(elem_id="review-study-summary")
                progress_table = gr.Dataframe(headers=STATUS_HEADERS, interactive=False, wrap=True,
                                              elem_id="review-study-progress")
            with gr.Accordion("Admin: create a reviewer", open=False):
                new_id = gr.Textbox(label="Reviewer id", elem_id="review-new-id")
                new_name = gr.Textbox(label="Display name", elem_id="review-new-name")
                new_role = gr.Radio(list(ROLES), value="reviewer", label="Role", elem_id="review-new-role")
                new_credential = gr.Textbox(label="Credential (8+ characters)", type="password",
                                            elem_id="review-new-credential")
                create = gr.Button("Create reviewer", elem_id="review-create")
                admin_status = gr.Markdown(elem_id="review-admin-status")
            with gr.Accordion("Admin: validation report", open=False):
                export = gr.Button("Export the validation report (all reviewers)", elem_id="review-export")
                report_status = gr.Markdown(elem_id="review-report-status")
                report_links = gr.HTML("", elem_id="review-report-files")
        with gr.Column(visible=False, elem_id="review-work") as c["work_box"]:
            c["progress"] = gr.Markdown(elem_id="review-progress")
            c["photo"] = gr.Image(label="Case photo", type="pil", format="png", interactive=False, height=420,
                                  buttons=["fullscreen"], elem_id="review-photo")
            with gr.Column(visible=False) as c["reveal_box"]:
                gr.Markdown("Your unaided verdict is saved. Change it below if you clicked the wrong one (possible "
                            "only until the model output is shown), then show the model output.")
                reveal = gr.Button("Show the model output (V)", variant="primary", elem_id="review-reveal")
            with gr.Column(visible=False, elem_id="review-aid") as c["aid_box"]:
                c["unaided"] = gr.Markdown(elem_id="review-unaided")
                c["verdict_card"] = gr.HTML("", css_template=VERDICT_CARD_CSS, elem_id="review-model-verdict")
                c["score_bar"] = gr.HTML("", elem_id="review-score-bar")
                with gr.Row(equal_height=True):
                    for name, title in (("original", "Original (model's view)"), ("masked", "Masked"),
                                        ("inpainted", "Inpainted"), ("score_map", "Score map")):
                        c[name] = gr.Image(label=title, type="numpy", format="png", interactive=False, height=300,
                                           min_width=280, buttons=["fullscreen"], elem_classes=["mim-panel"],
                                           elem_id=f"review-{name.replace('_', '-')}")
                c["colour_bar"] = gr.HTML("", elem_id="review-colour-bar")
                gr.Markdown(PANEL_LINES, elem_classes=["mim-caption"])
            with gr.Column(elem_id="review-form"):
                c["label"] = gr.Radio(list(LABELS), value=None, label="Your verdict", elem_id="review-verdict")
                c["confidence"] = gr.Radio(CONFIDENCE_CHOICES, value=None, label="Confidence (must be chosen)",
                                           elem_id="review-confidence")
                c["comment"] = gr.Textbox(label="Comment (optional)", elem_id="review-comment")
                c["save"] = gr.Button("Save verdict", variant="primary", elem_id="review-save")
                gr.HTML(SHORTCUTS, js_on_load=KEYS_JS, elem_id="review-keys")
            with gr.Accordion("My verdicts and corrections", open=False):
                mine = gr.Button("Show my verdicts", elem_id="review-mine")
                table = gr.Dataframe(headers=MY_VERDICT_HEADERS, interactive=False, wrap=True, elem_id="review-table")
                fix_ref = gr.Dropdown([], value=None, label="Verdict to correct", elem_id="review-fix-ref")
                fix_label = gr.Radio(list(LABELS), value=None, label="Corrected verdict", elem_id="review-fix-label")
                fix_confidence = gr.Radio(CONFIDENCE_CHOICES, value=None, label="Confidence",
                                          elem_id="review-fix-confidence")
                fix_comment = gr.Textbox(label="Comment (optional)", elem_id="review-fix-comment")
                fix = gr.Button("Save correction", elem_id="review-fix")
                fix_status = gr.Markdown(elem_id="review-fix-status")
            sign_out = gr.Button("Sign out", elem_id="review-sign-out")
        screen = [c[name] for name in SCREEN]
        sign_in.click(handlers.sign_in, [reviewer_id, c["credential"]], screen, api_name="review_sign_in").then(
            handlers.study_progress, [c["token"]], [progress_lines, progress_table], api_visibility="private")
        form = [c["token"], c["current"], c["shown_at"], c["label"], c["confidence"], c["comment"]]
        c["save"].click(handlers.save, form, screen, api_name="review_save")
        reveal.click(handlers.reveal, [c["token"], c["current"]], screen, api_name="review_reveal")
        sign_out.click(handlers.sign_out, [c["token"]], screen, api_name="review_sign_out")
        mine.click(handlers.mine, [c["token"]], [table, fix_ref], api_name="review_my_verdicts")
        fix.click(handlers.correct, [c["token"], fix_ref, fix_label, fix_confidence, fix_comment],
                  [fix_status, table, fix_ref, fix_label, fix_confidence, fix_comment], api_name="review_correct")
        create.click(handlers.create_reviewer, [c["token"], new_id, new_name, new_role, new_credential],
                     [admin_status, new_id, new_name, new_role, new_credential], api_name="review_create_reviewer",
                     ).then(handlers.study_progress, [c["token"]], [progress_lines, progress_table],
                            api_visibility="private")
        refresh.click(handlers.study_progress, [c["token"]], [progress_lines, progress_table],
                      api_name="review_study_progress")
        export.click(handlers.report, [c["token"]], [report_status, report_links], api_name="review_report")
    return handlers
