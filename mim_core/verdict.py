"""The verdict path every model kind shares: which way a score points, how a threshold is set and read,
the one rule that turns a score into a verdict (:func:`judge`), and the one result type (:class:`Analysis`).

A model's card states its score direction in words (``score_direction``): MIM's "higher = less
mpox-like", a classifier's "higher = more mpox-like". Everything that compares a score with a
threshold, orients scores for an AUROC, or stores a direction reads it through :func:`mpox_when`,
whose answer is ``"lower"`` (lower scores mean mpox) or ``"higher"``. Controls in the evaluation have
no card; their direction is chosen on the dev classes and expressed in the same two words.

Thresholds: every model (MIM and each classifier baseline) uses the same rule, on the mpox *val* split
only (no non-mpox image): the threshold is the least mpox-like val score, the split-conformal bound that
expects at least n/(n+1) of new mpox photos (93.75 % with 15 val images) to be called mpox-like.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Mapping

import numpy as np
from numpy.typing import ArrayLike

from .checkpoint import WeightsError
from .measure import overlay_heatmap

MpoxWhen = Literal["lower", "higher"]

MIM_SCORE_DIRECTION = "higher = less mpox-like"
CLASSIFIER_SCORE_DIRECTION = "higher = more mpox-like"


class Verdict(str, Enum):
    """A model's answer. Refusals say why no answer is given; they are never a hidden "not mpox-like"."""

    MPOX_LIKE = "mpox-like"
    NOT_MPOX_LIKE = "not mpox-like"
    NO_RASH = "no rash visible"  # an answer, not a refusal: the photo was judged (see mim_core.appearance)
    UNUSABLE = "not a usable skin photo"
    TOO_NOISY = "too noisy to judge"
    TOO_BLURRY = "too blurry to judge"
    TOO_LOW_RESOLUTION = "resolution too low to judge"
    TOO_COMPRESSED = "too compressed to judge"
    BADLY_EXPOSED = "too dark or too bright to judge"

    @property
    def is_refusal(self) -> bool:
        return self not in (Verdict.MPOX_LIKE, Verdict.NOT_MPOX_LIKE, Verdict.NO_RASH)


class DirectionError(ValueError):
    """A card that does not say which way its score points."""


def mpox_when(direction: str | Mapping[str, Any]) -> MpoxWhen:
    """``"lower"`` when lower scores mean mpox (MIM), ``"higher"`` when higher scores do (classifiers).

    Args:
        direction: a card (its ``score_direction`` is read) or the direction text itself, e.g.
            "higher = less mpox-like".
    Raises:
        DirectionError: the text names no direction.
    """
    text = str(direction.get("score_direction", "") if isinstance(direction, Mapping) else direction).lower()
    if ("higher" in text and "less" in text) or ("lower" in text and "more" in text):
        return "lower"
    if ("higher" in text and "more" in text) or ("lower" in text and "less" in text):
        return "higher"
    name = direction.get("name", "?") if isinstance(direction, Mapping) else "?"
    raise DirectionError(f"Model card '{name}' does not say which way its score points "
                         "(score_direction such as 'higher = more mpox-like').")


def lower_is_mpox(scores: ArrayLike, when: MpoxWhen) -> np.ndarray:
    """Scores turned so that lower = more mpox-like, the convention of :mod:`mim_core.evaluation.stats`."""
    values = np.asarray(scores, dtype=float)
    return values if when == "lower" else -values


def called_mpox(scores: ArrayLike, threshold: float, when: MpoxWhen) -> np.ndarray:
    """Bool per score: mpox-like at the threshold. A score equal to the threshold is mpox-like (the
    threshold is the most extreme mpox calibration score, which must itself be called mpox-like)."""
    return lower_is_mpox(scores, when) <= lower_is_mpox(threshold, when)


def calibrate_threshold(mpox_val_scores: ArrayLike, when: MpoxWhen) -> dict[str, Any]:
    """The card's ``threshold`` entry from the scores of the mpox val photos (see module doc).

    Args:
        mpox_val_scores: (n,) scores of the mpox val photos, in the model's own direction.
        when: which scores mean mpox (:func:`mpox_when`).
    """
    scores = np.asarray(mpox_val_scores, dtype=float)
    if scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError("A threshold needs at least one finite mpox val score.")
    n = len(scores)
    value = float(scores[np.argmax(lower_is_mpox(scores, when))])
    side = "maximum" if when == "lower" else "minimum"
    return {
        "value": value,
        "method": f"{side} score over the {n} mpox val images (split-conformal: expected sensitivity "
                  f">= {n}/{n + 1} = {n / (n + 1):.4f} on new mpox photos); no non-mpox image used",
        "val_scores": [round(float(s), 6) for s in scores],
    }


def card_threshold(card: Mapping[str, Any], weights: str | os.PathLike) -> float:
    """The card's calibrated threshold.

    Raises:
        WeightsError: the card has none (every photo would otherwise get a verdict from nothing).
    """
    threshold = card.get("threshold", {}).get("value")
    if threshold is None or not math.isfinite(float(threshold)):
        raise WeightsError(f"The model card of {weights} has no calibrated threshold; run "
                           f"`python -m mim_core calibrate` on its training run to set one.")
    return float(threshold)


@dataclass(frozen=True)
class Decision:
    """A verdict and the one sentence that explains it."""

    verdict: Verdict
    reason: str


NO_RASH_REASON = "No part of the photo looks like the mpox photos the model was calibrated on."


def judge(score: float, threshold: float, when: MpoxWhen, reasons: Mapping[Verdict, str],
          refusal: Decision | None = None, no_rash: bool = False) -> Decision:
    """The one verdict rule, for every model kind.

    A gate's ``refusal`` wins over any score. Otherwise the score is mpox-like at or beyond the threshold
    (:func:`called_mpox`); a mpox-like call on a photo whose appearance check found nothing like the mpox
    photos (``no_rash``) becomes "no rash visible". ``no_rash`` never changes a "not mpox-like" call.

    Args:
        reasons: the model's own sentence for ``MPOX_LIKE`` and ``NOT_MPOX_LIKE`` (may use ``{score}``).
    """
    if refusal is not None:
        return refusal
    if not bool(called_mpox(score, threshold, when)):
        return Decision(Verdict.NOT_MPOX_LIKE, reasons[Verdict.NOT_MPOX_LIKE].format(score=score))
    if no_rash:
        return Decision(Verdict.NO_RASH, NO_RASH_REASON)
    return Decision(Verdict.MPOX_LIKE, reasons[Verdict.MPOX_LIKE].format(score=score))


@dataclass(frozen=True)
class Analysis:
    """One model's answer for one photo, whatever its kind. Images are uint8 (H, W, 3) at model
    resolution; maps float32 (H, W).

    For MIM, ``score`` is the mean of ``heatmap``, the score's own per-pixel map (see
    :mod:`mim_core.measure`; in a :class:`~mim_core.screening.Screening` the score is the verdict model's and
    ``inpainting_score`` is that mean); ``scale_heatmaps`` holds it per mask scale, and their mean is ``heatmap``.
    A classifier fills only the score, threshold, verdict, reason and ``original``. A photo refused by a
    gate never reaches the model: its score is NaN and the model panels are None.
    """

    score: float
    threshold: float
    verdict: Verdict
    reason: str
    original: np.ndarray
    masked: np.ndarray | None = field(default=None, repr=False)  # (S, H, W, 3): first mask per scale, grey
    inpainted: np.ndarray | None = field(default=None, repr=False)  # (S, H, W, 3): reconstruction per scale
    scale_heatmaps: np.ndarray | None = field(default=None, repr=False)  # (S, H, W) score map per scale
    scales: tuple[int, ...] = ()
    heatmap_max: float = 1.0
    diverging: bool = False  # True when the map is relative to a reference fill (0 = as well as it)
    quality: dict[str, float] = field(default_factory=dict)  # acquisition measurements (mim_core.gate)
    patch_distance: float | None = None  # appearance checks (mim_core.appearance); None when not measured
    inpainting_score: float | None = None  # a Screening's verdict model scored: MIM's own score (heatmap's mean)

    @property
    def heatmap(self) -> np.ndarray | None:
        """The score map, (H, W): per-pixel contributions whose mean is ``score``."""
        return None if self.scale_heatmaps is None else self.scale_heatmaps.mean(axis=0)

    def heatmap_overlay(self, scale_index: int | None = None) -> np.ndarray | None:
        """The score map (or one scale's) on the model's fixed colour scale over the original, (H, W, 3) uint8."""
        if self.scale_heatmaps is None:
            return None
        heat = self.heatmap if scale_index is None else self.scale_heatmaps[scale_index]
        return overlay_heatmap(self.original, heat, self.heatmap_max, self.diverging)

    def summary(self) -> dict[str, Any]:
        return {"score": round(self.score, 6) if np.isfinite(self.score) else None,
                "threshold": round(self.threshold, 6), "verdict": self.verdict.value, "reason": self.reason,
                "refused": self.verdict.is_refusal, "quality": dict(self.quality),
                "patch_distance": None if self.patch_distance is None else round(self.patch_distance, 6),
                **({} if self.inpainting_score is None else
                   {"inpainting_score": round(self.inpainting_score, 6) if np.isfinite(self.inpainting_score) else None})}
