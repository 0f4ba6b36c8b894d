"""The Review tab (Gradio): sign in, unaided verdict, MIM panels revealed, aided verdict, resume.

Mount it inside any ``gr.Blocks``::

    with gr.Blocks() as app:
        with gr.Tabs():
            ...                      # the demo's own tabs
            build_review_tab("clinical.sqlite", detector)

Handlers only translate between widgets and :mod:`clinical.review`; each call opens its own database
connection. The session token lives in ``gr.State`` (server side), so every read and write is scoped
to the signed-in reviewer; values a client sends for a ``gr.State`` are ignored by Gradio. Admin-only
actions (creating reviewers, exporting the report) check the role on the server, not just hide the
widgets. API names are prefixed ``review_`` so they cannot clash with the demo's.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder
from PIL import Image

from .review import MY_VERDICT_HEADERS, mim_panels, my_verdicts, next_item, progress_text, record_verdict
from .schema import LABELS, ROLES
from .store import ClinicalError, Store

NOT_SIGNED_IN = "Please sign in first."
REPORT_FILES = ("report.html", "metrics.json", "verdicts.csv", "predictions.csv")
log = logging.getLogger(__name__)


class ReviewHandlers:
    """The tab's event handlers, UI-agnostic enough to be called directly in tests."""

    def __init__(self, db_path: str | Path, detector: Any, report_root: str | Path | None = None,
                 report_boot: int = 2000) -> None:
        self.store = Store(db_path)
        self.detector = detector
        self.report_root = Path(report_root or get_upload_folder())
        self.report_boot = report_boot

    # Every screen refresh returns the same tuple; see ``build_review_tab`` for the matching outputs.
    def screen(self, token: str | None, message: str) -> tuple:
        """(token, current, shown_at, status, signin_box, work_box, progress, photo, mim_box, mim_text,
        mim_gallery, label, confidence, comment, save_button, admin_box)"""
        session = self.store.session(token)
        if session is None:
            return (None, None, None, message or NOT_SIGNED_IN, gr.update(visible=True), gr.update(visible=False),
                    "", None, gr.update(visible=False), "", [], None, 3, "", gr.update(value="Save verdict"),
                    gr.update(visible=False))
        item = next_item(self.store, session)
        admin = gr.update(visible=session.role == "admin")
        header = f"Signed in as **{session.display_name}** ({session.reviewer_id})."
        status = f"{message}\n\n{header}" if message else header
        if item is None:
            return (token, None, None, status, gr.update(visible=False), gr.update(visible=True),
                    progress_text(self.store, session, None), None, gr.update(visible=False), "", [], None, 3, "",
                    gr.update(value="Nothing left to read", interactive=False), admin)
        photo = Image.open(io.BytesIO(self.store.case_png(item.case_id)))
        aided = item.phase == "aided"
        text, panels = mim_panels(self.store, self.detector, item.case_id) if aided else ("", [])
        button = "Save aided verdict (with the model)" if aided else "Save unaided verdict"
        return (token, [item.case_id, item.phase], time.time(), status, gr.update(visible=False),
                gr.update(visible=True), progress_text(self.store, session, item), photo, gr.update(visible=aided),
                text, panels, None, 3, "", gr.update(value=button, interactive=True), admin)

    def sign_in(self, reviewer_id: str, credential: str) -> tuple:
        try:
            result = self.store.sign_in(reviewer_id or "", credential or "")
        except ClinicalError as err:  # rate limited
            return self.screen(None, f"Sign-in refused: {err}")
        if result is None:
            return self.screen(None, "Sign-in failed: unknown reviewer or wrong credential.")
        token, session = result
        return self.screen(token, f"Welcome, {session.display_name}. Your queue resumes where you left it.")

    def save(self, token: str | None, current: list | None, shown_at: float | None, label: str | None,
             confidence: float, comment: str) -> tuple:
        session = self.store.session(token)
        if session is None:
            return self.screen(None, NOT_SIGNED_IN)
        lead = None if shown_at is None else max(0.0, time.time() - float(shown_at))
        try:
            message = record_verdict(self.store, session, current, label or "", int(confidence), lead, comment,
                                     self.detector)
        except ClinicalError as err:
            message = f"Not saved: {err}"
        return self.screen(token, message)

    def sign_out(self, token: str | None) -> tuple:
        self.store.end_session(token)
        return self.screen(None, "Signed out. Your verdicts are saved; sign in again to resume.")

    def mine(self, token: str | None) -> pd.DataFrame:
        session = self.store.session(token)
        return pd.DataFrame(my_verdicts(self.store, session) if session else [], columns=MY_VERDICT_HEADERS)

    def create_reviewer(self, token: str | None, reviewer_id: str, name: str, role: str, credential: str) -> str:
        session = self.store.session(token)
        if session is None or session.role != "admin":
            return "Only an admin can create reviewers."
        try:
            self.store.create_reviewer(reviewer_id or "", name or None, role or "reviewer", credential or "")
        except ClinicalError as err:
            return f"Not created: {err}"
        return f"Created {role} '{reviewer_id.strip()}'. Give them their credential in person."

    def report(self, token: str | None) -> tuple[str, list[str] | None]:
        """Admin only: write the validation report (all reviewers' verdicts) and return its files."""
        session = self.store.session(token)
        if session is None or session.role != "admin":
            return "Only an admin can export the validation report.", None
        from .report import write_report

        folder = Path(self.report_root) / f"mim-report-{uuid.uuid4().hex}"  # Gradio's cache: served, aged out
        try:
            write_report(self.store, folder, n_boot=self.report_boot)
        except (ClinicalError, ValueError) as err:
            log.exception("report failed")
            return f"The report could not be written: {err}", None
        return (f"Report written for {session.display_name}: report.html, metrics.json, verdicts.csv, "
                "predictions.csv.", [str(folder / name) for name in REPORT_FILES])


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
    with gr.Tab(label):
        token, current, shown_at = gr.State(None), gr.State(None), gr.State(None)
        gr.Markdown("Reading study: for each case give your own verdict first; the model's output is then "
                    "shown and you give your verdict again. You see only your own verdicts.")
        status = gr.Markdown(NOT_SIGNED_IN)
        with gr.Column(visible=True) as signin_box:
            reviewer_id = gr.Textbox(label="Reviewer id")
            credential = gr.Textbox(label="Credential", type="password")
            sign_in = gr.Button("Sign in", variant="primary")
        with gr.Column(visible=False) as work_box:
            progress = gr.Markdown()
            photo = gr.Image(label="Case photo", type="pil", format="png", interactive=False, buttons=["fullscreen"])
            with gr.Column(visible=False) as mim_box:
                mim_text = gr.Markdown()
                mim_gallery = gr.Gallery(label="MIM: masked, inpainted, heatmap", columns=4, format="png",
                                         buttons=["fullscreen"])
            verdict = gr.Radio(list(LABELS), label="Your verdict")
            confidence = gr.Slider(1, 5, value=3, step=1, label="Confidence (1 = guess, 5 = certain)")
            comment = gr.Textbox(label="Comment (optional)")
            save = gr.Button("Save verdict", variant="primary")
            with gr.Accordion("My verdicts", open=False):
                mine = gr.Button("Show my verdicts")
                table = gr.Dataframe(headers=MY_VERDICT_HEADERS, interactive=False)
            sign_out = gr.Button("Sign out")
        with gr.Accordion("Admin: create a reviewer", open=False, visible=False) as admin_box:
            new_id = gr.Textbox(label="Reviewer id")
            new_name = gr.Textbox(label="Display name")
            new_role = gr.Radio(list(ROLES), value="reviewer", label="Role")
            new_credential = gr.Textbox(label="Credential (8+ characters)", type="password")
            create = gr.Button("Create reviewer")
            admin_status = gr.Markdown()
            export = gr.Button("Export the validation report (all reviewers)")
            report_status = gr.Markdown()
            report_files = gr.File(label="Report files", file_count="multiple", interactive=False)
        screen = [token, current, shown_at, status, signin_box, work_box, progress, photo, mim_box, mim_text,
                  mim_gallery, verdict, confidence, comment, save, admin_box]
        sign_in.click(handlers.sign_in, [reviewer_id, credential], screen, api_name="review_sign_in")
        save.click(handlers.save, [token, current, shown_at, verdict, confidence, comment], screen,
                   api_name="review_save")
        sign_out.click(handlers.sign_out, [token], screen, api_name="review_sign_out")
        mine.click(handlers.mine, [token], [table], api_name="review_my_verdicts")
        create.click(handlers.create_reviewer, [token, new_id, new_name, new_role, new_credential], [admin_status],
                     api_name="review_create_reviewer")
        export.click(handlers.report, [token], [report_status, report_files], api_name="review_report")
    return handlers
