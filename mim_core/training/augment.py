"""Training augmentation, seeded by an explicit ``torch.Generator`` (no global RNG)."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand(1, generator=generator).item()


def augment(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random view of a (3, H, W) image in [0, 1] -> (3, size, size).

    A random square crop of 40-85 % of the short side (analysis uses the central 55 %), random flips
    and quarter turns (skin photos have no canonical orientation), and mild brightness / contrast /
    saturation jitter (lighting and cameras vary; lesion colour must not be erased).
    """
    _, height, width = image.shape
    side = int(min(height, width) * _uniform(0.4, 0.85, generator))
    top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
    view = TF.resized_crop(image, top, left, side, side, [size, size], antialias=True)
    if torch.rand(1, generator=generator).item() < 0.5:
        view = view.flip(-1)
    view = torch.rot90(view, int(torch.randint(0, 4, (1,), generator=generator)), dims=(-2, -1))
    view = TF.adjust_brightness(view, _uniform(0.85, 1.15, generator))
    view = TF.adjust_contrast(view, _uniform(0.85, 1.15, generator))
    view = TF.adjust_saturation(view, _uniform(0.85, 1.15, generator))
    return view.clamp(0, 1)

