"""MIM (Mask, Inpainting, and Measure): a one-class mpox screening research aid.

The public API::

    from mim_core import load_detector
    detector = load_detector("weights/mim_gan.pt")   # MIM or a classifier baseline, by its card's kind
    analysis = detector.analyze("photo.jpg")         # an Analysis: score, threshold, verdict, reason, panels
    analysis.verdict is Verdict.MPOX_LIKE            # or NOT_MPOX_LIKE, or a refusal (verdict.is_refusal)
    analysis.score == analysis.heatmap.mean()        # the score is the mean of its own map

The method lives at the top of the package (``config``, ``data``, ``masks``, ``model``, ``measure``,
``quality``, ``verdict``, ``calibration``, ``detector``, ``checkpoint``, ``card``, ``registry``,
``protocol``); the periphery in ``training/``, ``evaluation/``, ``baselines/`` and ``benchmark/``.
"""

from .checkpoint import WeightsError
from .data import ImageDecodeError
from .detector import Analysis, MIMDetector
from .registry import load_detector
from .verdict import Verdict

__all__ = ["Analysis", "ImageDecodeError", "MIMDetector", "Verdict", "WeightsError", "load_detector"]
