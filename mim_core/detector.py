"""The detector API: ``MIMDetector.load(path).analyze(image) -> Analysis``.

An analysis masks the preprocessed photo with every mask of the fixed bank, inpaints each masked copy,
composites one reconstruction per scale (each pixel comes from the one mask that hid it), and measures
its dissimilarity to the original. Score: higher = less mpox-like.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .checkpoint import WeightsError, card_threshold, load_card, load_generator
from .config import MIMConfig
from .data import decode_image, preprocess
from .masks import grid_mask_bank
from .measure import dissimilarity_map, gaussian_fill, log_ratio, mean_fill, overlay_heatmap
from .model import inpaint

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray


class Verdict(str, Enum):
    MPOX_LIKE = "mpox-like"
    NOT_MPOX_LIKE = "not mpox-like"
    UNUSABLE = "not a usable skin photo"


# Basic image checks, on the preprocessed crop. Deliberately loose: they catch flat, blank, grayscale or
# non-skin pictures, not poor photos of skin.
MIN_LUMA_STD = 0.03
MIN_SKIN_FRACTION = 0.03  # 2 of 34 mpox crops fell below 0.15 in a check; 1st percentile ~0.002
MIN_MEAN_SATURATION = 0.04


def skin_fraction(crop: np.ndarray) -> float:
    """Share of pixels of an (H,W,3) uint8 image inside the classic YCrCb skin-tone box
    (Cr 133-173, Cb 77-127; Chai & Ngan 1999). Crude, but model-free."""
    ycbcr = np.asarray(Image.fromarray(crop).convert("YCbCr"), dtype=np.int16)
    cb, cr = ycbcr[..., 1], ycbcr[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())


def quality_issue(crop: np.ndarray) -> str | None:
    """Why an (H,W,3) uint8 crop is not a usable skin photo, or None when it passes the checks."""
    pixels = crop.astype(np.float32) / 255.0
    if pixels.mean(axis=2).std() < MIN_LUMA_STD:
        return "The picture is almost flat (no visible detail); take a sharp, well-lit photo of the skin."
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    if spread.mean() < MIN_MEAN_SATURATION:
        return "The picture has no colour (grayscale?); a colour photo of the skin is needed."
    if skin_fraction(crop) < MIN_SKIN_FRACTION:
        return "Little or no skin is visible in the centre of the picture; centre the photo on the affected skin."
    return None


@dataclass(frozen=True)
class Analysis:
    """What one analysis produced. Images are uint8 (H, W, 3) at model resolution; maps float32 (H, W)."""

    score: float
    threshold: float
    verdict: Verdict
    reason: str
    original: np.ndarray
    masked: np.ndarray = field(repr=False)  # (S, H, W, 3): the first mask of each scale, hidden cells grey
    inpainted: np.ndarray = field(repr=False)  # (S, H, W, 3): composite reconstruction per scale
    scale_heatmaps: np.ndarray = field(repr=False)  # (S, H, W)
    scales: tuple[int, ...] = ()
    heatmap_max: float = 1.0

    @property
    def heatmap(self) -> np.ndarray:
        """Dissimilarity map averaged over scales, (H, W)."""
        return self.scale_heatmaps.mean(axis=0)

    def heatmap_overlay(self, scale_index: int | None = None) -> np.ndarray:
        """Heatmap on the fixed colour scale blended over the original, (H, W, 3) uint8."""
        heat = self.heatmap if scale_index is None else self.scale_heatmaps[scale_index]
        return overlay_heatmap(self.original, heat, self.heatmap_max)

    def summary(self) -> dict[str, Any]:
        return {"score": round(self.score, 6), "threshold": round(self.threshold, 6),
                "verdict": self.verdict.value, "reason": self.reason}


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [0,1] -> (..., H, W, 3) uint8."""
    return (t.clamp(0, 1).movedim(-3, -1) * 255 + 0.5).to(torch.uint8).numpy()


def reconstruct(fill, images: torch.Tensor, bank: torch.Tensor, cells: Sequence[int]) -> torch.Tensor:
    """Composite reconstruction per scale.

    Args:
        fill: callable (images (M,3,H,W), masks (M,1,H,W), cell sizes (M,)) -> composited fills (M,3,H,W).
        images: (B, 3, H, W) in [0, 1].
        bank: (S, N, 1, H, W) masks; the N masks of a scale partition the pixels.
        cells: the S grid cell sizes of the bank.
    Returns:
        (B, S, 3, H, W): for each scale, every pixel taken from the fill of the mask that hid it.
    """
    scales, per_scale = bank.shape[:2]
    masks = bank.flatten(0, 1)  # (S*N, 1, H, W)
    mask_cells = torch.tensor(cells, device=bank.device).repeat_interleave(per_scale)
    out = []
    for image in images:
        copies = image.unsqueeze(0).expand(masks.shape[0], -1, -1, -1)
        filled = fill(copies, masks, mask_cells) * masks  # keep only the hidden part of each fill
        out.append(filled.view(scales, per_scale, *filled.shape[1:]).sum(1))
    return torch.stack(out)


def load_background(path: Path, config: MIMConfig, sha256: str | None) -> torch.nn.Module:
    """The background reference inpainter named by a card; it must share the model's crop and masks."""
    background, ref_config = load_generator(path, sha256)
    if (ref_config.preprocess, ref_config.masks) != (config.preprocess, config.masks):
        raise WeightsError(f"{path} was trained with another crop or mask bank than the model it serves.")
    return background


def gaussian_reference(images: torch.Tensor, masks: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """The mpox-agnostic reference fill for :func:`reconstruct`: Gaussian fill with sigma = cell / 2."""
    out = torch.empty_like(images)
    for cell in cells.unique().tolist():
        rows = cells == cell
        out[rows] = gaussian_fill(images[rows], masks[rows], sigma=cell / 2)
    return out


class MIMDetector:
    """Mask, inpaint, measure. Build with :meth:`load`; thread-safe for concurrent ``analyze`` calls."""

    def __init__(self, generator: torch.nn.Module, config: MIMConfig, threshold: float,
                 card: dict[str, Any] | None = None, background: torch.nn.Module | None = None,
                 device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.generator = generator.eval().to(self.device, memory_format=torch.channels_last)
        self.background = None if background is None else background.eval().to(self.device)
        self.config = config
        self.threshold = float(threshold)
        self.card = card or {}
        self.bank = grid_mask_bank(config.masks, config.preprocess.size).to(self.device)
        if config.measure.reference == "background" and self.background is None:
            raise WeightsError("This model's measure needs its background reference inpainter; load it with "
                               "MIMDetector.load so the card's reference weights are read.")

    @classmethod
    def load(cls, weights: str | os.PathLike, threads: int | None = None,
             require_threshold: bool = True, device: str = "cpu") -> "MIMDetector":
        """Load weights + the card beside them, verifying the weights' sha256 against the card.

        A card whose measure uses the ``background`` reference names that inpainter's weights (a file in
        the same folder) and their sha256 under ``reference``; both are verified too.
        ``require_threshold=False`` is only for calibration itself (the threshold is then NaN, and no
        verdict should be read).

        Raises:
            WeightsError: missing card or weights, a sha256 mismatch, or a card without a threshold
                (which would otherwise call every photo mpox-like).
        """
        if threads:
            torch.set_num_threads(threads)
        card = load_card(weights)
        generator, trained = load_generator(weights, card.get("weights_sha256"))
        config = MIMConfig.from_dict(card["config"]) if "config" in card else trained
        threshold = card_threshold(card, weights, require_threshold,
                                   "run `python -m mim_core evaluate --select-on-dev` or retrain to set one")
        background = None
        if config.measure.reference == "background":
            ref = card.get("reference") or {}
            if "weights" not in ref:
                raise WeightsError(f"The model card of {weights} uses a background reference but names no "
                                   "reference weights.")
            background = load_background(Path(weights).parent / ref["weights"], config, ref.get("weights_sha256"))
        return cls(generator, config, threshold, card, background, device)

    def _fill(self, images: torch.Tensor, masks: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        # channels_last for every operand: mixed memory formats make cat and elementwise ops copy
        channels_last = torch.channels_last
        return inpaint(self.generator, images.contiguous(memory_format=channels_last),
                       masks.contiguous(memory_format=channels_last))

    def _background_fill(self, images: torch.Tensor, masks: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        return inpaint(self.background, images, masks)

    def reconstructions(self, images: torch.Tensor, fills: Sequence[str]) -> dict[str, torch.Tensor]:
        """(B,3,H,W) preprocessed -> {fill: (B,S,3,H,W)} on the detector's device.

        Fills: ``gan`` (the mpox inpainter), ``gauss`` (mpox-agnostic Gaussian fill), ``background``
        (the tile-shuffled reference inpainter, when loaded), ``mean`` (each mask's mean known colour).
        """
        functions = {"gan": self._fill, "gauss": gaussian_reference, "background": self._background_fill,
                     "mean": lambda x, m, c: mean_fill(x, m)}
        images = images.to(self.device)
        cells = self.config.masks.scales
        return {name: reconstruct(functions[name], images, self.bank, cells) for name in fills}

    @torch.inference_mode()
    def score_tensors(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(B,3,H,W) preprocessed -> (recon (B,S,3,H,W), maps (B,S,H,W), scores (B,)), on the CPU."""
        measure = self.config.measure
        if measure.reference not in ("none", "gauss", "background"):
            raise ValueError(f"unknown reference {measure.reference!r}")
        fills = self.reconstructions(images, ["gan"] + ([] if measure.reference == "none" else [measure.reference]))
        recon = fills["gan"]
        b, s = recon.shape[:2]
        originals = images.to(self.device).unsqueeze(1).expand_as(recon).flatten(0, 1)
        maps = dissimilarity_map(originals, recon.flatten(0, 1), measure.map).view(b, s, *images.shape[-2:])
        errors = maps.mean(dim=(1, 2, 3)).cpu().numpy()
        if measure.reference == "none":
            scores = errors.astype(np.float64)
        else:
            ref_maps = dissimilarity_map(originals, fills[measure.reference].flatten(0, 1), measure.map)
            ref_errors = ref_maps.view(b, -1).mean(1).cpu().numpy()
            scores = np.array([log_ratio(e, r) for e, r in zip(errors, ref_errors)])
        return recon.cpu(), maps.cpu(), scores

    def analyze(self, image: ImageInput) -> Analysis:
        """Analyse one photo (path, bytes, PIL image or (H,W,3) uint8 array).

        Raises:
            ImageDecodeError: the input cannot be read as a photo (message is user-facing).
        """
        return self.analyze_batch([image])[0]

    def analyze_batch(self, images: Sequence[ImageInput]) -> list[Analysis]:
        """Analyse several photos; raises ImageDecodeError on the first unreadable one (the CLI and demo
        decode first to report each bad file separately)."""
        pil = [decode_image(Image.fromarray(x) if isinstance(x, np.ndarray) else x) for x in images]
        tensors = torch.stack([preprocess(p, self.config.preprocess) for p in pil])
        recon, maps, scores = self.score_tensors(tensors)
        grey = torch.full_like(tensors[:1], 0.5)
        first_masks = self.bank[:, 0].cpu()  # (S, 1, H, W)
        results = []
        for i, score in enumerate(scores):
            original = _to_uint8(tensors[i])
            masked = _to_uint8(first_masks * grey + (1 - first_masks) * tensors[i : i + 1])
            issue = quality_issue(original)
            if issue:
                verdict, reason = Verdict.UNUSABLE, issue
            elif score > self.threshold:
                verdict, reason = Verdict.NOT_MPOX_LIKE, (
                    "The model could not reproduce this skin the way it reproduces mpox lesions.")
            else:
                verdict, reason = Verdict.MPOX_LIKE, (
                    "The model reproduces this skin as well as it reproduces mpox lesions it was calibrated on.")
            results.append(Analysis(
                score=float(score), threshold=self.threshold, verdict=verdict, reason=reason, original=original,
                masked=masked, inpainted=_to_uint8(recon[i]), scale_heatmaps=maps[i].numpy().astype(np.float32),
                scales=tuple(self.config.masks.scales), heatmap_max=self.config.measure.heatmap_max,
            ))
        return results
