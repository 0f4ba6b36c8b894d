"""MIM (Mask, Inpainting, and Measure): a one-class mpox screening research aid.

The public API::

    from mim_core import load_detector
    detector = load_detector("weights/mim_gan.pt")   # MIM or a classifier baseline, by its card's kind
    analysis = detector.analyze("photo.jpg")         # an Analysis: score, threshold, verdict, reason, panels
    analysis.verdict is Verdict.MPOX_LIKE            # or NOT_MPOX_LIKE, NO_RASH, or a refusal (verdict.is_refusal)
    analysis.score == analysis.heatmap.mean()        # MIM: the score is the mean of its own map

The package reads top-down as the method, then the checks, then the model's paperwork:

- the method: ``config`` (frozen configs and recipes), ``data``, ``masks``, ``model``, ``measure``;
- the screening checks: ``gate`` (model-free quality gate), ``appearance`` (no rash / not skin),
  ``verdict`` (the one verdict rule, thresholds and the ``Analysis`` result type);
- ``detector`` (MIM's analysis path), ``screening`` (MIM's checks and pictures with the verdict of the
  model that transfers best: what the demo runs; finding and loading any model card), ``checkpoint`` (weights and cards),
  ``calibrate`` (gate, threshold, appearance, card: in that order), ``cli``;
- the periphery: ``training/``, ``evaluation/`` (protocol, statistics, reports), ``baselines/``,
  ``benchmark/``.
"""

from .checkpoint import WeightsError
from .data import ImageDecodeError
from .detector import MIMDetector
from .screening import Analyser, Screening, load_detector
from .verdict import Analysis, Verdict

__all__ = ["Analyser", "Analysis", "ImageDecodeError", "MIMDetector", "Screening", "Verdict", "WeightsError",
           "load_detector"]
