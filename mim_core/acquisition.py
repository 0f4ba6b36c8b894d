"""Model-free acquisition-quality measurements of the crop the model sees, and their calibration.

Every measurement is computed on the (H, W, 3) uint8 crop at model resolution, except the effective
resolution, which needs the decoded photo (photo pixels per model pixel). Thresholds are calibrated on
mpox train+val photos only (:func:`calibrate_gate`) and stored in the model card's ``quality_gate``
section; :data:`DEFAULT_GATE` is used only when a card has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from .config import PreprocessConfig
from .data import center_crop_box, decode_image, preprocess, to_uint8


@dataclass(frozen=True)
class GateThresholds:
    """Limits of the acquisition gate (a photo outside any of them is refused)."""

    max_noise: float = 0.05           # wavelet-MAD noise sigma of luma, [0,1] units: refused above
    clean_noise: float = 0.0          # noise a clean photo may carry: denoising removes only what exceeds it
    min_sharpness: float = 0.30       # finest-band / next-band detail energy
    min_coarse_sharpness: float = 0.20  # detail energy below 4 px / below 8 px (catches x3-x4 upscaling)
    min_detail: float = 0.0013        # RMS luma of the finest band: a picture with none is no photo of skin
    min_resolution: float = 0.5       # photo pixels per model pixel (crop side / model size)
    max_clipped: float = 0.5          # share of pixels with luma < 0.02 or > 0.98
    min_mean_luma: float = 0.12
    max_mean_luma: float = 0.92
    max_blockiness: float = 0.3       # compression block edges on the view's own 8 px grid: refused above
    max_photo_blockiness: float = 0.17  # block edges on the photo's 8 px grid, seen in the view: refused above
    rule: str = "built-in defaults (the card has no quality_gate section)"

    @classmethod
    def from_card(cls, card: Mapping[str, Any] | None) -> GateThresholds:
        section = (card or {}).get("quality_gate") or {}
        limits = section.get("thresholds", {})
        fields = {k: float(v) for k, v in limits.items() if k in cls.__dataclass_fields__ and k != "rule"}
        return cls(**fields, rule=section.get("rule", cls.rule)) if section else cls()


DEFAULT_GATE = GateThresholds()


def luma_of(crop: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 -> (H,W) float64 Rec.601 luma in [0,1]."""
    x = crop.astype(np.float64) / 255.0
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def noise_sigma(luma: np.ndarray) -> float:
    """Robust noise sigma (Donoho's wavelet MAD): median |HH| / 0.6745 of the first Haar diagonal band."""
    h, w = (luma.shape[0] // 2) * 2, (luma.shape[1] // 2) * 2
    y = luma[:h, :w]
    hh = (y[0::2, 0::2] - y[0::2, 1::2] - y[1::2, 0::2] + y[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745)


LUMA_TO_CHANNEL = 1 / float(np.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2))  # i.i.d. channel noise -> luma: x0.67


def channel_noise_sigma(luma_noise: float) -> float:
    """The per-channel noise sigma that gives luma noise ``luma_noise`` when channels are independent."""
    return luma_noise * LUMA_TO_CHANNEL


def view_noise(crop: np.ndarray) -> float:
    """The gate's noise measurement of an (H,W,3) uint8 crop (luma, rounded as in :func:`measure_quality`)."""
    return round(noise_sigma(luma_of(crop)), 5)


def _down_up(luma: np.ndarray, factor: int) -> np.ndarray:
    """(H,W) -> the same size after an area downscale by ``factor`` and a bilinear upscale back."""
    image = Image.fromarray(luma.astype(np.float32), mode="F")
    small = image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX)
    return np.asarray(small.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float64)


def detail_measures(luma: np.ndarray) -> dict[str, float]:
    """The three detail measures of an (H,W) luma image, from one set of ``duK`` copies (an area
    down-by-K and bilinear up copy, K = 2, 4, 8):

    - ``sharpness``: detail energy at the model's own pixel scale relative to the next coarser scale,
      ``E(x - du2(x)) / E(du2(x) - du4(x))``. Natural sharp photos keep comparable energy in both bands;
      blurred or upscaled photos lose the finest band first, so the ratio falls. It is relative to the
      photo's own coarser detail, not to its content. Noise raises it, so noise is gated first.
    - ``coarse_sharpness``: share of the detail energy up to 8 px that lies below 4 px,
      ``E(x - du4(x)) / E(x - du8(x))``. A photo enlarged 3-4x (a thumbnail, a digital zoom) has almost
      no detail below 4 px at all, so both bands of ``sharpness`` are empty and its ratio stays normal;
      this one falls.
    - ``detail``: RMS of the finest band, ``sqrt(E((x - du2(x))^2))`` in luma units: the absolute amount
      of the detail the sharpness ratio compares. A drawn gradient or a smooth synthetic picture has almost
      none (both sharpness bands are then empty, and their ratio says nothing).
    """
    d2, d4, d8 = (_down_up(luma, k) for k in (2, 4, 8))
    finest = ((luma - d2) ** 2).mean()
    return {"sharpness": float(finest / max(((d2 - d4) ** 2).mean(), 1e-12)),
            "coarse_sharpness": float(((luma - d4) ** 2).mean() / max(((luma - d8) ** 2).mean(), 1e-12)),
            "detail": float(np.sqrt(finest))}


BLOCK = 8  # JPEG's block side in pixels
MIN_BLOCK_PERIOD = 2.5  # view px: photo blocks finer than this are averaged away by the downscale to the view


def edge_profiles(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H,W) -> mean |difference| between neighbouring columns (W-1,) and neighbouring rows (H-1,)."""
    return np.abs(np.diff(luma, axis=1)).mean(axis=0), np.abs(np.diff(luma, axis=0)).mean(axis=1)


def blockiness(profiles: tuple[np.ndarray, np.ndarray]) -> float:
    """Excess edge strength on the view's own 8 px grid: mean |step| across the boundaries between columns
    8k-1 and 8k (and rows) over the mean |step| across block middles (8k+3 to 8k+4), minus 1; about 0 for
    a camera photo. JPEG of the view itself (a photo sent at about the model's size) puts its block edges
    exactly there, on the 8 px cells of the mask bank. Against the middles, not all other steps, so a 2x or
    4x enlargement (steps every 2 or 4 px, on both) does not count as blocks. ``profiles``: of
    :func:`edge_profiles`."""
    def excess(profile: np.ndarray) -> float:
        phase = np.arange(len(profile)) % BLOCK
        return float(profile[phase == BLOCK - 1].mean() / max(profile[phase == BLOCK // 2 - 1].mean(), 1e-12) - 1)
    return float(np.mean([excess(p) for p in profiles]))


def photo_blockiness(profiles: tuple[np.ndarray, np.ndarray], resolution: float | None) -> float:
    """Block edges of the photo's own 8 px grid as they appear in the view, where they fall every
    ``8 / resolution`` view px at a phase the crop decides: the amplitude of the edge profiles at that
    period (a phase-free Fourier coefficient, relative to the mean edge strength); 0 when the photo's
    blocks are finer than 2.5 view px (the downscale to the view averages them away) or unknown.
    ``profiles``: of :func:`edge_profiles`."""
    if resolution is None or BLOCK / resolution < MIN_BLOCK_PERIOD:
        return 0.0
    def amplitude(profile: np.ndarray) -> float:
        wave = np.exp(-2j * np.pi * np.arange(len(profile)) * resolution / BLOCK)
        return float(np.abs(((profile - profile.mean()) * wave).sum()) / max(profile.sum(), 1e-12))
    return float(np.mean([amplitude(p) for p in profiles]))


def measure_quality(crop: np.ndarray, resolution: float | None = None) -> dict[str, float]:
    """The acquisition measurements of one (H,W,3) uint8 crop; ``resolution`` = photo px per model px."""
    luma = luma_of(crop)
    profiles = edge_profiles(luma)
    out = {"noise": view_noise(crop), **detail_measures(luma),
           "clipped": float(((luma < 0.02) | (luma > 0.98)).mean()), "mean_luma": float(luma.mean()),
           "blockiness": blockiness(profiles)}
    if resolution is not None:
        out["resolution"] = float(resolution)
        out["photo_blockiness"] = photo_blockiness(profiles, resolution)
    return {k: round(v, 5) for k, v in out.items()}


def effective_resolution(photo: Image.Image, config: PreprocessConfig) -> float:
    """Photo pixels per model pixel: the side of the central crop in the photo / the model size."""
    left, top, right, bottom = center_crop_box(*photo.size, config.crop_fraction)
    return float(min(right - left, bottom - top)) / config.size


# blockiness: the margin chosen on DermNet dev and healthy_skin_dev (bench/compression_dev.py)
MARGINS = {"noise": 1.5, "resolution": 0.5, "detail": 0.5, "clipped": 1.5, "blockiness": 2.0}
SHARPNESS_PERCENTILE = 5.0  # mpox photos are soft themselves: the minimum x margin would refuse no blur
CLEAN_NOISE_PERCENTILE = 75.0  # chosen on dev among the 50th / 75th / 95th (bench/denoise_dev.py --part when)


def calibrate_gate(paths: Iterable[str], config: PreprocessConfig) -> dict[str, Any]:
    """The card's ``quality_gate`` section from mpox train+val photos only.

    Rule: each limit is the most extreme value the calibration photos show, times a margin (noise and
    clipping x1.5 above the largest, both blockiness measures x2; resolution and detail x0.5 of the
    smallest; sharpness and coarse sharpness the 5th percentile each, so 5-10 % of clean mpox photos are
    refused as too blurred); mean-luma limits are the darkest/brightest photo widened by 0.08. Clean
    calibration photos otherwise all pass.
    """
    rows = []
    for path in paths:
        photo = decode_image(path)
        crop = to_uint8(preprocess(photo, config))
        rows.append(measure_quality(crop, effective_resolution(photo, config)))
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    limits = GateThresholds(
        max_noise=float(col["noise"].max() * MARGINS["noise"]),
        clean_noise=float(np.percentile(col["noise"], CLEAN_NOISE_PERCENTILE)),
        min_sharpness=float(np.percentile(col["sharpness"], SHARPNESS_PERCENTILE)),
        min_coarse_sharpness=float(np.percentile(col["coarse_sharpness"], SHARPNESS_PERCENTILE)),
        min_resolution=float(min(col["resolution"].min() * MARGINS["resolution"], 1.0)),
        min_detail=float(col["detail"].min() * MARGINS["detail"]),
        max_clipped=float(min(max(col["clipped"].max() * MARGINS["clipped"], 0.05), 0.9)),
        min_mean_luma=float(max(col["mean_luma"].min() - 0.08, 0.02)),
        max_mean_luma=float(min(col["mean_luma"].max() + 0.08, 0.98)),
        max_blockiness=float(col["blockiness"].max() * MARGINS["blockiness"]),
        max_photo_blockiness=float(col["photo_blockiness"].max() * MARGINS["blockiness"]))
    thresholds = {k: round(v, 5) for k, v in asdict(limits).items() if k != "rule"}
    soft = int(((col["sharpness"] < limits.min_sharpness)
                | (col["coarse_sharpness"] < limits.min_coarse_sharpness)).sum())
    observed = {k: {"min": round(float(v.min()), 5), "max": round(float(v.max()), 5),
                    "median": round(float(np.median(v)), 5)} for k, v in col.items()}
    return {"thresholds": thresholds, "observed_on_calibration": observed, "n_photos": len(rows),
            "calibration_photos": "MSLD_v1/Monkeypox train + val split of this card (mpox only)",
            "rule": ("noise/clipping limit = largest calibration value x1.5 (clipping at least 0.05); "
                     f"clean_noise = {CLEAN_NOISE_PERCENTILE:.0f}th percentile of the calibration photos' noise; "
                     "sharpness and coarse-sharpness limits = 5th percentile of the calibration photos each "
                     f"({soft} of {len(rows)} calibration photos below either); "
                     "resolution limit = smallest calibration value x0.5 (at most 1.0); "
                     "detail limit = smallest calibration value x0.5; "
                     "mean luma limits = darkest/brightest calibration photo -/+ 0.08; blockiness and photo "
                     "blockiness limits = largest calibration value x2 each (the margin chosen on DermNet dev and "
                     "healthy_skin_dev: bench/compression_dev.py)"),
            "measurements": {
                "noise": "wavelet-MAD sigma of luma (median |Haar HH| / 0.6745), [0,1] units",
                "sharpness": ("luma energy of x - du2(x) over that of du2(x) - du4(x) "
                              "(duK: area down by K, bilinear up)"),
                "coarse_sharpness": "luma energy of x - du4(x) over that of x - du8(x)",
                "resolution": "photo pixels per model pixel (central crop side / model size)",
                "detail": "RMS luma of x - du2(x), the finest detail band",
                "clipped": "share of crop pixels with luma < 0.02 or > 0.98",
                "mean_luma": "mean luma of the crop",
                "blockiness": ("mean |luma step| across the view's 8 px grid lines over that across the block "
                               "middles (8k+3 to 8k+4), minus 1 (JPEG of the view)"),
                "photo_blockiness": ("amplitude of the view's luma-step profiles at the period of the photo's "
                                     "8 px grid (8 / resolution view px), over their mean; 0 below 2.5 px "
                                     "(JPEG of the photo)")}}


def calibrate_card_gate(weights: str, data_root: str) -> dict[str, Any]:
    """Write the ``quality_gate`` section of the card beside ``weights`` from its mpox train+val photos."""
    from pathlib import Path

    from .checkpoint import card_path, load_card, save_json
    from .config import MIMConfig

    card = load_card(weights)
    config = MIMConfig.from_dict(card["config"]).preprocess
    paths = [str(Path(data_root) / p) for p in card["split"]["train"] + card["split"]["val"]]
    card["quality_gate"] = {**calibrate_gate(paths, config),
                            "command": f"python -m mim_core calibrate-gate --weights {weights} --data {data_root}"}
    save_json(card_path(weights), card)
    return card
