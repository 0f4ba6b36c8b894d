"""What the demo runs: MIM's checks and pictures, the verdict of the model that transfers best.

MIM's gates (usable skin, not a skin photo, acquisition limits) and its panels (masked, inpainted, score
map) stay as they are; the score, threshold and verdict of every photo the gates pass come from a
*verdict model*, a classifier card (the linear probe on frozen ImageNet features, which won the
cross-source dev protocol against MIM: docs/cross_source.md). The no-rash check still applies: its patch
distance is MIM's appearance check, calibrated on mpox photos only.

    screening = Screening.load("weights/mim_gan.pt", "weights/effnet_probe.pt")
    analysis = screening.analyze("photo.jpg")  # verdict from the probe; analysis.inpainting_score is MIM's
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from .baselines.classifier import ClassifierDetector
from .detector import ImageInput, MIMDetector
from .verdict import Analysis, Verdict, judge, mpox_when

REASONS = {
    Verdict.MPOX_LIKE: "Its features resemble those of the mpox photos the verdict model learned from.",
    Verdict.NOT_MPOX_LIKE: "Its features resemble those of the other skin conditions the verdict model learned from.",
}


class Screening:
    """MIM (gates and panels) with the verdict of ``verdict_model``; answers like a detector.

    ``threshold``, ``verdict_card``, ``calibration`` and ``score_direction`` are the verdict model's;
    ``scales``, ``config``, ``gate``, ``appearance`` and ``card`` are MIM's.
    """

    def __init__(self, mim: MIMDetector, verdict_model: ClassifierDetector) -> None:
        if mim.config.preprocess != verdict_model.config.preprocess:
            raise ValueError("The verdict model must see the same view as MIM (same crop and size).")
        self.mim, self.verdict_model = mim, verdict_model
        self.scales, self.config, self.gate = mim.scales, mim.config, mim.gate
        self.appearance, self.card = mim.appearance, mim.card
        self.threshold = verdict_model.threshold
        self.verdict_card = verdict_model.card
        self.score_direction = verdict_model.score_direction

    @classmethod
    def load(cls, mim_weights: str | os.PathLike, verdict_weights: str | os.PathLike, threads: int | None = None,
             precision: str = "fp32") -> "Screening":
        """Both models with their cards (sha256 verified).

        Raises:
            WeightsError: a missing or mismatched file, or a verdict card that is not a classifier's.
        """
        return cls(MIMDetector.load(mim_weights, threads=threads, precision=precision),
                   ClassifierDetector.load(verdict_weights))

    @property
    def calibration(self) -> list[float]:
        """The verdict model's mpox val scores its threshold was set on."""
        return list(self.verdict_card.get("threshold", {}).get("val_scores") or [])

    def analyze(self, image: ImageInput) -> Analysis:
        """One photo (path, bytes, PIL image or (H, W, 3) uint8 array).

        Raises:
            ImageDecodeError: the input cannot be read as a photo (message is user-facing).
        """
        return self.analyze_batch([image])[0]

    def analyze_batch(self, images: Sequence[ImageInput]) -> list[Analysis]:
        views, resolutions = self.mim.views(images)
        return self.analyze_views(views, resolutions)

    def analyze_views(self, views: torch.Tensor, resolutions: Sequence[float | None]) -> list[Analysis]:
        """(B, 3, H, W) preprocessed views -> one Analysis each; a refused view is MIM's refusal as it is."""
        analyses = self.mim.analyze_views(views, resolutions)
        usable = [i for i, a in enumerate(analyses) if not a.verdict.is_refusal]
        scores = self.verdict_model.score_views(views[usable]) if usable else np.empty(0)
        when = mpox_when(self.score_direction)
        out = list(analyses)
        for i, score in zip(usable, scores.tolist()):
            a = analyses[i]
            decision = judge(score, self.threshold, when, REASONS, no_rash=self.mim.no_rash(a.patch_distance))
            out[i] = replace(a, score=score, threshold=self.threshold, verdict=decision.verdict,
                             reason=decision.reason, inpainting_score=a.score)
        return [a if not a.verdict.is_refusal else replace(a, threshold=self.threshold) for a in out]


Analyser = MIMDetector | Screening  # what the demo runs: MIM alone, or MIM with another model's verdict
