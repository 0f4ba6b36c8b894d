"""The model-free quality gate: pictures no model should judge are refused before any inference.

Checks run on the preprocessed crop the model would see. They are deliberately loose: they catch flat,
blank, grayscale or non-skin pictures, not poor photos of skin.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .verdict import Decision, Verdict

MIN_LUMA_STD = 0.03
MIN_SKIN_FRACTION = 0.03  # 2 of 34 mpox crops fell below 0.15 in a check; 1st percentile ~0.002
MIN_MEAN_SATURATION = 0.04


def skin_fraction(crop: np.ndarray) -> float:
    """Share of pixels of an (H,W,3) uint8 image inside the classic YCrCb skin-tone box
    (Cr 133-173, Cb 77-127; Chai & Ngan 1999). Crude, but model-free."""
    ycbcr = np.asarray(Image.fromarray(crop).convert("YCbCr"), dtype=np.int16)
    cb, cr = ycbcr[..., 1], ycbcr[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())


def quality_gate(crop: np.ndarray) -> Decision | None:
    """The refusal for an (H,W,3) uint8 crop that is not a usable skin photo, or None when it passes.
    The reason says what to do instead."""
    pixels = crop.astype(np.float32) / 255.0
    if pixels.mean(axis=2).std() < MIN_LUMA_STD:
        reason = "The picture is almost flat (no visible detail); take a sharp, well-lit photo of the skin."
    elif (pixels.max(axis=2) - pixels.min(axis=2)).mean() < MIN_MEAN_SATURATION:
        reason = "The picture has no colour (grayscale?); a colour photo of the skin is needed."
    elif skin_fraction(crop) < MIN_SKIN_FRACTION:
        reason = "Little or no skin is visible in the centre of the picture; centre the photo on the affected skin."
    else:
        return None
    return Decision(Verdict.UNUSABLE, reason)
