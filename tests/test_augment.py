"""Training augmentation: the tile shuffle of the background reference inpainter."""

import torch

from mim_core.training.augment import shuffle_tiles


def test_shuffle_tiles_keeps_every_pixel_and_moves_tiles():
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    out = shuffle_tiles(images, 4, torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    assert not torch.equal(out, images)
    for original, shuffled in zip(images, out):
        # the same multiset of pixels, and every output tile is one of the input tiles
        assert torch.equal(original.flatten().sort().values, shuffled.flatten().sort().values)
        tiles = {original[:, r:r + 32, c:c + 32].numpy().tobytes() for r in range(0, 128, 32) for c in range(0, 128, 32)}
        assert all(shuffled[:, r:r + 32, c:c + 32].numpy().tobytes() in tiles
                   for r in range(0, 128, 32) for c in range(0, 128, 32))


def test_shuffle_tiles_is_seeded():
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a = shuffle_tiles(images, 8, torch.Generator().manual_seed(5))
    b = shuffle_tiles(images, 8, torch.Generator().manual_seed(5))
    c = shuffle_tiles(images, 8, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
