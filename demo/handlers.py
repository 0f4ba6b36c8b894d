"""Event handlers of the Analyse tab, as plain functions of the detector and the inputs.

No Gradio here: ``demo/ui.py`` wires these to components, and tests call them directly. Nothing is
kept between calls except what the caller passes back in (the session's ``Outcome``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from mim_core import Analyser, Analysis, ImageDecodeError, Verdict
from mim_core.config import PreprocessConfig
from mim_core.data import decode_inputs, preprocess
from mim_core.gate import effective_resolution
from mim_core.screening import analyze_view_set, mim_of, view_configs
from mim_core.verdict import MIM_SCORE_DIRECTION

from . import views
from .uploads import UploadError, discard_upload, read_upload, upload_path

log = logging.getLogger(__name__)

EMPTY_MESSAGE = "Add a photo (upload, webcam or paste) or pick an example: the analysis starts at once."
SEND_AGAIN = "Send the photo again to have it judged by this model."
INTERNAL_ERROR = "Something went wrong while analysing this photo; please try again or try another photo."

RGB = np.ndarray  # an (H, W, 3) uint8 image


@dataclass(frozen=True)
class Outcome:
    """What one Analyse request produced; the session keeps it so a new mask scale needs no re-run."""

    analysis: Analysis | None = None
    message: str = EMPTY_MESSAGE  # why there is no analysis (shown to the user)
    unreadable: bool = False  # the input never reached the model
    source: str | None = None  # the upload's server path (already deleted), to spot a repeated event
    clear_photo: bool = False  # the photo box still holds a file that is no photo: empty it (see photo_value)
    views: Mapping[PreprocessConfig, torch.Tensor] | None = None  # (3, H, W) each view the page's models read, to
    resolution: float | None = None  # analyse the photo again with another verdict model once the upload is deleted


class ScaleError(ValueError):
    """A mask scale the model does not analyse; ``str(err)`` is a sentence for the user naming those it does."""


class ChoiceError(ValueError):
    """A verdict model the page does not offer; ``str(err)`` is a sentence for the user naming those it does."""


def choose(choices: Mapping[str, Analyser], label: str | None, default: Analyser) -> Analyser:
    """The analyser behind a "who gives the verdict" label; None means ``default``.

    Raises:
        ChoiceError: a label that is not one of ``choices`` (never silently another model).
    """
    if label is None:
        return default
    if label not in choices:
        raise ChoiceError(f"No verdict model is called {label!r}; choose one of: {', '.join(choices)}.")
    return choices[label]


def scale_labels(scales: Sequence[int]) -> list[str]:
    return [f"{s} px cells" for s in scales]


def default_scale_label(scales: Sequence[int]) -> str:
    """The middle scale: lesions span a few of its cells at the model's 128 px."""
    return scale_labels(scales)[len(scales) // 2]


def scale_message(label: str, scales: Sequence[int]) -> str:
    """Why ``label`` cannot be shown, naming the scales this model analyses."""
    labels = scale_labels(scales)
    known = f"only {labels[0]}" if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"
    return f"This model analyses {known}, not '{label[:40]}'."


def scale_index(label: str | None, scales: Sequence[int]) -> int:
    """The index of a mask-scale label among ``scales``; None means the default (middle) scale.

    Raises:
        ScaleError: a label that is not one of :func:`scale_labels` (never silently another scale).
    """
    if label is None:
        return len(scales) // 2
    labels = scale_labels(scales)
    if label not in labels:
        raise ScaleError(scale_message(str(label), scales))
    return labels.index(label)


def analyze_stored(detector: Analyser, views: Mapping[PreprocessConfig, torch.Tensor],
                   resolution: float | None) -> Analysis:
    """One photo's stored (3, H, W) views (:attr:`Outcome.views`) analysed by ``detector``.

    Raises:
        KeyError: a view ``detector`` reads is not among ``views``.
    """
    return analyze_view_set(detector, {pre: view[None] for pre, view in views.items()}, [resolution])[0]


def analyze_upload(detector: Analyser, upload: Any, root: str, keep: frozenset[str] = frozenset(),
                   previous: Outcome | None = None, others: Sequence[Analyser] = ()) -> Outcome:
    """Read the uploaded photo, delete it from the server, analyse it. Never raises: every failure
    becomes an ``Outcome`` whose message says what to do.

    ``previous`` is the session's last outcome: the browser can fire a second change event for the
    same upload (it does when the file is not a displayable image), after the file was deleted;
    that repeat gets the same answer instead of "no longer on the server". Likewise the empty photo
    box that :func:`photo_value` asked for keeps the answer that asked for it. The outcome keeps the views of the
    photo that ``detector`` and ``others`` read (a few hundred KB, not the upload), so any of them can judge it
    again."""
    path = upload_path(upload)
    if path is None:
        if previous is not None and previous.clear_photo:
            return replace(previous, clear_photo=False)  # our own clearing, not the user's
        return Outcome()
    if previous is not None and previous.source == path and not os.path.exists(path):
        return previous
    data = None
    try:
        data = read_upload(path)
        photo = decode_inputs([data])[0]
        views = {pre: preprocess(photo, pre) for pre in view_configs([detector, *others])}
        resolution = effective_resolution(photo, mim_of(detector).config.preprocess)
        return Outcome(analysis=analyze_stored(detector, views, resolution), message="", source=path, views=views,
                       resolution=resolution)
    except (UploadError, ImageDecodeError) as err:
        return Outcome(message=str(err), unreadable=True, source=path, clear_photo=True)
    except Exception:  # a bug must not reach the user as a traceback; it goes to the server log
        log.exception("analysis failed")
        return Outcome(message=INTERNAL_ERROR, unreadable=True, source=path, clear_photo=True)
    finally:
        discard_upload(path, root, data=data, keep=keep)


KEEP_PHOTO = object()  # photo_value's "leave the photo box as it is" (the UI maps it to gr.skip())


def photo_value(outcome: Outcome) -> Any:
    """What the photo box should hold after an analysis: None (empty) when it holds a file that is no
    photo, which the browser would show as a broken image; otherwise :data:`KEEP_PHOTO`."""
    return None if outcome.clear_photo else KEEP_PHOTO


def panels(outcome: Outcome, scale_label: str | None) -> tuple[RGB | None, RGB | None, RGB | None, RGB | None]:
    """Original; masked and inpainted at the chosen mask scale; the score map (the mean over every scale,
    whose mean is the score) over the original. Nones where there is no analysis, for the model panels
    of a photo the quality gate refused (it never reached the model), and for the masked and inpainted
    panels at a scale the model does not analyse."""
    a = outcome.analysis
    if a is None:
        return None, None, None, None
    if a.inpainted is None:
        return a.original, None, None, None
    try:
        i = scale_index(scale_label, a.scales)
    except ScaleError:
        return a.original, None, None, a.heatmap_overlay()
    return a.original, a.masked[i], a.inpainted[i], a.heatmap_overlay()


def api_values(outcome: Outcome, threshold: float) -> tuple[float | None, float, str, str, dict[str, Any]]:
    """Score, threshold, verdict, reason and the measurements behind them (acquisition quality, refused,
    the no-rash check's patch distance) as the ``analyze`` endpoint returns them. An input that could not
    be read is 'not a usable skin photo', with the reason saying why."""
    a = outcome.analysis
    if a is not None:
        summary = a.summary()
        evidence = {k: summary[k] for k in ("refused", "quality", "patch_distance", "inpainting_score") if k in summary}
        return (a.score if np.isfinite(a.score) else None), a.threshold, a.verdict.value, a.reason, evidence
    verdict = Verdict.UNUSABLE.value if outcome.unreadable else ""
    return None, threshold, verdict, outcome.message, {"refused": outcome.unreadable, "quality": {},
                                                       "patch_distance": None}


def analyze_outputs(detector: Analyser, upload: Any, scale_label: str | None, root: str,
                    keep: frozenset[str] = frozenset(), previous: Outcome | None = None,
                    choices: Mapping[str, Analyser] | None = None, choice: str | None = None) -> tuple[Any, ...]:
    """The ``analyze`` endpoint: the four panels, score, threshold, verdict, reason, then the Outcome
    for the session state. ``choice`` picks the verdict model among ``choices`` (None: ``detector``). A mask
    scale the model does not analyse, or a verdict model the page does not offer, gets no analysis (the
    upload is still deleted) and a reason naming those it does (:class:`ScaleError`, :class:`ChoiceError`)."""
    try:
        detector = choose(choices or {}, choice, detector)
        scale_index(scale_label, detector.scales)
    except (ScaleError, ChoiceError) as err:
        path = upload_path(upload)
        discard_upload(path, root, keep=keep)
        outcome = Outcome(message=str(err), source=path)
    else:
        outcome = analyze_upload(detector, upload, root, keep, previous, others=list((choices or {}).values()))
    return (*panels(outcome, scale_label), *api_values(outcome, detector.threshold), outcome)


def reanalyze_outputs(detector: Analyser, outcome: Outcome | None, scale_label: str | None,
                      choices: Mapping[str, Analyser], choice: str | None) -> tuple[Any, ...]:
    """The same photo with the verdict model ``choice`` (the upload itself is gone: the session's views of it are
    analysed again); outputs as :func:`analyze_outputs`. Without a photo in the session, only the threshold changes."""
    outcome = outcome or Outcome()
    try:
        detector = choose(choices, choice, detector)
    except ChoiceError as err:
        outcome = Outcome(message=str(err))
    else:
        if outcome.views is not None:
            try:
                outcome = replace(outcome, analysis=analyze_stored(detector, outcome.views, outcome.resolution))
            except KeyError:  # a model added after the photo was analysed reads a view the session did not keep
                outcome = Outcome(message=SEND_AGAIN)
    return (*panels(outcome, scale_label), *api_values(outcome, detector.threshold), outcome)


def verdict_card(outcome: Outcome) -> str:
    if outcome.analysis is not None:
        return views.verdict_html(outcome.analysis.verdict, outcome.analysis.reason, outcome.analysis.quality)
    if outcome.unreadable:
        return views.unreadable_html(outcome.message)
    return views.placeholder_html(outcome.message)


def score_bar(outcome: Outcome, calibration: Sequence[float], direction: str = MIM_SCORE_DIRECTION) -> str:
    if outcome.analysis is None:
        return ""
    return views.score_bar_html(outcome.analysis.score, outcome.analysis.threshold, calibration, direction)


def slider(outcome: Outcome, scale_label: str | None) -> tuple[RGB, RGB] | None:
    """(original, inpainted) at the chosen scale for the before/after slider (None at an unknown scale)."""
    if outcome.analysis is None or outcome.analysis.inpainted is None:
        return None
    try:
        i = scale_index(scale_label, outcome.analysis.scales)
    except ScaleError:
        return None
    return outcome.analysis.original, outcome.analysis.inpainted[i]
