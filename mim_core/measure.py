"""Measures: per-pixel dissimilarity maps, generic fills that know nothing of mpox, image scores, and
the heatmap colouring.

Maps are (B, 1, H, W), >= 0, higher = more dissimilar:

- ``l1``: mean absolute colour difference, in [0, 1].
- ``ssim``: (1 - SSIM) / 2 with an 11 px Gaussian window (kornia), in [0, 1].
- ``msgms``: 1 - multi-scale gradient-magnitude similarity (as in RIAD), in [0, 1].
"""

from __future__ import annotations

import math

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps

MAP_KINDS = ("l1", "ssim", "msgms")
HEATMAP_COLORMAP = "inferno"


def _gray(image: torch.Tensor) -> torch.Tensor:
    return image.mean(dim=1, keepdim=True)


def _gms(a: torch.Tensor, b: torch.Tensor, c: float = 0.0026) -> torch.Tensor:
    ga, gb = kornia.filters.sobel(a), kornia.filters.sobel(b)
    return (2 * ga * gb + c) / (ga**2 + gb**2 + c)


def dissimilarity_map(original: torch.Tensor, recon: torch.Tensor, kind: str) -> torch.Tensor:
    """(B,3,H,W) x2 in [0,1] -> (B,1,H,W) dissimilarity of ``kind`` (see module doc)."""
    if kind == "l1":
        return (original - recon).abs().mean(dim=1, keepdim=True)
    if kind == "ssim":
        ssim = kornia.metrics.ssim(original, recon, window_size=11)
        return ((1 - ssim) / 2).mean(dim=1, keepdim=True).clamp_min(0)
    if kind == "msgms":
        a, b = _gray(original), _gray(recon)
        size = a.shape[-2:]
        total = torch.zeros_like(a)
        for level in range(4):
            if level:
                a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            total += F.interpolate(1 - _gms(a, b), size=size, mode="bilinear", align_corners=False)
        return (total / 4).clamp_min(0)
    raise ValueError(f"unknown map kind {kind!r}; choose one of {MAP_KINDS}")


def gaussian_fill(image: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Classical inpainting by normalised convolution: each hidden pixel becomes the Gaussian-weighted
    mean of known pixels nearby (global known mean where none is near). (B,3,H,W), (B,1,H,W) -> (B,3,H,W)."""
    kernel = 2 * int(math.ceil(3 * sigma)) + 1
    known = 1 - mask
    blur = lambda t: kornia.filters.gaussian_blur2d(t, (kernel, kernel), (sigma, sigma), border_type="constant")
    weight = blur(known)
    fill = blur(image * known) / weight.clamp_min(1e-6)
    mean = (image * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    trust = (weight / 1e-3).clamp(max=1)
    fill = trust * fill + (1 - trust) * mean
    return mask * fill + known * image


def mean_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden pixels set to the mean colour of the known pixels. Shapes as :func:`gaussian_fill`."""
    known = 1 - mask
    mean = (image * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    return mask * mean + known * image


def log_ratio(error: float, reference: float, floor: float = 1e-6) -> float:
    """log(error / reference): > 0 when the model fills worse than the reference."""
    return math.log(max(error, floor)) - math.log(max(reference, floor))


def colorize_heatmap(heatmap: np.ndarray, vmax: float) -> np.ndarray:
    """(H,W) map on the fixed scale [0, vmax] -> (H,W,3) uint8 with the ``inferno`` colour map.

    The scale is fixed per model (its card's ``measure.heatmap_max``), not stretched per image, so the
    same colour means the same dissimilarity on every photo.
    """
    normalised = np.clip(heatmap / max(vmax, 1e-12), 0.0, 1.0)
    return (colormaps[HEATMAP_COLORMAP](normalised)[..., :3] * 255).astype(np.uint8)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, vmax: float, alpha: float = 0.55) -> np.ndarray:
    """Blend the coloured heatmap over an (H,W,3) uint8 image."""
    coloured = colorize_heatmap(heatmap, vmax).astype(np.float32)
    return (alpha * coloured + (1 - alpha) * image.astype(np.float32)).astype(np.uint8)
