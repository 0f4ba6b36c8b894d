"""What the demo runs: MIM's checks and pictures, the verdict of the model that transfers best.

MIM's gates (usable skin, not a skin photo, acquisition limits) and its panels (masked, inpainted, score
map) stay as they are; the score, threshold and verdict of every photo the gates pass come from a
*verdict model*, a classifier card (the linear probe on frozen ImageNet features, which won the
cross-source dev protocol against MIM: docs/cross_source.md). The no-rash check still applies: its patch
distance is MIM's appearance check, calibrated on mpox photos only.

    screening = Screening.load("weights/mim_gan.pt", "weights/effnet_probe.pt")
    analysis = screening.analyze("photo.jpg")  # verdict from the probe; analysis.inpainting_score is MIM's

Also here: finding the models of a weights folder (a model is NAME.pt with its card NAME.json) and loading any
of them by its card's kind (:func:`find_models`, :func:`load_detector`), and the verdicts the demo offers
(:func:`verdict_options`: MIM alone, or MIM with any classifier card's verdict).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .baselines.classifier import ClassifierDetector
from .checkpoint import WeightsError, load_card
from .config import ONE_CLASS_ARCHS, PreprocessConfig
from .data import ImageInput, decode_inputs, preprocess
from .detector import MIMDetector
from .verdict import Analysis, Verdict, judge, mpox_when

REASONS = {
    Verdict.MPOX_LIKE: "Its features resemble those of the mpox photos the verdict model learned from.",
    Verdict.NOT_MPOX_LIKE: "Its features resemble those of the other skin conditions the verdict model learned from.",
}
ONE_CLASS_REASONS = {  # a one-class verdict model learned from no other condition
    Verdict.MPOX_LIKE: REASONS[Verdict.MPOX_LIKE],
    Verdict.NOT_MPOX_LIKE: "Its features are further from every mpox photo the verdict model learned from than its "
                           "threshold allows.",
}


class Screening:
    """MIM (gates and panels) with the verdict of ``verdict_model``; answers like a detector.

    ``threshold``, ``verdict_card``, ``calibration`` and ``score_direction`` are the verdict model's;
    ``scales``, ``config``, ``gate``, ``appearance`` and ``card`` are MIM's.
    """

    def __init__(self, mim: MIMDetector, verdict_model: ClassifierDetector) -> None:
        self.mim, self.verdict_model = mim, verdict_model
        self.scales, self.config, self.gate = mim.scales, mim.config, mim.gate
        self.appearance, self.card = mim.appearance, mim.card
        self.threshold = verdict_model.threshold
        self.verdict_card = verdict_model.card
        self.score_direction = verdict_model.score_direction
        self.reasons = ONE_CLASS_REASONS if verdict_model.config.arch in ONE_CLASS_ARCHS else REASONS

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
        """Each photo decoded once, then MIM's view and the verdict model's own view made from it.

        Raises:
            ImageDecodeError: the first input that cannot be read as a photo.
        """
        photos = decode_inputs(images)
        verdict_views = torch.stack([preprocess(p, self.verdict_model.config.preprocess) for p in photos])
        return self.analyze_views(*self.mim.photo_views(photos), verdict_views)

    def analyze_views(self, views: torch.Tensor, resolutions: Sequence[float | None],
                      verdict_views: torch.Tensor | None = None) -> list[Analysis]:
        """(B, 3, H, W) MIM views -> one Analysis each; a refused view is MIM's refusal as it is.

        Args:
            verdict_views: (B, 3, H', W') the verdict model's views of the same photos; None when it reads MIM's.

        Raises:
            ValueError: ``verdict_views`` missing for a verdict model that reads another view.
        """
        if verdict_views is None:
            if self.verdict_model.config.preprocess != self.mim.config.preprocess:
                raise ValueError("This verdict model reads its own view of the photo; pass verdict_views.")
            verdict_views = views
        analyses = self.mim.analyze_views(views, resolutions)
        usable = [i for i, a in enumerate(analyses) if not a.verdict.is_refusal]
        scores = self.verdict_model.score_views(verdict_views[usable]) if usable else np.empty(0)
        when = mpox_when(self.score_direction)
        out = list(analyses)
        for i, score in zip(usable, scores.tolist()):
            a = analyses[i]
            decision = judge(score, self.threshold, when, self.reasons, no_rash=self.mim.no_rash(a.patch_distance))
            out[i] = replace(a, score=score, threshold=self.threshold, verdict=decision.verdict,
                             reason=decision.reason, inpainting_score=a.score)
        return [a if not a.verdict.is_refusal else replace(a, threshold=self.threshold) for a in out]


Analyser = MIMDetector | Screening  # what the demo runs: MIM alone, or MIM with another model's verdict


def mim_of(analyser: Analyser) -> MIMDetector:
    """The MIM behind an analyser: its gates, its panels and the view they read."""
    return analyser.mim if isinstance(analyser, Screening) else analyser


def view_configs(analysers: Sequence[Analyser]) -> list[PreprocessConfig]:
    """Every view these analysers read: MIM's, then each verdict model's own (each once)."""
    configs = [mim_of(a).config.preprocess for a in analysers]
    configs += [a.verdict_model.config.preprocess for a in analysers if isinstance(a, Screening)]
    return list(dict.fromkeys(configs))


def analyze_view_set(analyser: Analyser, views: Mapping[PreprocessConfig, torch.Tensor],
                     resolutions: Sequence[float | None]) -> list[Analysis]:
    """``analyze_views`` of an analyser given the views of the same photos by preprocessing, (B, 3, H, W) each, as
    :func:`view_configs` names them (the demo keeps them to judge a photo again once its upload is deleted).

    Raises:
        KeyError: a view ``analyser`` reads is not among ``views``.
    """
    own = (views[analyser.verdict_model.config.preprocess],) if isinstance(analyser, Screening) else ()
    return analyser.analyze_views(views[mim_of(analyser).config.preprocess], resolutions, *own)


# MIM (kind "mim") and the classifier baselines (kind "classifier") share the card's shape, so the demo, the
# benchmark and the clinical module find and load them here.
KINDS = ("mim", "classifier")


@dataclass(frozen=True)
class ModelEntry:
    """A card found in a weights folder, with the path of its weights file."""

    name: str
    kind: str
    card: dict[str, Any]
    weights: Path


def find_models(folder: str | os.PathLike, kinds: tuple[str, ...] = KINDS) -> tuple[list[ModelEntry], list[str]]:
    """Cards in ``folder`` whose kind is in ``kinds``, whose weights file is present and whose card has a
    threshold, sorted by file name; and one note per card that was skipped, saying why.

    JSON files that are not model cards (no ``kind``) are ignored silently.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Weights folder {folder} not found.")
    entries, notes = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            notes.append(f"{path.name}: skipped, not readable JSON")
            continue
        if not isinstance(card, dict) or "kind" not in card:
            continue  # not a model card
        name, kind = str(card.get("name", path.stem)), str(card["kind"])
        weights = folder / str(card.get("weights_file", path.with_suffix(".pt").name))
        if kind not in kinds:
            notes.append(f"{name}: skipped, no scorer registered for kind '{kind}' (known: {', '.join(kinds)})")
        elif not weights.is_file():
            notes.append(f"{name}: skipped, weights file {weights.name} not present")
        elif "value" not in card.get("threshold", {}):
            notes.append(f"{name}: skipped, its card has no threshold.value")
        else:
            entries.append(ModelEntry(name, kind, card, weights))
    return entries, notes


Detector = MIMDetector | ClassifierDetector  # both answer analyze(image) -> Analysis


def load_detector(weights: str | os.PathLike, threads: int | None = None, device: str = "cpu",
                  precision: str = "fp32") -> Detector:
    """MIM or a classifier baseline, picked by the card's ``kind``; both answer ``analyze(image)`` and
    ``analyze_batch(images)`` with :class:`~mim_core.verdict.Analysis` objects, and ``score_views(views)``.

    Raises:
        WeightsError: no card, an unknown kind, or weights that do not match their card.
    """
    kind = load_card(weights).get("kind")
    if kind == "mim":
        return MIMDetector.load(weights, threads=threads, device=device, precision=precision)
    if kind == "classifier":
        return ClassifierDetector.load(weights, threads=threads)
    raise WeightsError(f"The card beside {weights} has kind {kind!r}; expected one of {', '.join(KINDS)}.")


def verdict_options(mim: MIMDetector, folder: str | os.PathLike) -> dict[str, Analyser]:
    """Who may give the verdict beside MIM's checks and panels: ``{card name: analyser}``, MIM alone under
    its own card's name, then MIM with the verdict of each classifier card in ``folder``.

    Raises:
        WeightsError: a card whose weights do not match it (sha256).
    """
    options: dict[str, Analyser] = {str(mim.card.get("name", "mim")): mim}
    for entry in find_models(folder, kinds=("classifier",))[0]:
        options[entry.name] = Screening(mim, ClassifierDetector.load(entry.weights))
    return options
