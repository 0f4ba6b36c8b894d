"""The photo checks in plain words: each acquisition measurement (and the appearance checks' patch
distance) read against the limits the verdict used, with no number shown. The numbers themselves stay in
the Analyse tab's closed details section and in the API's answer.

Pure functions (no Gradio); every word comes from comparing a measurement with its limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Mapping

from mim_core.gate import GateThresholds, is_compressed


@dataclass(frozen=True)
class Reading:
    """One check in words: what was looked at, what was found, and whether it passed."""

    topic: str
    words: str
    ok: bool


def _light(quality: Mapping[str, float], gate: GateThresholds) -> Reading:
    luma = quality["mean_luma"]
    if luma < gate.min_mean_luma:
        return Reading("Light", "too dark", False)
    if luma > gate.max_mean_luma:
        return Reading("Light", "too bright", False)
    if quality.get("clipped", 0.0) > gate.max_clipped:
        return Reading("Light", "too much of it burnt out or in deep shadow", False)
    return Reading("Light", "even enough", True)


def readings(quality: Mapping[str, float], gate: GateThresholds, patch_distance: float | None = None,
             no_rash_threshold: float | None = None, skin_limit: float | None = None) -> list[Reading]:
    """The checks this photo's measurements allow, in the order the gate applies them; a measurement
    that is missing is left out (a card or a refusal may not have measured it)."""
    out = []
    if "noise" in quality:
        noise = quality["noise"]
        words = ("low" if noise <= gate.clean_noise else
                 "some, smoothed out before scoring" if noise <= gate.max_noise else "too grainy to judge")
        out.append(Reading("Grain", words, noise <= gate.max_noise))
    if "mean_luma" in quality:
        out.append(_light(quality, gate))
    if "resolution" in quality:
        enough = quality["resolution"] >= gate.min_resolution
        out.append(Reading("Pixels", "enough for the model's view" if enough else "too few", enough))
    if "blockiness" in quality:
        blocky = is_compressed(dict(quality), gate)
        out.append(Reading("Compression", "JPEG blocks visible" if blocky else "no visible JPEG blocks", not blocky))
    if "sharpness" in quality and "coarse_sharpness" in quality:
        sharp = (quality["sharpness"] >= gate.min_sharpness
                 and quality["coarse_sharpness"] >= gate.min_coarse_sharpness)
        out.append(Reading("Sharpness", "sharp enough" if sharp else "blurred or enlarged", sharp))
    if "detail" in quality:
        detail = quality["detail"] >= gate.min_detail
        out.append(Reading("Fine detail", "present" if detail else "almost none (a drawing or graphic?)", detail))
    if patch_distance is not None and no_rash_threshold is not None:
        topic = "Like the training photos"
        if patch_distance <= no_rash_threshold:
            out.append(Reading(topic, "yes, a close-up of skin like theirs", True))
        elif skin_limit is None or patch_distance <= skin_limit:
            out.append(Reading(topic, "no: skin, but framed unlike their close-ups of rashes", False))
        else:
            out.append(Reading(topic, "no: unlike any skin photo the checks were set on", False))
    return out


def measurements_html(items: list[Reading]) -> str:
    """The checks as a short list, each marked passed or not in words and symbols (not colour alone)."""
    if not items:
        return ""
    rows = "".join(
        f'<li class="{"mim-ok" if r.ok else "mim-fail"}"><span class="mim-mark" aria-hidden="true">'
        f'{"&#10003;" if r.ok else "&#10007;"}</span> <strong>{escape(r.topic)}:</strong> {escape(r.words)}'
        f'<span class="mim-sr">{" (passed)" if r.ok else " (failed)"}</span></li>' for r in items)
    return (f'<div class="mim-measures"><div class="mim-measures-title">Photo checks</div>'
            f'<ul>{rows}</ul></div>')
