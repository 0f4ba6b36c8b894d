"""Frozen configs and recipes. A checkpoint carries its own config (nanoGPT style), so a model file is
self-describing.

:class:`MIMConfig` is a model's identity: architecture, preprocessing, masks, measure and training
(seeds, steps). How a run executes (threads, device, precision, logging, a time limit) is a
:class:`RunConfig`, never stored in the config: resuming with other ``--threads`` continues the same model.
A :class:`Recipe` (a committed TOML file under ``recipes/``) names both and the data roots: the whole
instruction that rebuilds a shipped model with ``python -m mim_core train --recipe FILE``.
The defaults below are the shipped model's.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
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
    ``reference``: ``none`` (score = mean map) or ``gauss`` (score = the inpainter's mean error over a
    Gaussian fill's on the same masks, minus 1, which cancels image complexity to first order). See
    :func:`mim_core.measure.score_map`: the score is the mean of its own map.
    ``scales``: the cell sizes of the mask bank that the analysis runs (a subset chosen on dev classes
    makes analysis faster); empty = all.
    ``heatmap_max``: the fixed end of the score map's colour scale, in score-map units (the scale is
    [-max, max] with a reference, [0, max] without).
    ``denoise``: ``none`` or ``wiener``: every view is Wiener-filtered before masking for the noise by
    which its wavelet-MAD estimate exceeds the card's ``quality_gate.clean_noise`` (most clean views are
    left as they are), so that noise the gate lets through does not flip verdicts.
    """

    map: str = "ssim"
    reference: str = "gauss"
    heatmap_max: float = 1.0
    scales: tuple[int, ...] = (8,)  # mask scales the score uses; () = every scale of the bank
    denoise: str = "wiener"


@dataclass(frozen=True)
class TrainConfig:
    """Adversarial inpainting training on mpox photos only."""

    steps: int = 6500
    batch_size: int = 12
    lr: float = 2e-4
    adv_weight: float = 0.02
    ssim_weight: float = 0.5
    ema_decay: float = 0.995
    seed: int = 0
    split_seed: int = 0
    checkpoint_every: int = 500  # also when the val error picks the best step: part of the recipe


@dataclass(frozen=True)
class RunConfig:
    """How one training or analysis run executes; changes nothing about the model it makes."""

    threads: int = 2
    device: str = "cpu"
    precision: str = "fp32"  # or "bf16": bfloat16 autocast for the forward passes
    log_every: int = 50
    time_limit_s: float | None = None  # stop at the first checkpoint past this much training time


PROBE_ARCH = "efficientnet_lite0_probe"  # frozen ImageNet features + a linear head (mim_core/baselines/probe.py)
# frozen ImageNet features + a bank of mpox train features, one-class (mim_core/baselines/one_class.py)
ONE_CLASS_ARCHS = ("efficientnet_lite0_knn", "efficientnet_lite0_patchcore")
FROZEN_ARCHS = (PROBE_ARCH, *ONE_CLASS_ARCHS)  # fitted in one step on frozen features: no steps, batches or history
ARCHITECTURES = ("resnet18", "mobilenet_v3_small", *FROZEN_ARCHS)
NEGATIVE_SETS = ("others", "others+dev", "others+dev+healthy")
# How a classifier card's threshold is set: every val mpox photo called mpox-like (MIM's rule, no negative used),
# Youden's J over the val mpox and val negative photos, or (the probe only) Youden's J over those and the out-of-fold
# scores of every train photo, ~5x more photos and a steadier cut (for a model giving verdicts; docs/ablations.md).
THRESHOLD_RULES = ("every-val-mpox", "youden-val", "youden-val-oof")


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that defines a classifier baseline and how it is trained.

    ``negatives``: ``others`` (MSLD_v1/Others only, the usual literature setting), ``others+dev``
    (also the 10 DermNet dev classes) or ``others+dev+healthy`` (also the healthy-skin design photos,
    ``healthy_skin_dev/Normal``: the data roots must include ``healthy_skin_dev``). ``arch`` ``efficientnet_lite0_probe`` fits a linear head on frozen
    pretrained features in one step (no batches, steps or augmentation: those fields do not apply); the one-class
    ``efficientnet_lite0_knn`` / ``_patchcore`` keep the mpox train photos' features and use no negative at all
    (``negatives`` then only names the photos of the card's val and test figures). Training draws balanced batches (half mpox, half negatives).
    ``load_short_side``: photos with a longer short side are shrunk to it once at load (area
    resampling) to bound memory; the random crops (40-85 % of the short side) still reach the model at
    its input size or above.
    """

    arch: str = "resnet18"
    negatives: str = "others"
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 30
    bn_momentum: float = 0.1  # torchvision's MobileNetV3 uses 0.01 (tuned for long ImageNet runs): its eval
    # statistics then lag hundreds of steps behind the weights in a 600-step run
    eval_every: int = 50
    seed: int = 0
    split_seed: int = 0
    threads: int = 1
    load_short_side: int = 320
    probe_c: float = 1.0  # the probe's L2 penalty (scikit-learn's C); the other architectures ignore it
    threshold_rule: str = "every-val-mpox"  # one of THRESHOLD_RULES
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
        if self.negatives not in NEGATIVE_SETS:
            raise ValueError(f"Unknown negative set {self.negatives!r}; choose one of {', '.join(NEGATIVE_SETS)}.")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"Unknown threshold rule {self.threshold_rule!r}; choose one of {', '.join(THRESHOLD_RULES)}.")
        if self.threshold_rule == "youden-val-oof" and self.arch != PROBE_ARCH:
            raise ValueError(f"The youden-val-oof threshold rule needs the {PROBE_ARCH} architecture (out-of-fold "
                             "scores come from refitting its head).")
        if self.steps < 1 or self.batch_size < 2 or self.eval_every < 1:
            raise ValueError("steps and eval_every must be at least 1 and batch_size at least 2.")

    def to_dict(self) -> dict[str, Any]:
        """The fields that define this model (``probe_c`` only for the probe; ``threshold_rule`` when not the
        default, so files written before it existed keep their bytes' meaning)."""
        values = asdict(self)
        if self.arch != PROBE_ARCH:
            del values["probe_c"]
        if self.threshold_rule == THRESHOLD_RULES[0]:
            del values["threshold_rule"]
        return values

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassifierConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error so stale files fail loudly."""
        values = dict(data)
        values["preprocess"] = PreprocessConfig(**values.get("preprocess", {}))
        return cls(**values)


# Keys older files may hold that no longer define a model: run settings once stored inside ``train``, and
# removed options (docs/ablations.md), dropped on read when they hold the value that meant "off".
LEGACY_KEYS = {"train": {"threads": None, "log_every": None, "tile_shuffle": 0, "input_noise": 0.0,
                         "init_weights": ""},
               "measure": {"presmooth_sigma": 0.0}}


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
            for legacy, off in LEGACY_KEYS.get(f.name, {}).items():
                if legacy in values and off is not None and values[legacy] != off:
                    raise ValueError(f"{f.name}.{legacy} = {values[legacy]!r} is an option this version no longer "
                                     "has (see docs/ablations.md); this file was made by an older version.")
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


REPOSITORY = Path(__file__).resolve().parent.parent  # a recipe inside it is named relative to it


@dataclass(frozen=True)
class Recipe:
    """A committed training recipe: the model's kind and config, the data roots and how the run executes.

    ``path`` and ``sha256`` identify the file, so a card can name exactly what made its weights.
    Data roots are relative to the working directory (the repository root in every documented command).
    """

    name: str
    kind: str  # "mim" or "classifier"
    config: MIMConfig | ClassifierConfig
    run: RunConfig
    data_roots: tuple[str, ...]
    path: str
    sha256: str

    def as_card_entry(self) -> dict[str, Any]:
        return {"file": self.path, "sha256": self.sha256}


def read_recipe(path: str | Path) -> Recipe:
    """Parse a recipe TOML file: top-level ``name``, ``kind`` (default ``mim``) and ``data_roots``, a
    ``[run]`` table of :class:`RunConfig` fields, and the model config: one table per :class:`MIMConfig`
    section, or for a classifier a ``[classifier]`` table of :class:`ClassifierConfig` fields. Keys left
    out take the defaults.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable TOML, unknown keys or tables, or no data root (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Recipe {path} not found (the shipped ones are in recipes/).")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"Recipe {path} is not valid TOML: {err}") from err
    kind = data.get("kind", "mim")
    sections = {f.name for f in fields(MIMConfig)} if kind == "mim" else {"classifier"}
    if kind not in ("mim", "classifier"):
        raise ValueError(f"Recipe {path}: kind must be 'mim' or 'classifier', not {kind!r}.")
    unknown = set(data) - sections - {"name", "kind", "data_roots", "run"}
    if unknown:
        raise ValueError(f"Recipe {path} has unknown keys {sorted(unknown)} for a {kind} recipe.")
    roots = data.get("data_roots")
    if not roots or not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise ValueError(f"Recipe {path} needs data_roots, a list of folders such as [\"../shared/data\"].")
    try:
        config = (MIMConfig.from_dict({k: v for k, v in data.items() if k in sections}) if kind == "mim"
                  else ClassifierConfig.from_dict(data.get("classifier", {})))
        run = RunConfig(**data.get("run", {}))
    except (TypeError, ValueError) as err:
        raise ValueError(f"Recipe {path}: {err}") from err
    resolved = path.resolve()
    shown = resolved.relative_to(REPOSITORY) if resolved.is_relative_to(REPOSITORY) else resolved
    return Recipe(name=str(data.get("name", path.stem)), kind=kind, config=config, run=run, data_roots=tuple(roots),
                  path=shown.as_posix(), sha256=hashlib.sha256(raw).hexdigest())
