"""Pure ``nn.Module``s: the inpainting generator and the PatchGAN discriminator (no training glue here).

Images are (B, 3, H, W) in [0, 1]; masks (B, 1, H, W) with 1 = hidden. The generator sees the
masked image with the mask as a fourth channel and returns a full RGB prediction; callers composite
``mask * pred + (1 - mask) * image`` (see :func:`inpaint`).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .config import ModelConfig


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation),
        nn.GroupNorm(min(8, cout // 4), cout),
        nn.GELU(),
    )


class DilatedResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, dilation=dilation), _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class InpaintGenerator(nn.Module):
    """U-Net: three stride-2 stages to 1/8 resolution, dilated residual blocks there (a receptive field
    covering the whole 128 px crop), and skip connections back up."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        w = config.width
        self.stem = _conv(4, w, kernel=5)
        self.down1 = _conv(w, 2 * w, stride=2)
        self.down2 = _conv(2 * w, 4 * w, stride=2)
        self.down3 = _conv(4 * w, 4 * w, stride=2)
        self.body = nn.Sequential(
            *[DilatedResBlock(4 * w, dilation=2 ** (i % 3)) for i in range(config.bottleneck_blocks)]
        )
        self.up3 = _conv(8 * w, 4 * w)
        self.up2 = _conv(6 * w, 2 * w)
        self.up1 = _conv(3 * w, w)
        self.head = nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) image in [0,1], (B,1,H,W) mask -> (B,3,H,W) prediction in [0,1]; H, W multiples of 8."""
        s0 = _conv_of_concat(self.stem, (image - 0.5) * 2 * (1 - mask), mask)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        x = self.body(self.down3(s2))
        x = _conv_of_concat(self.up3, F.interpolate(x, scale_factor=2.0, mode="nearest"), s2)
        x = _conv_of_concat(self.up2, F.interpolate(x, scale_factor=2.0, mode="nearest"), s1)
        x = _conv_of_concat(self.up1, F.interpolate(x, scale_factor=2.0, mode="nearest"), s0)
        return torch.sigmoid(self.head(x))


def _conv_of_concat(block: nn.Sequential, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``block(torch.cat([a, b], 1))`` for a conv-norm-act block, without materialising the concatenation:
    the conv splits over input channels into two convs that are summed (same weights, same result up to
    float rounding; the copy was ~15 % of CPU inference time)."""
    conv, norm, act = block
    split = a.shape[1]
    padding, dilation = conv.padding, conv.dilation
    y = F.conv2d(a, conv.weight[:, :split], conv.bias, conv.stride, padding, dilation)
    y = y + F.conv2d(b, conv.weight[:, split:], None, conv.stride, padding, dilation)
    return act(norm(y))


class PatchDiscriminator(nn.Module):
    """PatchGAN with spectral norm: (B,3,H,W) image + (B,1,H,W) mask -> (B,1,H/8,W/8) realness logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        w = config.disc_width
        layers: list[nn.Module] = []
        channels = [4, w, 2 * w, 4 * w]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
        layers += [spectral_norm(nn.Conv2d(4 * w, 4 * w, 3, 1, 1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Conv2d(4 * w, 1, 3, 1, 1))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(torch.cat([(image - 0.5) * 2, mask], dim=1)))


def inpaint(generator: nn.Module, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Composite fill: hidden pixels from the generator, known pixels untouched. Shapes as forward."""
    return mask * generator(image, mask) + (1 - mask) * image


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


PRECISIONS = ("fp32", "bf16")
NATIVE_BF16_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's instruction-set checks


def native_bf16(device_type: str) -> bool:
    """Whether bfloat16 autocast can speed up this device: a GPU, or a CPU with avx512_bf16 or AMX. Elsewhere
    (AVX2-only CPUs, e.g. AMD Zen 3) oneDNN emulates bfloat16: training ran about 15x and the analysis about 4x
    slower than in fp32 (docs/results.md). True when this torch has none of the checks (the request is trusted)."""
    if device_type != "cpu":
        return True
    checks = [getattr(torch.cpu, name) for name in NATIVE_BF16_CHECKS if hasattr(torch.cpu, name)]
    return not checks or any(check() for check in checks)


def run_precision(precision: str, device_type: str) -> str:
    """The precision a run uses: ``precision``, except that bf16 on a CPU without native bfloat16
    (:func:`native_bf16`) runs fp32, the reference path, with a RuntimeWarning saying so.

    Raises:
        ValueError: a precision not in :data:`PRECISIONS`.
    """
    if _checked(precision) == "bf16" and not native_bf16(device_type):
        warnings.warn("This CPU has no native bfloat16 (avx512_bf16 or AMX), where bf16 runs several times slower "
                      "than fp32: running fp32 instead.", RuntimeWarning, stacklevel=2)
        return "fp32"
    return precision


def autocast(device_type: str, precision: str) -> torch.autocast:
    """bfloat16 autocast for ``precision="bf16"`` (on GPUs and CPUs with native bfloat16 convolutions run
    ~1.7-2x faster: pick it with :func:`run_precision`), a no-op context for ``"fp32"``, the reference path."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=_checked(precision) == "bf16")


def _checked(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    return precision
