"""Controls that know nothing of mpox lesions, computed on the same preprocessed crops as MIM.

A MIM number means something only when it beats these:

- ``png_bits_per_pixel``: image complexity (lossless compressed size); its inverse is a control.
- fills (:mod:`.measure`): a Gaussian "inpainter" and a mean-colour fill in place of the GAN.
- :class:`ColourStatsDetector`: a one-class Gaussian on global colour and texture statistics of the
  mpox train crops (Ledoit-Wolf covariance), scored by Mahalanobis distance.
"""

from __future__ import annotations

import io

import kornia
import numpy as np
import torch
from PIL import Image
from sklearn.covariance import LedoitWolf


def png_bits_per_pixel(crop: np.ndarray) -> float:
    """Lossless PNG size of an (H,W,3) uint8 image in bits per pixel: a generic complexity measure."""
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.tell() * 8 / (crop.shape[0] * crop.shape[1])


def colour_texture_features(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [0,1] -> (B, 20) features: mean and std of RGB and HSV channels, mean and std of
    gradient magnitude at two scales, and Laplacian energy at two scales."""
    hsv = kornia.color.rgb_to_hsv(images)
    hsv[:, 0] = hsv[:, 0] / (2 * np.pi)
    gray = images.mean(1, keepdim=True)
    parts = [images.mean((2, 3)), images.std((2, 3)), hsv.mean((2, 3)), hsv.std((2, 3))]
    for level in range(2):
        g = gray if level == 0 else torch.nn.functional.avg_pool2d(gray, 2)
        grad = kornia.filters.sobel(g)
        lap = kornia.filters.laplacian(g, 3)
        parts += [grad.mean((1, 2, 3))[:, None], grad.std((1, 2, 3))[:, None], (lap**2).mean((1, 2, 3))[:, None].sqrt()]
    return torch.cat(parts, dim=1).numpy().astype(np.float64)


class ColourStatsDetector:
    """One-class Gaussian on :func:`colour_texture_features`; score = Mahalanobis distance (higher =
    less like the training photos)."""

    def __init__(self, train_features: np.ndarray) -> None:
        self.mean = train_features.mean(0)
        self.scale = train_features.std(0) + 1e-8
        self.model = LedoitWolf().fit((train_features - self.mean) / self.scale)

    def score(self, features: np.ndarray) -> np.ndarray:
        return np.sqrt(self.model.mahalanobis((features - self.mean) / self.scale))
