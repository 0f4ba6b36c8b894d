"""HTML pieces of the Analyse tab: the notice, the verdict card, the score bar and the colour bar.

Pure functions of their inputs (no Gradio), so tests call them directly. Every string that can come
from a user (file names, messages quoting them) is escaped.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Sequence

import numpy as np
from PIL import Image

from mim_core import Verdict
from mim_core.verdict import MIM_SCORE_DIRECTION, called_mpox, mpox_when
from mim_core.measure import colorize_heatmap

NOTICE = (
    "<strong>Research aid, not a diagnosis.</strong> MIM is an experimental screening tool that has not "
    "been clinically validated. Do not use it to decide about care: anyone worried about a rash should "
    "see a health professional. Photos are analysed in memory and deleted from the server after use."
)

# What a person should do next, per verdict. Worded so no verdict reads as reassurance or diagnosis.
NEXT_STEPS = {
    Verdict.MPOX_LIKE: (
        "This is not a diagnosis: other rashes, and some photos of skin with no rash at all, look mpox-like to "
        "the model. If you have a new rash with spots, blisters or sores, especially after close contact with "
        "someone who has mpox, contact a health professional or a sexual-health clinic, and avoid close skin "
        "contact until you are seen."
    ),
    Verdict.NOT_MPOX_LIKE: (
        "This does not rule out mpox: the model misses some mpox photos. If you are worried about a rash, "
        "or it is spreading, painful or with fever, see a health professional."
    ),
    Verdict.NO_RASH: (
        "The model sees no mpox-like rash in this photo. If there is a rash, take a closer photo with the rash in "
        "the centre, filling most of the frame. If you are worried about your skin, see a health professional."
    ),
    Verdict.UNUSABLE: (
        "Take a new photo: sharp, in good light (no flash glare), in colour, with the affected skin in the "
        "centre and filling most of the frame."
    ),
    Verdict.TOO_NOISY: (
        "No verdict was given for this photo. Retake it in brighter light, without digital zoom or night mode; if "
        "it was already sharp and well lit, fine texture such as hair can look like grain: move the camera closer. "
        "The tool refuses rather than guess on photos unlike the clean photos it was calibrated on."
    ),
    Verdict.TOO_BLURRY: (
        "No verdict was given for this photo. Hold the camera still, tap the screen on the skin to focus, and retake it in good light. The tool refuses rather than guess on photos "
        "unlike the clean photos it was calibrated on."
    ),
    Verdict.TOO_LOW_RESOLUTION: (
        "No verdict was given for this photo. Send the original photo from the camera (not a thumbnail, screenshot or a photo of a screen), taken closer to the skin. The tool refuses rather than guess on photos "
        "unlike the clean photos it was calibrated on."
    ),
    Verdict.TOO_COMPRESSED: (
        "No verdict was given for this photo. Send the original photo from the camera, not a copy a messaging app or website has compressed (or retake it). The tool refuses rather than guess on photos "
        "unlike the clean photos it was calibrated on."
    ),
    Verdict.BADLY_EXPOSED: (
        "No verdict was given for this photo. Retake it in even daylight, without flash glare or deep shadow. The tool refuses rather than guess on photos "
        "unlike the clean photos it was calibrated on."
    ),
}
UNREADABLE_NEXT_STEP = "Send a JPEG, PNG or WebP photo taken with a phone or camera."
VERDICT_CLASS = {v: "mim-unusable" for v in Verdict} | {Verdict.MPOX_LIKE: "mim-mpox",
                                                         Verdict.NOT_MPOX_LIKE: "mim-not", Verdict.NO_RASH: "mim-not"}


def notice_html() -> str:
    return f'<div class="mim-notice" role="note">{NOTICE}</div>'


def placeholder_html(message: str) -> str:
    """The verdict area before any analysis (or after the photo was cleared)."""
    return f'<div class="mim-card mim-idle" data-verdict="none"><p>{escape(message)}</p></div>'


def quality_text(quality: dict[str, float] | None) -> str:
    """The measured acquisition-quality values in one line (empty when none were measured)."""
    if not quality:
        return ""
    return "Measured photo quality: " + ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in quality.items())


def verdict_html(verdict: Verdict, reason: str, quality: dict[str, float] | None = None) -> str:
    """The verdict in plain words, why, what to do next, and the measured photo quality."""
    measured = quality_text(quality)
    return (
        f'<div class="mim-card {VERDICT_CLASS[verdict]}" data-verdict="{escape(verdict.value)}">'
        f'<div class="mim-verdict">{escape(verdict.value.capitalize())}</div>'
        f"<p>{escape(reason)}</p>"
        f'<p class="mim-next"><strong>What to do next:</strong> {escape(NEXT_STEPS[verdict])}</p>'
        + (f'<p class="mim-quality">{escape(measured)}</p>' if measured else "") + "</div>"
    )


def unreadable_html(message: str) -> str:
    """The card for an input that never reached the model (not an image, corrupt, too large...)."""
    return (
        f'<div class="mim-card mim-unusable" data-verdict="{escape(Verdict.UNUSABLE.value)}">'
        f'<div class="mim-verdict">Could not use this file</div><p>{escape(message)}</p>'
        f'<p class="mim-next"><strong>What to do next:</strong> {escape(UNREADABLE_NEXT_STEP)}</p></div>'
    )


def _axis(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = 0.12 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def score_bar_html(score: float, threshold: float, calibration: Sequence[float] = ()) -> str:
    """The score on a horizontal axis against the threshold, with the mpox calibration scores as ticks.

    Left of the threshold (at or below it) is the mpox-like side; higher scores are less mpox-like."""
    finite = [v for v in [score, threshold, *calibration] if np.isfinite(v)]
    if not np.isfinite(score) or not np.isfinite(threshold):
        return '<div class="mim-scorebar"><p>No score for this photo.</p></div>'
    lo, hi = _axis(finite)
    pos = lambda v: f"{100 * (v - lo) / (hi - lo):.2f}%"  # noqa: E731 - tiny local formatter
    ticks = "".join(f'<span class="mim-tick" style="left:{pos(v)}"></span>'
                    for v in calibration if np.isfinite(v))
    side = "at or below" if bool(called_mpox(score, threshold, mpox_when(MIM_SCORE_DIRECTION))) else "above"
    return f"""<div class="mim-scorebar" data-score="{score:.6f}" data-threshold="{threshold:.6f}">
<div class="mim-bar-title">Score <strong>{score:.3f}</strong> is {side} the threshold
<strong>{threshold:.3f}</strong></div>
<div class="mim-track">
  <span class="mim-side-mpox" style="width:{pos(threshold)}"></span>
  {ticks}
  <span class="mim-threshold" style="left:{pos(threshold)}" title="threshold {threshold:.3f}"></span>
  <span class="mim-marker" style="left:{pos(score)}" title="this photo {score:.3f}"></span>
</div>
<div class="mim-bar-legend"><span>&larr; more mpox-like (mpox-like at or below the threshold)</span>
<span>less mpox-like &rarr;</span></div>
<div class="mim-bar-note">Thin ticks: the mpox photos the threshold was calibrated on. Score = the mean of the
score map below: how much worse the model fills hidden patches of this photo than a plain blur fill does
(0 = as well; higher = less mpox-like).</div>
</div>"""


def colour_bar_html(vmax: float, diverging: bool, map_kind: str, stops: int = 11) -> str:
    """The score map's fixed colour scale as a CSS gradient, its ends labelled in words.

    Diverging (a measure with a reference fill): [-vmax, vmax], white = reproduced as well as the
    reference. Otherwise [0, vmax]. Same scale for every photo (the card's ``measure.heatmap_max``)."""
    lo = -vmax if diverging else 0.0
    colours = colorize_heatmap(np.linspace(lo, vmax, stops)[None, :], vmax, diverging)[0]
    gradient = ", ".join(f"rgb({r},{g},{b}) {100 * i / (stops - 1):.0f}%" for i, (r, g, b) in enumerate(colours))
    if diverging:
        labels = (f"&le; &minus;{vmax:g}: reproduced better than the reference (more mpox-like)",
                  "0: as well reproduced as the reference",
                  f"&ge; +{vmax:g}: reproduced worse than the reference (less mpox-like)")
        note = (f"Each pixel: how much worse the model fills it than a plain blur fill does ({escape(map_kind)} "
                "error, in units of the blur fill's mean error). The score is the mean of this map.")
    else:
        labels = ("0: reproduced faithfully", "", f"&ge; {vmax:g}: very different (less mpox-like)")
        note = f"Each pixel: the model's {escape(map_kind)} error. The score is the mean of this map."
    ends = "".join(f"<span>{label}</span>" for label in labels)
    return f"""<div class="mim-colourbar" data-vmin="{lo:g}" data-vmax="{vmax:g}">
<div class="mim-gradient" style="background: linear-gradient(to right, {gradient});"></div>
<div class="mim-bar-legend">{ends}</div>
<div class="mim-bar-note">{note} Fixed scale for every photo.</div>
</div>"""


def thumbnail_data_uri(image: np.ndarray, size: int = 64) -> str:
    """A small JPEG of an (H,W,3) uint8 image as a data URI (kept in the page, never written to disk)."""
    thumb = Image.fromarray(image)
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
