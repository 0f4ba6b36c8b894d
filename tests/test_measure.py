import math

import kornia
import numpy as np
import torch

from mim_core.measure import (MAP_KINDS, colorize_heatmap, dissimilarity_map, gaussian_blur, gaussian_fill, mean_fill,
                              mim_score, score_map)


def test_identical_images_have_zero_dissimilarity_and_noise_does_not():
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    noisy = (image + 0.2 * torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    for kind in MAP_KINDS:
        same = dissimilarity_map(image, image, kind)
        assert same.shape == (2, 1, 64, 64) and same.abs().max() < 1e-4, kind
        assert dissimilarity_map(image, noisy, kind).mean() > 0.02, kind


def test_fills_keep_known_pixels_and_fill_flat_images_exactly():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    flat = torch.full((1, 3, 64, 64), 0.3)
    for filled in (gaussian_fill(flat, mask, 8.0), mean_fill(flat, mask)):
        assert torch.allclose(filled, flat, atol=1e-5)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    filled = gaussian_fill(image, mask, 4.0)
    assert torch.equal(filled[..., :16, :], image[..., :16, :])


def test_gaussian_blur_is_kornias_with_zero_borders():
    images = torch.rand(2, 4, 40, 56, generator=torch.Generator().manual_seed(3))
    for sigma in (0.7, 2.0, 4.0, 12.0):  # 12: a kernel wider than the image
        kernel = 2 * math.ceil(3 * sigma) + 1
        expected = kornia.filters.gaussian_blur2d(images, (kernel, kernel), (sigma, sigma), border_type="constant")
        assert torch.allclose(gaussian_blur(images, sigma), expected, atol=1e-6)


def test_heatmap_colour_scale_is_fixed_not_per_image():
    low = colorize_heatmap(np.full((4, 4), 0.1, dtype=np.float32), vmax=0.25, diverging=False)
    high = colorize_heatmap(np.full((4, 4), 0.2, dtype=np.float32), vmax=0.25, diverging=False)
    assert low.dtype == np.uint8 and low.shape == (4, 4, 3)
    assert not np.array_equal(low, high)  # a per-image stretch would make both the same colour
    assert np.array_equal(colorize_heatmap(np.full((2, 2), 9.0), 0.25, False),
                          colorize_heatmap(np.full((2, 2), 0.25), 0.25, False))


def test_diverging_scale_is_white_at_zero_blue_when_worse_orange_when_better():
    worse, zero, better = (colorize_heatmap(np.full((1, 1), v), 1.0, diverging=True)[0, 0].astype(int)
                           for v in (1.0, 0.0, -1.0))
    assert zero.min() > 240  # "as well reproduced as the reference" is white
    assert worse[2] > worse[0] + 60 and better[0] > better[2] + 60  # blue: less mpox-like; orange: more
    assert np.array_equal(colorize_heatmap(np.full((1, 1), -5.0), 1.0, True),
                          colorize_heatmap(np.full((1, 1), -1.0), 1.0, True))  # clipped at the fixed ends


def test_score_is_the_mean_of_its_map_for_every_reference():
    gen = torch.Generator().manual_seed(0)
    gan, ref = torch.rand(3, 2, 8, 8, generator=gen), torch.rand(3, 2, 8, 8, generator=gen) + 0.1
    for reference in (None, ref):
        maps = score_map(gan, reference)
        scores = mim_score(gan.mean((1, 2, 3)).double().numpy(),
                           None if reference is None else reference.mean((1, 2, 3)).double().numpy())
        assert np.allclose(maps.mean((1, 2, 3)).numpy(), scores, rtol=0, atol=1e-6)
    assert float(mim_score(0.2, 0.2)) == 0.0 and float(mim_score(0.3, 0.2)) > 0 > float(mim_score(0.1, 0.2))
