"""Layout of the tabs and the wiring of their events. Handlers live in handlers.py / batch.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import gradio as gr

from mim_core import Analyser, Screening

from . import batch, handlers, views
from .measurements import measurements_html, readings
from .model_card import card_markdown

MODEL_QUEUE = "mim-model"  # every event that runs the model shares one concurrency limit
STATE_TTL_S = 900  # an idle session's analysis is dropped after this long


@dataclass(frozen=True)
class DemoContext:
    """What tab builders get: the loaded model and the demo's settings (no user data)."""

    detector: Analyser
    upload_root: str  # Gradio's upload/cache folder: uploads inside it are deleted after use
    examples: list[str] = field(default_factory=list)
    keep: frozenset[str] = frozenset()  # sha256 of the example photos, never deleted
    concurrency: int = 1
    attribution: str = ""  # Markdown crediting the example photos
    choices: Mapping[str, Analyser] = field(default_factory=dict)  # label -> who may give the verdict; one holds detector

    @property
    def choice(self) -> str | None:
        """The label of the default verdict model (``detector``) among ``choices``."""
        return next((label for label, a in self.choices.items() if a is self.detector), None)

    def analyser(self, label: str | None) -> Analyser:
        """The analyser behind a label (unknown labels fall back to the default: the handlers refuse them first)."""
        return self.choices.get(label, self.detector) if label else self.detector

    @property
    def verdict_card(self) -> dict[str, Any] | None:
        """The card of the model giving the verdict when it is not MIM."""
        return self.detector.verdict_card if isinstance(self.detector, Screening) else None


def _panel(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, elem_id=elem_id, elem_classes=["mim-panel"], interactive=False, type="numpy",
                    format="png", height=280, min_width=150, buttons=["fullscreen"])


def _verdict_card(outcome: handlers.Outcome) -> str:
    """The verdict, its reason and the next step; the measurements have their own section here."""
    a = outcome.analysis
    return views.verdict_html(a.verdict, a.reason) if a is not None else handlers.verdict_card(outcome)


def _checks(ctx: DemoContext, outcome: handlers.Outcome) -> str:
    a, appearance = outcome.analysis, ctx.detector.appearance
    if a is None:
        return ""
    return measurements_html(readings(
        a.quality, ctx.detector.gate, a.patch_distance,
        None if appearance is None else appearance.no_rash_threshold,
        None if appearance is None else appearance.skin_limit))


def analyse_tab(ctx: DemoContext) -> None:
    """Phone first: the photo, then at once the verdict and its next step, then the four panels, the
    checks in words, and the raw numbers in a closed section. On a desktop the verdict sits beside the photo."""
    scales = ctx.detector.scales
    with gr.Tab("Analyse", id="analyse"):
        state = gr.State(None, time_to_live=STATE_TTL_S)
        with gr.Row(elem_id="mim-top"):
            with gr.Column(scale=2, min_width=300):
                photo = gr.Image(label="Photo of the skin", sources=["upload", "webcam", "clipboard"],
                                 type="filepath", height=300, elem_id="mim-photo")
            with gr.Column(scale=3, min_width=300):
                card = gr.HTML(views.placeholder_html(handlers.EMPTY_MESSAGE), elem_id="mim-verdict-card")
                bar = gr.HTML("", elem_id="mim-score-bar")
                if ctx.examples:
                    gr.Examples(examples=[[p] for p in ctx.examples], inputs=[photo], label="Example photos",
                                example_labels=[Path(p).stem.replace("_", " ") for p in ctx.examples])
                choice = gr.Radio(list(ctx.choices), value=ctx.choice, label="Who gives the verdict",
                                  info="The default recognised mpox best on photo sources it never saw (Model tab). "
                                       "The probe, nearest photo and PatchCore read ImageNet features; MIM's "
                                       "pictures below stay whichever you choose.",
                                  visible=len(ctx.choices) > 1, elem_id="mim-verdict-model")
        gr.HTML(views.legend_html(), elem_id="mim-legend")
        with gr.Row(equal_height=True, elem_id="mim-panels"):
            original = _panel("Original", "mim-original")
            masked = _panel("Masked", "mim-masked")
            inpainted = _panel("Inpainted", "mim-inpainted")
            heatmap = _panel("Score map", "mim-heatmap")
        measure = ctx.detector.config.measure
        gr.HTML(views.colour_bar_html(measure.heatmap_max, measure.reference != "none", measure.map),
                elem_id="mim-colour-bar")
        # the masked and inpainted panels show one scale; with a single analysed scale there is no choice
        scale = gr.Radio(handlers.scale_labels(scales), value=handlers.default_scale_label(scales),
                         label="Mask scale shown in Masked and Inpainted", visible=len(scales) > 1,
                         elem_id="mim-scale")
        checks = gr.HTML("", elem_id="mim-checks")
        gr.Markdown("**Original**: the centre crop the model analyses. **Masked**: one of its masks (grey = "
                    "hidden). **Inpainted**: every hidden patch filled in by the model. **Score map**: each "
                    "pixel's share of the score over the original; a blue region is what made the photo less "
                    "mpox-like, an orange one what made it more.", elem_classes=["mim-caption"])
        with gr.Accordion("Details: the raw numbers", open=False, elem_id="mim-details"):
            with gr.Row():
                score = gr.Number(label="Score", interactive=False, min_width=100)
                threshold = gr.Number(label="Threshold", value=ctx.detector.threshold, interactive=False,
                                      min_width=100)
                verdict = gr.Textbox(label="Verdict", interactive=False, min_width=140)
            reason = gr.Textbox(label="Reason", interactive=False)
            evidence = gr.JSON(label="Measurements (photo quality; the appearance checks' patch distance)")
        slider = gr.ImageSlider(label="Original vs inpainted", type="numpy", format="png",
                                max_height=420, elem_id="mim-slider")
        if ctx.attribution:
            with gr.Accordion("Example photo credits", open=False):
                gr.Markdown(ctx.attribution)

        def analyze(upload: Any, scale_label: str | None, label: str | None,
                    previous: handlers.Outcome | None) -> tuple[Any, ...]:
            return handlers.analyze_outputs(ctx.detector, upload, scale_label, ctx.upload_root, ctx.keep, previous,
                                            ctx.choices, label)

        def reanalyze(outcome: handlers.Outcome | None, scale_label: str | None, label: str | None) -> tuple[Any, ...]:
            return handlers.reanalyze_outputs(ctx.detector, outcome, scale_label, ctx.choices, label)

        def extras(outcome: handlers.Outcome | None, scale_label: str | None,
                   label: str | None) -> tuple[str, str, str, Any]:
            outcome, analyser = outcome or handlers.Outcome(), ctx.analyser(label)
            return (_verdict_card(outcome), handlers.score_bar(outcome, analyser.calibration, analyser.score_direction),
                    _checks(ctx, outcome), handlers.slider(outcome, scale_label))

        def empty_photo(outcome: handlers.Outcome | None) -> Any:
            """A file that is no photo leaves the box empty instead of a broken image (the change event this
            fires keeps the answer: handlers.photo_value)."""
            value = handlers.photo_value(outcome or handlers.Outcome())
            return gr.skip() if value is handlers.KEEP_PHOTO else value

        def rescale(outcome: handlers.Outcome | None, scale_label: str | None) -> tuple[Any, ...]:
            outcome = outcome or handlers.Outcome()
            return (*handlers.panels(outcome, scale_label)[1:], handlers.slider(outcome, scale_label))

        # preprocess=False: the raw upload reaches our decoder, which answers every bad file in words
        # (Gradio's own image preprocessing would fail on them with a generic error).
        outputs = [original, masked, inpainted, heatmap, score, threshold, verdict, reason, evidence, state]
        photo.change(
            analyze, [photo, scale, choice, state], outputs,
            api_name="analyze", preprocess=False, concurrency_id=MODEL_QUEUE, concurrency_limit=ctx.concurrency,
            api_description="Analyse one photo: original, masked and inpainted images at the chosen mask scale, the "
                            "score map (mean over scales) over the original, then score, threshold, verdict, "
                            "reason and the measurements (refused, photo quality values, patch distance), with the "
                            "verdict of the chosen model (default: the page's). A photo refused by the quality gate "
                            "has no score (null) and no model panels.",
        ).then(extras, [state, scale, choice], [card, bar, checks, slider], api_visibility="private",
               concurrency_limit=None, show_progress="hidden").then(empty_photo, [state], [photo], api_visibility="private",
                                                                    concurrency_limit=None, show_progress="hidden")
        choice.change(reanalyze, [state, scale, choice], outputs, api_visibility="private", concurrency_id=MODEL_QUEUE,
                      concurrency_limit=ctx.concurrency).then(
            extras, [state, scale, choice], [card, bar, checks, slider], api_visibility="private",
            concurrency_limit=None, show_progress="hidden")
        scale.change(rescale, [state, scale], [masked, inpainted, heatmap, slider], api_visibility="private",
                     concurrency_limit=None, show_progress="hidden")


def batch_tab(ctx: DemoContext) -> None:
    with gr.Tab("Batch", id="batch"):
        gr.Markdown(f"Analyse up to {batch.MAX_BATCH_PHOTOS} photos at once: choose image files and/or `.zip` "
                    "archives of photos. Each file is deleted from the server once the batch is done.")
        files = gr.File(label="Photos or .zip archives", file_count="multiple", type="filepath",
                        elem_id="mim-batch-files")
        choice = gr.Radio(list(ctx.choices), value=ctx.choice, label="Who gives the verdict",
                          visible=len(ctx.choices) > 1, elem_id="mim-batch-verdict-model")
        run = gr.Button("Analyse all", variant="primary", elem_id="mim-batch-run")
        summary = gr.Markdown(label="Summary", elem_id="mim-batch-summary")
        results = gr.Dataframe(headers=batch.COLUMNS, datatype=batch.DATATYPES, interactive=False, wrap=True,
                               label="Results", elem_id="mim-batch-table", column_widths=batch.COLUMN_WIDTHS)
        download = gr.File(label="Results as CSV", interactive=False, elem_id="mim-batch-csv")

        def analyse_all(uploads: list[str] | None, label: str | None,
                        progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            try:
                analyser = handlers.choose(ctx.choices, label, ctx.detector)
            except handlers.ChoiceError as err:  # nothing analysed, and the uploads still go
                batch.discard_uploads(uploads or [], ctx.upload_root, ctx.keep)
                return str(err), batch.table([]), None
            model = label or ctx.choice or ""
            rows, skipped = batch.analyse_batch(analyser, uploads or [], ctx.upload_root, ctx.keep,
                                                progress=lambda f, desc: progress(f, desc=desc))
            csv_path = None
            if rows:  # written straight into Gradio's cache, which serves it and ages it out
                folder = Path(ctx.upload_root) / f"mim-batch-{uuid.uuid4().hex}"
                csv_path = str(batch.write_csv(rows, analyser.threshold, folder / batch.CSV_NAME, model))
            return batch.summary(rows, skipped, model), batch.table(rows), csv_path

        run.click(analyse_all, [files, choice], [summary, results, download], api_name="analyze_batch",
                  concurrency_id=MODEL_QUEUE, concurrency_limit=ctx.concurrency,
                  api_description="Analyse several photos (files or .zip): summary, results table and CSV file.",
                  ).then(lambda: None, None, files, api_visibility="private", concurrency_limit=None,
                         show_progress="hidden")  # the uploads are gone from the server: clear the list


def model_tab(ctx: DemoContext) -> None:
    card = ctx.detector.card
    with gr.Tab("Model", id="model"):
        # the model's warning, if any, is already in the banner above the tabs
        gr.Markdown(card_markdown(card, ctx.detector.gate, ctx.detector.scales, warning=False,
                                  verdict_card=ctx.verdict_card),
                    elem_id="mim-model-card")
        with gr.Accordion("The card file as shipped (JSON)", open=False):
            gr.JSON(card)


def model_card_api(ctx: DemoContext) -> None:
    """An API-only endpoint, ``model_card``, returning the card of the loaded weights."""
    card = ctx.detector.card if ctx.verdict_card is None else {**ctx.detector.card, "verdict_model": ctx.verdict_card}

    def model_card() -> dict:
        """The model card of the loaded weights (MIM's; under ``verdict_model`` the card of the model giving the
        verdict, when it is not MIM)."""
        return card

    gr.api(model_card, api_name="model_card")
