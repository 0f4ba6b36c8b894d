"""The model-free quality gate: pictures no model should judge are refused before any inference.

Checks run on the preprocessed crop the model would see. The first are deliberately loose: they catch
flat, blank, grayscale or non-skin pictures. The acquisition checks that follow (:mod:`mim_core.acquisition`:
noise, exposure, effective resolution, JPEG blocks, sharpness; limits calibrated on mpox train+val photos and read
from the model card) refuse poor photos of skin, each with a sentence saying how to retake it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .acquisition import DEFAULT_GATE, GateThresholds, measure_quality
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


REFUSALS = {
    Verdict.TOO_NOISY: "The photo is too grainy (noisy) to judge: retake it in brighter light, without "
                       "digital zoom or night mode. If it is already sharp and well lit, fine texture (hair, "
                       "scaly or rough skin) can look like grain: move the camera closer to the skin.",
    Verdict.BADLY_EXPOSED: "The photo is too dark or too bright to judge: retake it in even daylight, "
                           "without flash glare or deep shadow.",
    Verdict.TOO_LOW_RESOLUTION: "The photo has too few pixels to judge: send the original photo (not a "
                                "thumbnail or screenshot), taken closer to the skin.",
    Verdict.TOO_COMPRESSED: "The photo is too compressed to judge (JPEG blocks): send the original photo from "
                            "the camera, not a copy shrunk by a messaging app or website, or retake it.",
    Verdict.TOO_BLURRY: "The photo is too blurred to judge: hold the camera still, tap to focus, and "
                        "retake it in good light.",
}

NO_DETAIL_REASON = ("The picture has almost no fine detail (a drawing, a gradient or a smooth graphic?); "
                    "take a sharp, well-lit photo of the skin.")


def is_compressed(quality: dict[str, float], gate: GateThresholds = DEFAULT_GATE) -> bool:
    """Whether either blockiness measurement of :func:`mim_core.acquisition.measure_quality` is over its limit."""
    return (quality["blockiness"] > gate.max_blockiness
            or quality.get("photo_blockiness", 0.0) > gate.max_photo_blockiness)


def acquisition_refusal(quality: dict[str, float], gate: GateThresholds = DEFAULT_GATE) -> Decision | None:
    """The acquisition refusal for measurements of :func:`mim_core.acquisition.measure_quality`, or None.

    Order matters: noise first (noise inflates the sharpness measure), then exposure, resolution,
    compression (strong JPEG also lowers sharpness, and its cause is the one to name), blur, and last a
    picture with almost no fine detail at all (a drawn gradient: both sharpness bands empty, their ratio
    meaningless), refused as not a usable skin photo.
    """
    if quality["noise"] > gate.max_noise:
        verdict = Verdict.TOO_NOISY
    elif (quality["clipped"] > gate.max_clipped or not gate.min_mean_luma <= quality["mean_luma"]
          <= gate.max_mean_luma):
        verdict = Verdict.BADLY_EXPOSED
    elif quality.get("resolution", np.inf) < gate.min_resolution:
        verdict = Verdict.TOO_LOW_RESOLUTION
    elif is_compressed(quality, gate):
        verdict = Verdict.TOO_COMPRESSED
    elif quality["sharpness"] < gate.min_sharpness or quality["coarse_sharpness"] < gate.min_coarse_sharpness:
        verdict = Verdict.TOO_BLURRY
    elif quality.get("detail", np.inf) < gate.min_detail:
        return Decision(Verdict.UNUSABLE, NO_DETAIL_REASON)
    else:
        return None
    return Decision(verdict, REFUSALS[verdict])


def quality_gate(crop: np.ndarray, gate: GateThresholds | None = DEFAULT_GATE,
                 resolution: float | None = None) -> Decision | None:
    """The refusal for an (H,W,3) uint8 crop that cannot be judged, or None when it passes.

    Args:
        gate: acquisition limits (the card's; ``None`` runs only the usable-skin checks).
        resolution: photo pixels per model pixel, when the decoded photo is known.
    The reason says what to do instead."""
    pixels = crop.astype(np.float32) / 255.0
    if pixels.mean(axis=2).std() < MIN_LUMA_STD:
        reason = "The picture is almost flat (no visible detail); take a sharp, well-lit photo of the skin."
    elif (pixels.max(axis=2) - pixels.min(axis=2)).mean() < MIN_MEAN_SATURATION:
        reason = "The picture has no colour (grayscale?); a colour photo of the skin is needed."
    elif skin_fraction(crop) < MIN_SKIN_FRACTION:
        reason = "Little or no skin is visible in the centre of the picture; centre the photo on the affected skin."
    else:
        return None if gate is None else acquisition_refusal(measure_quality(crop, resolution), gate)
    return Decision(Verdict.UNUSABLE, reason)
