import numpy as np
import torch

from mim_core.measure import MAP_KINDS, colorize_heatmap, dissimilarity_map, gaussian_fill, mean_fill


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


def test_heatmap_colour_scale_is_fixed_not_per_image():
    low = colorize_heatmap(np.full((4, 4), 0.1, dtype=np.float32), vmax=0.25)
    high = colorize_heatmap(np.full((4, 4), 0.2, dtype=np.float32), vmax=0.25)
    assert low.dtype == np.uint8 and low.shape == (4, 4, 3)
    assert not np.array_equal(low, high)  # a per-image stretch would make both the same colour
    assert np.array_equal(colorize_heatmap(np.full((2, 2), 9.0), 0.25), colorize_heatmap(np.full((2, 2), 0.25), 0.25))
