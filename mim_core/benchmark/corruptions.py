"""Seeded image corruptions for the robustness benchmark ("real-world noise").

Most corruptions act on the model's view: the central crop at model resolution ((H, W, 3) uint8, what
:func:`mim_core.data.preprocess` hands every model), so a severity means the same thing for a 224 px MSLD
crop and a 640 px DermNet photo. Two act on the whole photo before the crop: rotation (as a tilted camera
would; no fill colour enters the view up to 45 degrees) and ``jpeg_photo``, a JPEG round trip of the
photo as sent (what a messaging app does). The view-level ``jpeg`` puts its 8 px blocks exactly on the
view's pixel grid, and so on the 8 px cells of MIM's mask bank: a harsher test than real compression.

Each is a pure function of (image, severity, seed): random draws come from
``np.random.default_rng([seed, ...])``, never from a global RNG. Severities run 1 (mild) to 5 (severe);
the benchmark uses 1-3 by default.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ..config import PreprocessConfig
from ..data import jpeg_round_trip, preprocess, to_uint8

SEVERITIES = (1, 2, 3, 4, 5)
NOISE_SIGMA = (0.04, 0.08, 0.12, 0.18, 0.26)  # std of additive Gaussian noise, image range [0, 1]
BLUR_SIGMA = (0.75, 1.5, 2.5, 3.5, 5.0)  # Gaussian blur sigma in view pixels
JPEG_QUALITY = (40, 20, 10, 6, 3)
BRIGHTNESS = (1.15, 1.3, 1.45, 1.6, 1.8)  # over-exposed and washed out: brighter ...
CONTRAST = (0.8, 0.6, 0.45, 0.3, 0.2)  # ... and flatter with severity
ROTATION_DEGREES = (10, 20, 30, 40, 45)  # sign drawn from the seed
DOWNSCALE = (0.5, 0.33, 0.25, 0.18, 0.12)  # fraction of the view's side kept, then resized back (bicubic)


def _check(severity: int) -> int:
    if severity not in SEVERITIES:
        raise ValueError(f"Severity must be one of {SEVERITIES}, not {severity!r}.")
    return severity - 1


def add_noise(view: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 -> same, plus Gaussian noise of ``std`` (image range [0, 1]) drawn from ``rng``."""
    return (np.clip(view / 255.0 + rng.normal(0.0, std, view.shape), 0, 1) * 255).round().astype(np.uint8)


def gaussian_noise(view: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 -> same, plus Gaussian noise (std NOISE_SIGMA[severity]) drawn from the seed."""
    return add_noise(view, NOISE_SIGMA[_check(severity)], np.random.default_rng([seed, 1, severity]))


def gaussian_blur(view: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 -> Gaussian-blurred copy, sigma BLUR_SIGMA[severity], kernel +-3 sigma, reflected
    borders (deterministic; the seed is unused). PIL's GaussianBlur is not used: below radius 1 it
    leaves the image almost untouched."""
    sigma = BLUR_SIGMA[_check(severity)]
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    blurred = TF.gaussian_blur(view_tensor(view), [kernel, kernel], [sigma, sigma])
    return (blurred.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def jpeg(view: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the same after a JPEG round trip at JPEG_QUALITY[severity] (4:2:0 chroma)."""
    return np.asarray(jpeg_round_trip(Image.fromarray(view), JPEG_QUALITY[_check(severity)]))


def brightness_contrast(view: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 -> contrast scaled about the mean grey level, then brightness scaled."""
    index = _check(severity)
    pixels = view.astype(np.float64) / 255.0
    mean = pixels.mean()
    out = ((pixels - mean) * CONTRAST[index] + mean) * BRIGHTNESS[index]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def downscale(view: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 -> shrunk to DOWNSCALE[severity] of its side (area) and resized back (bicubic)."""
    factor = DOWNSCALE[_check(severity)]
    image = Image.fromarray(view)
    small = image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))),
                         Image.Resampling.BOX)
    return np.asarray(small.resize(image.size, Image.Resampling.BICUBIC))


def jpeg_photo(photo: Image.Image, severity: int, seed: int) -> Image.Image:
    """Whole RGB photo -> the same after a JPEG round trip at JPEG_QUALITY[severity] (4:2:0 chroma)."""
    return jpeg_round_trip(photo, JPEG_QUALITY[_check(severity)])


def rotate_photo(photo: Image.Image, severity: int, seed: int) -> Image.Image:
    """Whole RGB photo -> rotated about its centre by ROTATION_DEGREES[severity], direction drawn from the
    seed (bicubic, same canvas size; the central crop of preprocessing stays inside the photo)."""
    degrees = ROTATION_DEGREES[_check(severity)]
    sign = 1 if np.random.default_rng([seed, 6, severity]).random() < 0.5 else -1
    return photo.rotate(sign * degrees, resample=Image.Resampling.BICUBIC, expand=False)


VIEW_CORRUPTIONS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "jpeg": jpeg,
    "brightness_contrast": brightness_contrast,
    "downscale": downscale,
}
PHOTO_CORRUPTIONS: dict[str, Callable[[Image.Image, int, int], Image.Image]] = {
    "rotation": rotate_photo,
    "jpeg_photo": jpeg_photo,
}
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "jpeg", "jpeg_photo", "brightness_contrast", "rotation",
               "downscale")


def describe(name: str, severity: int) -> str:
    """A short human-readable description of one corruption at one severity."""
    i = _check(severity)
    return {
        "gaussian_noise": f"Gaussian noise, std {NOISE_SIGMA[i]}",
        "gaussian_blur": f"Gaussian blur, sigma {BLUR_SIGMA[i]} px",
        "jpeg": f"JPEG quality {JPEG_QUALITY[i]} of the view",
        "jpeg_photo": f"JPEG quality {JPEG_QUALITY[i]} of the photo",
        "brightness_contrast": f"contrast x{CONTRAST[i]}, brightness x{BRIGHTNESS[i]}",
        "rotation": f"rotation {ROTATION_DEGREES[i]} deg",
        "downscale": f"downscale to {DOWNSCALE[i]:.0%} and back",
    }[name]


def to_view(photo: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """RGB photo -> the model's view as (size, size, 3) uint8."""
    return to_uint8(preprocess(photo, config))


def corrupted_view(photo: Image.Image, name: str, severity: int, seed: int, config: PreprocessConfig) -> np.ndarray:
    """The model's view of ``photo`` under one corruption, (size, size, 3) uint8.

    ``seed`` should differ per image (e.g. ``[benchmark seed, image index]`` folded into one int) so
    that noise is not identical across images; the same arguments always give the same pixels.
    """
    if name in PHOTO_CORRUPTIONS:
        return to_view(PHOTO_CORRUPTIONS[name](photo, severity, seed), config)
    if name not in VIEW_CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}.")
    return VIEW_CORRUPTIONS[name](to_view(photo, config), severity, seed)


def view_tensor(view: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1], the models' input."""
    return torch.from_numpy(view.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
