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


def shuffle_tiles(images: torch.Tensor, grid: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) -> same shape with each image's ``grid`` x ``grid`` tiles in a random order.

    H and W must be divisible by ``grid``. Keeps every pixel (colour, fine texture) and destroys the
    arrangement above tile scale (lesion shape, layout).
    """
    b, c, h, w = images.shape
    if grid < 1 or h % grid or w % grid:
        raise ValueError(f"tile_shuffle {grid} must divide the training crop size {h}x{w}")
    th, tw = h // grid, w // grid
    tiles = images.view(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, c, th, tw)
    order = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(b)])
    tiles = tiles[torch.arange(b).unsqueeze(1), order]
    return tiles.view(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
