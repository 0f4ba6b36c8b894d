"""Lesion-scale contrast on skin pixels only: a candidate "no rash" signal, design sets only.

The follow-up that ``bench/lesion_contrast_dev.py`` left open: its healthy photos kept their contrast from
backgrounds, hair and creases. Here each denoised view's CIELAB channels are band-passed at lesion scale
(difference of Gaussians, sigma s1 - s2 view px) and only **skin** pixels count: chroma (a*, b*) within R
of the median chroma of the view's centre, L* in (10, 97), eroded by 3 px so skin/background borders drop
out. Statistics: the 99th percentile of the bright (L+) and dark (L-) blob response, of |a*|, |b*| and of
the chroma response. A lesion-presence check would call a mpox-like photo "no rash visible" below the
smallest value (or the 5th percentile) of the mpox train+val photos the model calls mpox-like (mpox-only
calibration). Counted: the healthy_skin_dev photos still called mpox-like by the shipped checks, and the
DermNet dev rashes still called mpox-like (a rash called "no rash" is wrong). Mpox test is never read.

    .venv/bin/python bench/lesion_skin_dev.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import kornia
import numpy as np
import torch
from scipy.ndimage import binary_erosion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lesion_contrast_dev import design_set_views  # noqa: E402  (bench/, beside this file)
from mim_core.detector import MIMDetector  # noqa: E402

BANDS = ((1.0, 4.0, 12.0), (1.5, 5.0, 12.0), (1.0, 3.0, 20.0), (2.0, 6.0, 15.0))  # (s1, s2, R)
STATISTICS = ("L+", "L-", "|a*|", "|b*|", "chroma")


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    size = 2 * int(np.ceil(3 * sigma)) + 1
    return kornia.filters.gaussian_blur2d(x, (size, size), (sigma, sigma), border_type="reflect")


def skin_band_statistics(views: torch.Tensor, s1: float, s2: float, radius: float) -> dict[str, np.ndarray]:
    """(B, 3, H, W) in [0, 1] -> {statistic: (B,)} 99th percentiles of the band-passed Lab channels over
    the view's eroded skin pixels (NaN when fewer than 200 remain)."""
    lab = kornia.color.rgb_to_lab(views.float())
    band = (_blur(lab, s1) - _blur(lab, s2)).numpy()
    out: dict[str, list[float]] = {k: [] for k in STATISTICS}
    h, w = views.shape[-2:]
    for i in range(len(views)):
        light, a, b = lab[i]
        centre = lab[i, :, h // 4: 3 * h // 4, w // 4: 3 * w // 4].flatten(1).median(dim=1).values
        skin = (((a - centre[1]) ** 2 + (b - centre[2]) ** 2).sqrt() < radius) & (light > 10) & (light < 97)
        skin = binary_erosion(skin.numpy(), iterations=3)
        values = {"L+": band[i, 0][skin], "L-": -band[i, 0][skin], "|a*|": np.abs(band[i, 1][skin]),
                  "|b*|": np.abs(band[i, 2][skin]), "chroma": np.hypot(band[i, 1][skin], band[i, 2][skin])}
        for key, v in values.items():
            out[key].append(float(np.percentile(v, 99)) if skin.sum() >= 200 else float("nan"))
    return {k: np.array(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--healthy", default="../shared/healthy_skin_dev/Normal")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector = MIMDetector.load(args.weights)
    views = design_set_views(detector, Path(args.data), Path(args.healthy))
    # which of the mpox-like calls the shipped appearance check leaves mpox-like (not "no rash visible")
    still = {name: detector.appearance.distances(views[name]) <= detector.appearance.no_rash_threshold
             for name in ("healthy", "dermnet")}
    print("| s1 / s2 / R | statistic | mpox min / 5th pct / median | healthy still mpox-like: values | "
          "below min: healthy / DermNet dev | below 5th pct: healthy / DermNet dev |")
    print("|---|---|---|---|---|---|")
    for s1, s2, radius in BANDS:
        stats = {name: skin_band_statistics(v, s1, s2, radius) for name, v in views.items()}
        for key in STATISTICS:
            mpox = stats["mpox"][key]
            low, p5 = np.nanmin(mpox), np.nanpercentile(mpox, 5)
            healthy, rashes = stats["healthy"][key][still["healthy"]], stats["dermnet"][key][still["dermnet"]]
            print(f"| {s1:g} / {s2:g} / {radius:g} | {key} | {low:.2f} / {p5:.2f} / {np.nanmedian(mpox):.2f} | "
                  f"{', '.join(f'{v:.2f}' for v in healthy)} | {int((healthy < low).sum())} of {len(healthy)} / "
                  f"{int((rashes < low).sum())} of {len(rashes)} | {int((healthy < p5).sum())} / "
                  f"{int((rashes < p5).sum())} |")


if __name__ == "__main__":
    main()
