"""Masks. 1 = hidden (to inpaint), 0 = known, following lama's convention.

Analysis uses a fixed bank: at each grid scale the cells are dealt, in a seeded random order, into
``masks_per_scale`` disjoint masks, so that at every scale each pixel is hidden exactly once. Training
draws random masks from the same family so the generator sees what it will be asked to do.
"""

from __future__ import annotations

import torch

from .config import MaskConfig


def _cells_to_pixels(cells: torch.Tensor, cell: int, size: int) -> torch.Tensor:
    """(..., g, g) cell grid -> (..., size, size) pixel mask (crop when size is not a multiple)."""
    full = cells.repeat_interleave(cell, dim=-2).repeat_interleave(cell, dim=-1)
    return full[..., :size, :size]


def grid_mask_bank(config: MaskConfig, size: int) -> torch.Tensor:
    """Fixed analysis masks.

    Returns:
        float tensor (S, N, 1, size, size): S scales, N disjoint masks per scale; summing over N gives
        exactly 1 everywhere.
    """
    generator = torch.Generator().manual_seed(config.seed)
    bank = []
    for cell in config.scales:
        if cell <= 0 or cell > size:
            raise ValueError(f"mask scale {cell} must be in 1..{size}")
        grid = -(-size // cell)
        order = torch.randperm(grid * grid, generator=generator)
        owner = torch.empty(grid * grid, dtype=torch.long)
        owner[order] = torch.arange(grid * grid) % config.masks_per_scale
        owner = owner.view(grid, grid)
        masks = torch.stack([(owner == k).float() for k in range(config.masks_per_scale)])
        bank.append(_cells_to_pixels(masks, cell, size).unsqueeze(1))
    return torch.stack(bank)


def random_masks(
    batch: int, size: int, config: MaskConfig, generator: torch.Generator
) -> torch.Tensor:
    """Training masks (batch, 1, size, size): per sample a random grid scale and a random cell subset
    (each cell hidden with probability 1/N), plus, for a quarter of samples, a random rectangle so the
    generator also learns larger holes."""
    masks = torch.zeros(batch, 1, size, size)
    scales = torch.tensor(config.scales)
    picks = torch.randint(len(config.scales), (batch,), generator=generator)
    for i in range(batch):
        cell = int(scales[picks[i]])
        grid = -(-size // cell)
        hidden = (torch.rand(grid, grid, generator=generator) < 1.0 / config.masks_per_scale).float()
        masks[i, 0] = _cells_to_pixels(hidden, cell, size)
        if torch.rand(1, generator=generator).item() < 0.25:
            h, w = (torch.randint(size // 8, size // 3, (2,), generator=generator)).tolist()
            top, left = torch.randint(0, size - h, (1,), generator=generator).item(), torch.randint(
                0, size - w, (1,), generator=generator
            ).item()
            masks[i, 0, top : top + h, left : left + w] = 1.0
    return masks

