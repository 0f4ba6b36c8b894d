"""Classifier baselines: torchvision ResNet-18 / MobileNetV3-small, binary mpox vs non-mpox.

They exist to test MIM's case against classifiers on the same data, the same split and the same
preprocessing. Architectures come from torchvision with ``weights=None``: they are trained from scratch,
because no pretrained weights can be downloaded on the machines this project runs on.

A shipped classifier is ``NAME.pt`` (the config that built it + its state dict, stored in fp16) with its
model card ``NAME.json`` beside it, exactly like MIM's. :class:`ClassifierDetector` loads one (verifying
the weights' sha256 against the card) and answers with the same score-style interface as
:class:`mim_core.detector.MIMDetector`: ``analyze(image)`` returns a :class:`mim_core.verdict.Analysis`
(score, threshold, verdict, reason, the model's view; no MIM panels). Score: probability of mpox, **higher = more
mpox-like** (the opposite of MIM's direction; every card says which way its score points).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import WeightsError, load_card, save_torch, sha256_file, verify_weights
from ..config import ARCHITECTURES, FROZEN_ARCHS, ONE_CLASS_ARCHS, PROBE_ARCH, ClassifierConfig
from ..data import ImageInput, decode_inputs, preprocess, to_uint8
from ..verdict import CLASSIFIER_SCORE_DIRECTION, Analysis, Verdict, card_threshold, judge, mpox_when
from .one_class import FeatureBank
from .probe import FrozenFeatureProbe

WEIGHTS_FORMAT = "mim-classifier-v1"
SCORE_DIRECTION = CLASSIFIER_SCORE_DIRECTION
REASONS = {
    Verdict.MPOX_LIKE: "The classifier gives this photo an mpox probability of {score:.2f}, at or above its threshold.",
    Verdict.NOT_MPOX_LIKE: "The classifier gives this photo an mpox probability of {score:.2f}, below its threshold.",
}
ONE_CLASS_REASONS = {  # their score is sigmoid(-distance to the mpox photos), not a probability
    Verdict.MPOX_LIKE: "Its features are as close to the mpox photos the model keeps as those of mpox photos.",
    Verdict.NOT_MPOX_LIKE: "Its features are farther from the mpox photos the model keeps than those of mpox photos.",
}
# Fixed input normalisation (inputs are [0, 1] RGB); ImageNet statistics, a convention, not pretraining.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class BinaryClassifier(nn.Module):
    """A torchvision backbone with one output logit; normalisation is part of the model.

    Forward: (B, 3, H, W) RGB in [0, 1] -> (B,) logits of "mpox".
    """

    def __init__(self, arch: str, bn_momentum: float = 0.1) -> None:
        super().__init__()
        if arch in ("resnet18", "mobilenet_v3_small"):
            import torchvision  # only these need it: at the top it cost every command start, the demo's too, ~2 s

            self.net = getattr(torchvision.models, arch)(weights=None, num_classes=1)
        elif arch == PROBE_ARCH:
            self.net = FrozenFeatureProbe()
        elif arch in ONE_CLASS_ARCHS:
            self.net = FeatureBank(arch)
        else:
            raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = bn_momentum
        mean, std = ((0.0,) * 3, (1.0,) * 3) if arch in FROZEN_ARCHS else (MEAN, STD)  # those scale their own input
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std).squeeze(1)


def build_model(config: ClassifierConfig, seed: int) -> BinaryClassifier:
    """Fresh model; layer initialisation draws from a forked, seeded global RNG (left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BinaryClassifier(config.arch, config.bn_momentum)


def export_classifier(path: str | os.PathLike, state: dict[str, torch.Tensor], config: ClassifierConfig) -> str:
    """Write the deployable weights (config + state dict with floating tensors in fp16); returns sha256.

    fp16 halves the file (ResNet-18: 45 -> 22 MB). The card's numbers are measured on these stored
    weights (loaded back to fp32), so the rounding is part of what is evaluated.
    """
    half = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
            for k, v in state.items()}
    save_torch(path, {"format": WEIGHTS_FORMAT, "config": config.to_dict(), "state_dict": half})
    return sha256_file(path)


def load_classifier(weights: str | os.PathLike,
                    expected_sha256: str | None) -> tuple[BinaryClassifier, ClassifierConfig]:
    """Verify the sha256 (when given) and build the classifier in eval mode (fp32)."""
    weights = verify_weights(weights, expected_sha256, "python -m mim_core train-classifier")
    try:
        blob = torch.load(weights, map_location="cpu", weights_only=True)
        if blob.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"format {blob.get('format')!r}, expected {WEIGHTS_FORMAT!r}")
        config = ClassifierConfig.from_dict(blob["config"])
        model = BinaryClassifier(config.arch, config.bn_momentum)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    except Exception as err:  # any failure here means the file is not a classifier weights file
        raise WeightsError(f"{weights} is not a readable classifier weights file ({err}).") from err
    return model.eval(), config


@torch.inference_mode()
def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(N, 3, H, W) preprocessed images in [0, 1] -> (N,) float64 mpox probabilities."""
    model.eval()
    out = [torch.sigmoid(model(images[i:i + batch_size].float())).double().cpu().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


class ClassifierDetector:
    """A classifier baseline behind the same interface as MIMDetector. Score = P(mpox), higher = more
    mpox-like; the verdict compares it with the card's threshold (set on the validation split).

    The verdict comes from the classifier alone: unlike MIM's, no image-quality gate is applied (the
    benchmark reports what the same model-free gate would change).
    """

    score_direction = SCORE_DIRECTION

    def __init__(self, model: BinaryClassifier, config: ClassifierConfig, threshold: float,
                 card: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.threshold = float(threshold)
        self.card = card or {}

    @classmethod
    def load(cls, weights: str | os.PathLike, threads: int | None = None) -> "ClassifierDetector":
        """Load weights + the card beside them, verifying the weights' sha256 against the card.

        Raises:
            WeightsError: missing card or weights, a sha256 mismatch, a card of another kind, or no threshold.
        """
        if threads:
            torch.set_num_threads(threads)
        card = load_card(weights)
        if card.get("kind") != "classifier":
            raise WeightsError(f"The card beside {weights} is of kind {card.get('kind')!r}, not a classifier.")
        model, config = load_classifier(weights, card.get("weights_sha256"))
        threshold = card_threshold(card, weights)
        return cls(model, config, threshold, card)

    def score_views(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) preprocessed images -> (B,) mpox probabilities (higher = more mpox-like)."""
        return predict_proba(self.model, images)

    def analyze(self, image: ImageInput) -> Analysis:
        """Classify one photo (path, bytes, PIL image or (H,W,3) uint8 array).

        Raises:
            ImageDecodeError: the input cannot be read as a photo (message is user-facing).
        """
        return self.analyze_batch([image])[0]

    def analyze_batch(self, images: Sequence[ImageInput]) -> list[Analysis]:
        tensors = torch.stack([preprocess(p, self.config.preprocess) for p in decode_inputs(images)])
        results = []
        when = mpox_when(SCORE_DIRECTION)
        reasons = ONE_CLASS_REASONS if self.config.arch in ONE_CLASS_ARCHS else REASONS
        for tensor, prob in zip(tensors, self.score_views(tensors)):
            decision = judge(float(prob), self.threshold, when, reasons)
            results.append(Analysis(float(prob), self.threshold, decision.verdict, decision.reason, to_uint8(tensor)))
        return results
