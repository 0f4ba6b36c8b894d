"""One-class baselines on frozen ImageNet features: they learn from mpox photos alone, as MIM does.

The features are the probe's and the no-rash check's (EfficientNet-Lite0 from its wheel, :mod:`.probe`):

- ``efficientnet_lite0_knn``: cosine distance of the whole-view features to the nearest mpox train photo;
- ``efficientnet_lite0_patchcore``: the PatchCore statistic, the largest over the 7x7 cells of the distance to
  the nearest mpox train cell (no coreset: a bank of ~150 photos is small enough to keep whole).

Each module holds its bank (the mpox train photos' features) as a buffer, so the shipped file is the bank.
Its output is ``-distance`` as a logit, so a card's "probability" is sigmoid(-distance): a monotone transform
of the distance, not a probability. On the cross-source dev protocol both stayed at 0.41-0.65 AUROC against
the DermNet dev classes (docs/ablations.md); they exist as the one-class baselines beside MIM.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..appearance import PatchFeatures
from ..config import ONE_CLASS_ARCHS, ClassifierConfig
from ..data import ImageRecord, load_tensor

KNN_ARCH, PATCHCORE_ARCH = ONE_CLASS_ARCHS


def nearest_distance(features: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(B, C) normalised features, (N, C) bank -> (B,) 1 - cosine similarity to the nearest bank row."""
    return 1 - (features.float() @ bank.float().T).max(dim=1).values


def worst_cell_distance(cells: torch.Tensor, bank: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """(B, P, C) normalised cells, (N, C) bank of cells -> (B,) the largest over cells of the distance to the
    nearest bank cell (PatchCore's image score)."""
    return torch.cat([(1 - (cells[i:i + chunk].float() @ bank.float().T).max(dim=2).values).max(dim=1).values
                      for i in range(0, len(cells), chunk)]) if len(cells) else torch.zeros(0)


class FeatureBank(nn.Module):
    """(B, 3, H, W) views in [0, 1] -> (B, 1) logits = -distance to the bank (higher = more mpox-like)."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        if arch not in ONE_CLASS_ARCHS:
            raise ValueError(f"Unknown one-class architecture {arch!r}.")
        self.arch = arch
        self._network = (PatchFeatures(),)  # a frozen dependency from its wheel: not in the state dict
        self.register_buffer("bank", torch.zeros(0, 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001 - torch's hook
        if prefix + "bank" in state_dict:  # the bank's size is the data's: take the stored one's shape
            self.bank = torch.empty_like(state_dict[prefix + "bank"], dtype=torch.float32)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, views: torch.Tensor) -> torch.Tensor:
        """The rows the bank holds for ``views``: whole-view features (kNN) or every cell (PatchCore), (rows, C)."""
        cells, pooled = self._network[0].both(views, whole=self.arch == KNN_ARCH)
        return pooled if self.arch == KNN_ARCH else cells.flatten(0, 1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        cells, pooled = self._network[0].both(views, whole=self.arch == KNN_ARCH)
        distance = nearest_distance(pooled, self.bank) if self.arch == KNN_ARCH else worst_cell_distance(cells, self.bank)
        return -distance[:, None]


def train_one_class(split: Any, out_dir: Path, config: ClassifierConfig, model: nn.Module, export: Callable[..., str],
                    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Fill the bank with the mpox train photos' features and export it; returns the run's record fields
    (see :func:`mim_core.baselines.probe.train_probe`, whose arguments these are). No negative photo is used."""
    started = time.time()
    bank_model: FeatureBank = model.net
    torch.set_num_threads(config.threads)
    records: Sequence[ImageRecord] = split.positives["train"]
    views = torch.stack([load_tensor(r.location, config.preprocess) for r in records])
    with torch.inference_mode():
        bank = torch.cat([bank_model.features(views[i:i + 32]) for i in range(0, len(views), 32)])
    bank_model.bank = bank.clone()
    log(f"{config.arch}: bank of {len(records)} mpox train photos, {bank.shape[0]} rows of {bank.shape[1]}")
    sha = export(out_dir / "model.pt", model.state_dict(), config)
    return {"best_step": 0, "best_val_loss": None, "train_seconds": round(time.time() - started, 1), "history": [],
            "weights_sha256": sha, "parameters": int(np.prod(bank.shape)), "threads": config.threads, "device": "cpu"}
