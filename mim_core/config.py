"""Frozen configs. A checkpoint carries its own config (nanoGPT style), so a model file is self-describing.

:class:`MIMConfig` is a model's identity: architecture, preprocessing, masks, measure and training
recipe (data split, seeds, steps). How a run executes (threads, device, logging, a time limit) is a
:class:`RunConfig`, never stored in the config: resuming with other ``--threads`` continues the same model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class PreprocessConfig:
    """Every image, mpox or not, goes through exactly this.

    The central square crop (``crop_fraction`` of the short side) drops the borders, where DermNet's
    corner watermark sits, for all images alike, so no score can depend on it.
    """

    crop_fraction: float = 0.55
    size: int = 128


@dataclass(frozen=True)
class MaskConfig:
    """Fixed multi-scale grid masks: at each scale the grid cells are dealt into ``masks_per_scale``
    disjoint masks that together cover every pixel exactly once."""

    scales: tuple[int, ...] = (8, 16, 32)
    masks_per_scale: int = 4
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Inpainting generator (U-Net with a dilated residual bottleneck) and PatchGAN discriminator."""

    width: int = 24
    bottleneck_blocks: int = 4
    disc_width: int = 32


@dataclass(frozen=True)
class MeasureConfig:
    """How an analysis turns original vs inpainted into a map and a score.

    ``map``: per-pixel dissimilarity, one of ``l1``, ``ssim``, ``msgms``.
    ``reference``: ``none`` (score = mean map), ``gauss`` (score = the inpainter's mean error over a
    Gaussian fill's on the same masks, minus 1, which cancels image complexity to first order) or
    ``background`` (the same with the card's background reference inpainter). See
    :func:`mim_core.measure.score_map`: the score is the mean of its own map.
    ``scales``: the cell sizes of the mask bank that the analysis runs (a subset chosen on dev classes
    makes analysis faster); empty = all.
    ``heatmap_max``: the fixed end of the score map's colour scale, in score-map units (the scale is
    [-max, max] with a reference, [0, max] without).
    ``presmooth_sigma``: a Gaussian blur (in view pixels) applied to the view before masking, for every
    fill and the comparison alike; 0 = none. It takes pixel noise out of what no fill can predict.
    ``denoise``: ``none`` or ``wiener``: every view is Wiener-filtered before masking for the noise by
    which its wavelet-MAD estimate exceeds the card's ``quality_gate.clean_noise`` (most clean views are
    left as they are), so that noise the gate lets through does not flip verdicts.
    """

    map: str = "l1"
    reference: str = "none"
    heatmap_max: float = 0.25
    scales: tuple[int, ...] = ()  # mask scales the score uses; () = every scale of the bank
    presmooth_sigma: float = 0.0
    denoise: str = "none"


@dataclass(frozen=True)
class TrainConfig:
    """Adversarial inpainting training on mpox photos only."""

    steps: int = 3000
    batch_size: int = 12
    lr: float = 2e-4
    adv_weight: float = 0.02
    ssim_weight: float = 0.5
    ema_decay: float = 0.995
    seed: int = 0
    split_seed: int = 0
    checkpoint_every: int = 250  # also when the val error picks the best step: part of the recipe
    # > 0: every training view is cut into a tile_shuffle x tile_shuffle grid whose tiles are shuffled. This
    # trains the *background* reference inpainter: mpox colour and texture kept, lesion structure destroyed.
    tile_shuffle: int = 0
    # > 0: half of each batch's generator *inputs* get Gaussian noise of a std drawn in [0, input_noise]; the
    # losses compare with the clean view, so the inpainter learns to fill from noisy context as from clean.
    input_noise: float = 0.0
    # a weights file whose generator starts this run (a fine-tune) instead of a seeded initialisation
    init_weights: str = ""


@dataclass(frozen=True)
class RunConfig:
    """How one training or analysis run executes; changes nothing about the model it makes."""

    threads: int = 2
    device: str = "cpu"
    precision: str = "fp32"  # or "bf16": bfloat16 autocast for the forward passes
    log_every: int = 50
    time_limit_s: float | None = None  # stop at the first checkpoint past this much training time


# Run settings that older files stored inside ``train``; dropped on read (they never defined the model).
LEGACY_RUN_KEYS = {"train": ("threads", "log_every")}


@dataclass(frozen=True)
class MIMConfig:
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MIMConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error so stale files fail loudly."""
        parts = {}
        for f in fields(cls):
            sub_cls = f.default_factory  # type: ignore[misc]
            values = dict(data.get(f.name, {}))
            for legacy in LEGACY_RUN_KEYS.get(f.name, ()):
                values.pop(legacy, None)
            for key, value in values.items():
                if isinstance(value, list):
                    values[key] = tuple(value)
            parts[f.name] = sub_cls(**values)
        return cls(**parts)

    def replace(self, **sections: Any) -> "MIMConfig":
        """Copy with whole sections or ``section__key=value`` overrides."""
        data = self.to_dict()
        for key, value in sections.items():
            section, _, name = key.partition("__")
            if name:
                data[section][name] = value
            else:
                data[section] = asdict(value)
        return MIMConfig.from_dict(data)
