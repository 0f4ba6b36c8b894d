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
    "<strong>Research aid, not a diagnosis.</strong> MIM is an experimental screening tool, not clinically "
    "validated: do not use it to decide about care, and see a health professional about any rash that worries "
    "you. Photos are analysed in memory and deleted from the server after use."
)

# What to do next, per verdict: one sentence of action each (the reason above it says the cause). The
# answers keep their disclaimer, so that no verdict reads as a diagnosis or as reassurance.
NEXT_STEPS = {
    Verdict.MPOX_LIKE: ("This is not a diagnosis: show this photo to a health worker or a sexual-health clinic, "
                        "and avoid close skin contact until you are seen."),
    Verdict.NOT_MPOX_LIKE: ("This does not rule out mpox: if the rash worries you, spreads, hurts or comes with "
                            "fever, see a health worker."),
    Verdict.NO_RASH: ("If there is a rash, retake the photo 10–20 cm from the skin with the rash in the centre; "
                      "if your skin worries you, see a health worker."),
    Verdict.UNUSABLE: ("Take a new colour photo in daylight, 10–20 cm from the skin, with the affected skin "
                       "filling the centre of the frame."),
    Verdict.TOO_NOISY: "Retake the photo in brighter light, 10–20 cm from the skin, without digital zoom or night mode.",
    Verdict.TOO_BLURRY: "Hold the camera still, tap the screen on the skin to focus, and retake the photo.",
    Verdict.TOO_LOW_RESOLUTION: ("Send the original photo from the camera, taken 10–20 cm from the skin, not a "
                                 "thumbnail, screenshot or photo of a screen."),
    Verdict.TOO_COMPRESSED: ("Send the original photo from the camera, not a copy passed through a messaging app "
                             "or website."),
    Verdict.BADLY_EXPOSED: "Retake the photo in even daylight, without flash glare or deep shadow.",
}
UNREADABLE_NEXT_STEP = "Send a JPEG, PNG or WebP photo taken with a phone or camera."
VERDICT_CLASS = {v: "mim-unusable" for v in Verdict} | {Verdict.MPOX_LIKE: "mim-mpox",
                                                         Verdict.NOT_MPOX_LIKE: "mim-not", Verdict.NO_RASH: "mim-not"}


def map_colour(value: float, vmax: float = 1.0, diverging: bool = True, lighten: float = 0.0) -> str:
    """The score map's colour for ``value`` as CSS ``rgb()``, mixed with white by ``lighten`` (0..1).

    The score bar and the verdict card take their colours from here, so "more mpox-like" has one colour
    on the whole page (the map's negative end) and "less mpox-like" another (its positive end)."""
    rgb = colorize_heatmap(np.array([[value]], dtype=np.float64), vmax, diverging)[0, 0].astype(float)
    r, g, b = (round(c + (255 - c) * lighten) for c in rgb)
    return f"rgb({r},{g},{b})"


# (strong, light) colour per direction, at the ends of the shipped diverging scale.
MPOX_TONE = (map_colour(-0.8), map_colour(-0.6, lighten=0.55))
OTHER_TONE = (map_colour(0.8), map_colour(0.6, lighten=0.55))
TONE_OF_CLASS = {"mim-mpox": MPOX_TONE[0], "mim-not": OTHER_TONE[0]}


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
    """The verdict in plain words, why, and what to do next. ``quality`` (for screens with no measurements
    section of their own, such as the clinical review) goes in a closed details box at the bottom."""
    measured = quality_text(quality)
    css = VERDICT_CLASS[verdict]
    tone = f' style="border-left-color:{TONE_OF_CLASS[css]}"' if css in TONE_OF_CLASS else ""
    return (
        f'<div class="mim-card {css}" data-verdict="{escape(verdict.value)}"{tone}>'
        f'<div class="mim-verdict">{escape(verdict.value.capitalize())}</div>'
        f'<p class="mim-reason">{escape(reason)}</p>'
        f'<p class="mim-next"><strong>What to do next:</strong> {escape(NEXT_STEPS[verdict])}</p>'
        + (f'<details class="mim-quality"><summary>Photo measurements</summary>{escape(measured)}</details>'
           if measured else "") + "</div>"
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


def score_bar_html(score: float, threshold: float, calibration: Sequence[float] = (),
                   direction: str = MIM_SCORE_DIRECTION) -> str:
    """The score on a horizontal axis against the threshold, with the mpox calibration scores as ticks.

    The mpox-like side is always on the left, in the score map's "more mpox-like" colour; the rest in its
    "less mpox-like" colour. ``direction`` is the model card's ``score_direction``: for MIM (higher = less
    mpox-like) the axis grows to the right, for a probability of mpox (higher = more) to the left."""
    finite = [v for v in [score, threshold, *calibration] if np.isfinite(v)]
    if not np.isfinite(score) or not np.isfinite(threshold):
        return '<div class="mim-scorebar"><p>No score for this photo.</p></div>'
    when = mpox_when(direction)
    lo, hi = _axis(finite)
    share = (lambda v: (v - lo) / (hi - lo)) if when == "lower" else (lambda v: (hi - v) / (hi - lo))
    pos = lambda v: f"{100 * share(v):.2f}%"  # noqa: E731 - tiny local formatter
    ticks = "".join(f'<span class="mim-tick" style="left:{pos(v)}"></span>'
                    for v in calibration if np.isfinite(v))
    mpox_side, other_side = ("at or below", "above") if when == "lower" else ("at or above", "below")
    side = mpox_side if bool(called_mpox(score, threshold, when)) else other_side
    return f"""<div class="mim-scorebar" data-score="{score:.6f}" data-threshold="{threshold:.6f}">
<div class="mim-bar-title">Score <strong>{score:.3f}</strong> is {side} the threshold
<strong>{threshold:.3f}</strong></div>
<div class="mim-track" style="background:{OTHER_TONE[1]}">
  <span class="mim-side-mpox" style="width:{pos(threshold)};background:{MPOX_TONE[1]}"></span>
  {ticks}
  <span class="mim-threshold" style="left:{pos(threshold)}" title="threshold {threshold:.3f}"></span>
  <span class="mim-marker" style="left:{pos(score)}" title="this photo {score:.3f}"></span>
</div>
<div class="mim-bar-legend"><span>&larr; more mpox-like</span><span>less mpox-like &rarr;</span></div>
<div class="mim-bar-note">Mpox-like {mpox_side} the dashed threshold. Ticks: the mpox photos it was set on.</div>
</div>"""


def legend_html() -> str:
    """The page's colour language in one line: the same two colours on the score bar, the verdict card
    and the score map."""
    swatch = '<span class="mim-swatch" style="background:{}"></span>'
    return (f'<div class="mim-legend" role="note">{swatch.format(MPOX_TONE[0])}<strong>orange</strong> = more '
            f'mpox-like &nbsp; {swatch.format(OTHER_TONE[0])}<strong>blue</strong> = less mpox-like '
            "<span class=\"mim-legend-where\">(score bar and score map alike)</span></div>")


def colour_bar_html(vmax: float, diverging: bool, map_kind: str, stops: int = 11) -> str:
    """The score map's fixed colour scale as a CSS gradient, its ends labelled in words.

    Diverging (a measure with a reference fill): [-vmax, vmax], white = reproduced as well as the
    reference. Otherwise [0, vmax]. Same scale for every photo (the card's ``measure.heatmap_max``)."""
    lo = -vmax if diverging else 0.0
    colours = colorize_heatmap(np.linspace(lo, vmax, stops)[None, :], vmax, diverging)[0]
    gradient = ", ".join(f"rgb({r},{g},{b}) {100 * i / (stops - 1):.0f}%" for i, (r, g, b) in enumerate(colours))
    if diverging:
        labels = (f"&minus;{vmax:g}: reproduced better than the reference",
                  "0: as well reproduced as the reference",
                  f"+{vmax:g}: reproduced worse than the reference")
        note = (f"Score map: each pixel's share of the score, how much worse the model fills it than a plain "
                f"blur fill does ({escape(map_kind)} error over the blur fill's mean error; clipped at "
                f"&plusmn;{vmax:g}). The score is the mean of this map.")
    else:
        labels = ("0: reproduced faithfully", "", f"&ge; {vmax:g}: very different")
        note = f"Score map: each pixel's {escape(map_kind)} error. The score is the mean of this map."
    ends = "".join(f"<span>{label}</span>" for label in labels)
    return f"""<div class="mim-colourbar" data-vmin="{lo:g}" data-vmax="{vmax:g}">
<div class="mim-gradient" style="background: linear-gradient(to right, {gradient});"></div>
<div class="mim-bar-legend mim-three">{ends}</div>
<div class="mim-bar-note">{note} Fixed scale for every photo.</div>
</div>"""


def thumbnail_data_uri(image: np.ndarray, size: int = 64) -> str:
    """A small JPEG of an (H,W,3) uint8 image as a data URI (kept in the page, never written to disk)."""
    thumb = Image.fromarray(image)
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
