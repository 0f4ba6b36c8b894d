import torch

from mim_core.config import MaskConfig
from mim_core.masks import grid_mask_bank, random_masks


def test_each_scale_covers_every_pixel_exactly_once():
    for config in (MaskConfig(), MaskConfig(scales=(7, 20), masks_per_scale=3, seed=5)):
        bank = grid_mask_bank(config, 128)
        assert bank.shape == (len(config.scales), config.masks_per_scale, 1, 128, 128)
        assert set(bank.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(bank.sum(dim=1), torch.ones(len(config.scales), 1, 128, 128))
        # no mask is empty: each hides about 1/N of the image
        hidden = bank.mean(dim=(2, 3, 4))
        assert (hidden > 0.5 / config.masks_per_scale).all()


def test_bank_is_fixed_by_seed():
    assert torch.equal(grid_mask_bank(MaskConfig(seed=3), 128), grid_mask_bank(MaskConfig(seed=3), 128))
    assert not torch.equal(grid_mask_bank(MaskConfig(seed=3), 128), grid_mask_bank(MaskConfig(seed=4), 128))


def test_random_masks_are_seeded_binary_and_partial():
    a = random_masks(16, 128, MaskConfig(), torch.Generator().manual_seed(1))
    b = random_masks(16, 128, MaskConfig(), torch.Generator().manual_seed(1))
    c = random_masks(16, 128, MaskConfig(), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    fraction = a.mean(dim=(1, 2, 3))
    assert (fraction > 0).all() and (fraction < 0.9).all()
