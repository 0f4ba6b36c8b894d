"""Thresholds: how one is set from mpox validation scores, and how a card's is read.

Every model (MIM and each classifier baseline) uses the same rule, on the mpox *val* split only (no
non-mpox image): the threshold is the least mpox-like val score, the split-conformal bound that expects
at least n/(n+1) of new mpox photos (93.75 % with 15 val images) to be called mpox-like.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike

from .checkpoint import WeightsError
from .verdict import MpoxWhen, lower_is_mpox


def calibrate_threshold(mpox_val_scores: ArrayLike, when: MpoxWhen) -> dict[str, Any]:
    """The card's ``threshold`` entry from the scores of the mpox val photos (see module doc).

    Args:
        mpox_val_scores: (n,) scores of the mpox val photos, in the model's own direction.
        when: which scores mean mpox (:func:`mim_core.verdict.mpox_when`).
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


def card_threshold(card: Mapping[str, Any], weights: str | os.PathLike, require: bool, how_to_set: str) -> float:
    """The card's calibrated threshold; NaN when it has none and ``require`` is False (calibration only).

    Raises:
        WeightsError: no threshold while ``require`` (every photo would otherwise get a verdict from nothing).
    """
    threshold = card.get("threshold", {}).get("value")
    if threshold is not None and math.isfinite(float(threshold)):
        return float(threshold)
    if require:
        raise WeightsError(f"The model card of {weights} has no calibrated threshold; {how_to_set}.")
    return float("nan")
