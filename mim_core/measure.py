"""Measures: per-pixel dissimilarity maps, generic fills that know nothing of mpox, the score and its
map, and the map's colouring.

Dissimilarity maps are (B, 1, H, W), >= 0, higher = more dissimilar:

- ``l1``: mean absolute colour difference, in [0, 1].
- ``ssim``: (1 - SSIM) / 2 with an 11 px Gaussian window (kornia), in [0, 1].
- ``msgms``: 1 - multi-scale gradient-magnitude similarity (as in RIAD), in [0, 1].

**The score is the mean of its own map** (:func:`score_map`). Without a reference fill the map is the
inpainter's dissimilarity itself. With the reference (a Gaussian fill on the same masks), each pixel
contributes ``(e_gan - e_ref) / mean(e_ref)``: 0 where the inpainter reproduces the photo exactly as
well as the reference does, > 0 where worse, < 0 where better. Its mean is
``mean(e_gan) / mean(e_ref) - 1`` (:func:`mim_score`), so a hot region of the map is exactly what raised
the score. Higher score = less mpox-like.
"""

from __future__ import annotations

import functools
import math

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap
from numpy.typing import ArrayLike

MAP_KINDS = ("l1", "ssim", "msgms")
REFERENCES = ("none", "gauss")
HEATMAP_COLORMAP = "inferno"  # a measure without reference: 0 = reproduced exactly
# With a reference: orange = reproduced better than the reference (more mpox-like), white = as well, blue =
# worse (less mpox-like). ColorBrewer's PuOr orange half and RdBu blue half: the demo's score bar and verdict
# card take their two colours from this map, so one colour means one direction everywhere.
DIVERGING_COLORMAP = LinearSegmentedColormap.from_list("mim_orange_white_blue", [
    "#7f3b08", "#b35806", "#e08214", "#fdb863", "#fee0b6", "#f7f7f7",
    "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061"])


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


DENOISERS = ("none", "wiener")
WIENER_WINDOW = 5  # px
MIN_NOISE_SIGMA = 1e-3  # a quarter of a grey level


def wiener_denoise(images: torch.Tensor, noise_sigmas: ArrayLike) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> the same after a local Wiener filter per channel (5x5 window), given each
    view's per-channel noise sigma (B,): flat regions are averaged, edges whose local variance exceeds the
    noise power are kept. Chosen over Gaussian, median, bilateral, total-variation, non-local-means and
    wavelet shrinkage on dev (docs/ablations.md).

    The formula of ``scipy.signal.wiener`` (local mean m and variance v; ``m + (x - m)(1 - noise / v)``,
    or ``m`` where ``v < noise``), computed with average pooling in float64 on reflected borders: the same
    output to float32 rounding (tests/test_denoise.py checks it against scipy), 10x faster on a 128 px view.
    """
    # a floor on the noise power: with none, a flat patch (zero local variance) gives 0/0
    powers = np.maximum(np.atleast_1d(np.asarray(noise_sigmas, dtype=np.float64)), MIN_NOISE_SIGMA) ** 2
    power = torch.from_numpy(powers).view(-1, 1, 1, 1)
    pad = WIENER_WINDOW // 2  # reflected borders: zero padding (scipy's) would darken the edges
    padded = F.pad(images.detach().cpu().double(), (pad,) * 4, mode="reflect")
    mean = F.avg_pool2d(padded, WIENER_WINDOW, stride=1)
    variance = F.avg_pool2d(padded * padded, WIENER_WINDOW, stride=1) - mean * mean
    x = padded[..., pad:-pad, pad:-pad]
    out = torch.where(variance < power, mean, mean + (x - mean) * (1 - power / variance))  # flat: the local mean
    return out.clamp(0, 1).to(images)


@functools.lru_cache(maxsize=32)
def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, size) banded matrix B with ``B @ x`` = x blurred along its rows by kornia's Gaussian kernel of
    ``sigma`` (2 ceil(3 sigma) + 1 taps), zero outside the image."""
    kernel = 2 * int(math.ceil(3 * sigma)) + 1
    taps = kornia.filters.get_gaussian_kernel1d(kernel, sigma)[0]
    offsets = torch.arange(size)[None, :] - torch.arange(size)[:, None] + kernel // 2
    inside = (offsets >= 0) & (offsets < kernel)
    matrix = torch.zeros(size, size)
    matrix[inside] = taps[offsets[inside]]
    return matrix


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(..., H, W) -> the same blurred by a Gaussian of ``sigma``, zero outside the image: kornia's
    ``gaussian_blur2d(..., border_type="constant")`` to float rounding, as two matrix products (4x faster on
    the CPU for the 25-tap kernel of the analysis' 8 px cells)."""
    rows = _blur_matrix(images.shape[-2], float(sigma)).to(images)
    columns = _blur_matrix(images.shape[-1], float(sigma)).to(images)
    return rows @ images @ columns.T


def gaussian_fill(image: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Classical inpainting by normalised convolution: each hidden pixel becomes the Gaussian-weighted
    mean of known pixels nearby (global known mean where none is near). (B,3,H,W), (B,1,H,W) -> (B,3,H,W)."""
    known = 1 - mask
    blurred = gaussian_blur(torch.cat([image * known, known], dim=1), sigma)  # one pass for both
    weight = blurred[:, -1:]
    fill = blurred[:, :-1] / weight.clamp_min(1e-6)
    mean = (image * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    trust = (weight / 1e-3).clamp(max=1)
    fill = trust * fill + (1 - trust) * mean
    return mask * fill + known * image


def mean_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden pixels set to the mean colour of the known pixels. Shapes as :func:`gaussian_fill`."""
    known = 1 - mask
    mean = (image * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    return mask * mean + known * image


REFERENCE_FLOOR = 1e-6  # a reference error below this (a blank crop) cannot be divided by


def mim_score(gan_error: ArrayLike, reference_error: ArrayLike | None) -> ArrayLike:
    """MIM's score from mean errors over the whole mask bank: the one scoring rule every caller uses
    (detector, evaluation incl. re-used measurements, benchmark, demo).

    Args:
        gan_error: the inpainter's mean dissimilarity, a float, array or pandas Series.
        reference_error: the Gaussian fill's mean dissimilarity under the same masks and map kind, or
            None for a measure without reference.
    Returns:
        ``gan_error`` without a reference, else ``gan_error / reference_error - 1`` (elementwise); the mean
        of :func:`score_map`.
    """
    if reference_error is None:
        return gan_error
    return gan_error / np.maximum(reference_error, REFERENCE_FLOOR) - 1


def score_map(gan_maps: torch.Tensor, reference_maps: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel contributions to the score; their mean over (S, H, W) is :func:`mim_score` of the means.

    Args:
        gan_maps: (B, S, H, W) the inpainter's dissimilarity per mask scale.
        reference_maps: (B, S, H, W) the reference fill's, or None.
    Returns:
        (B, S, H, W): ``gan_maps`` without a reference, else ``(gan - ref) / mean(ref)`` with the mean
        taken per image over every scale and pixel.
    """
    if reference_maps is None:
        return gan_maps
    scale = reference_maps.mean(dim=(1, 2, 3), keepdim=True).clamp_min(REFERENCE_FLOOR)
    return (gan_maps - reference_maps) / scale


def colorize_heatmap(heatmap: np.ndarray, vmax: float, diverging: bool) -> np.ndarray:
    """(H,W) score map on a fixed scale -> (H,W,3) uint8.

    ``diverging`` (a measure with a reference): [-vmax, vmax] on :data:`DIVERGING_COLORMAP`, white at 0 =
    "reproduced as well as the reference", blue = worse (less mpox-like), orange = better. Otherwise [0, vmax] on
    ``inferno``. The scale is fixed per model (its card's ``measure.heatmap_max``), never stretched per
    image, so the same colour means the same contribution to the score on every photo.
    """
    vmax = max(vmax, 1e-12)
    if diverging:
        normalised = np.clip(0.5 + heatmap / (2 * vmax), 0.0, 1.0)
        return (DIVERGING_COLORMAP(normalised)[..., :3] * 255).astype(np.uint8)
    normalised = np.clip(heatmap / vmax, 0.0, 1.0)
    return (colormaps[HEATMAP_COLORMAP](normalised)[..., :3] * 255).astype(np.uint8)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, vmax: float, diverging: bool,
                    alpha: float = 0.6) -> np.ndarray:
    """Blend the coloured score map over an (H,W,3) uint8 image."""
    coloured = colorize_heatmap(heatmap, vmax, diverging).astype(np.float32)
    return (alpha * coloured + (1 - alpha) * image.astype(np.float32)).astype(np.uint8)
