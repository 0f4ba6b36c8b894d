"""Verdicts, and which way every model's score points: the one place that turns a score into words.

A model's card states its score direction in words (``score_direction``): MIM's "higher = less
mpox-like", a classifier's "higher = more mpox-like". Everything that compares a score with a
threshold, orients scores for an AUROC, or stores a direction reads it through :func:`mpox_when`,
whose answer is ``"lower"`` (lower scores mean mpox) or ``"higher"``. Controls in the evaluation have
no card; their direction is chosen on the dev classes and expressed in the same two words.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Mapping

import numpy as np
from numpy.typing import ArrayLike

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


@dataclass(frozen=True)
class Decision:
    """A verdict and the one sentence that explains it."""

    verdict: Verdict
    reason: str


def decide(score: float, threshold: float, when: MpoxWhen, reasons: Mapping[Verdict, str],
           refusal: Decision | None = None) -> Decision:
    """The verdict for a score, or the refusal when the photo could not be judged.

    Args:
        reasons: the model's own sentence for ``MPOX_LIKE`` and ``NOT_MPOX_LIKE`` (may use ``{score}``).
        refusal: a quality gate's refusal (see :mod:`mim_core.quality`); it wins over any score.
    """
    if refusal is not None:
        return refusal
    verdict = Verdict.MPOX_LIKE if bool(called_mpox(score, threshold, when)) else Verdict.NOT_MPOX_LIKE
    return Decision(verdict, reasons[verdict].format(score=score))
