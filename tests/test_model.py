import torch

from mim_core.config import ModelConfig
from mim_core.masks import random_masks
from mim_core.config import MaskConfig
from mim_core.model import InpaintGenerator, PatchDiscriminator, inpaint


def test_composite_equals_input_outside_the_mask():
    torch.manual_seed(0)
    generator = InpaintGenerator(ModelConfig()).eval()
    image = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    mask = random_masks(3, 128, MaskConfig(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = inpaint(generator, image, mask)
    known = mask.expand_as(image) == 0
    assert torch.equal(out[known], image[known])
    assert not torch.equal(out[~known], image[~known])
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1


def test_generator_never_sees_hidden_pixels():
    generator = InpaintGenerator(ModelConfig()).eval()
    mask = random_masks(1, 128, MaskConfig(), torch.Generator().manual_seed(1))
    a = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    b = a * (1 - mask) + torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * mask
    with torch.no_grad():
        assert torch.allclose(generator(a, mask), generator(b, mask))


def test_discriminator_gives_patch_logits():
    disc = PatchDiscriminator(ModelConfig())
    logits = disc(torch.rand(2, 3, 128, 128), torch.zeros(2, 1, 128, 128))
    assert logits.shape == (2, 1, 16, 16)
