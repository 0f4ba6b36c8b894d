"""Issue 12 part 3 on dev only: which half of the score's noise loss is the inpainter's, and which the target's.

Under Gaussian noise the score changes for two reasons: the inpainter fills from a noisy (or denoised)
context, and the fills are compared with a noisy (or denoised) original. Each is isolated here by mixing
clean and noisy halves of the same photo (the noise is the benchmark's, seeded per photo):

- ``clean (shipped)``: the shipped score of the clean photo (Wiener-filtered first when its noise
  measurement exceeds the gate's ``clean_noise``); ``clean, no Wiener step``: fills of the clean view itself,
  compared with it;
- ``shipped``: fills of the Wiener-denoised noisy view, compared with it (the shipped score of noisy photos);
- ``inpainter part``: fills of the Wiener-denoised noisy view, compared with the **clean** view: what is left
  if the comparison were perfect;
- ``target part``: fills of the **clean** view, compared with the Wiener-denoised noisy view (what the
  shipped measure compares with), or with the raw noisy view by a *noise-debiased* SSIM
  (the original's local variance less the noise variance, floored at 0; SSIM is otherwise kornia's), with
  the exact added noise sigma or the gate's estimate (the excess over ``clean_noise``, as the Wiener step
  uses it);
- ``both``: fills of the Wiener-denoised noisy view, compared with the raw noisy view by the debiased SSIM.

AUROC of mpox train and of mpox val against the first ``--per-class`` photos of each DermNet dev class, at
one noise severity. Mpox test is never read. For a generator trained with noisy inputs on the mpox train
photos (``runs/ft_noise``), the train rows are flattering and only val is unseen.

    .venv/bin/python bench/noise_decomposition_dev.py --weights weights/mim_gan.pt runs/ft_noise/final.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import kornia
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from input_noise_dev import auroc, dev_photos, noisy_views  # noqa: E402  (bench/, beside this file)
from noise_ssim_dev import fills  # noqa: E402
from mim_core.benchmark.corruptions import view_tensor  # noqa: E402
from mim_core.checkpoint import load_generator  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402

WINDOW = kornia.filters.get_gaussian_kernel1d(11, 1.5, dtype=torch.float32)  # kornia.metrics.ssim's window


def debiased_ssim_error(original: torch.Tensor, fills: torch.Tensor, noise_var: float) -> float:
    """Mean (1 - SSIM) / 2 of (S,3,H,W) fills against the (1,3,H,W) original, with the original's local
    variance reduced by ``noise_var`` (floored at 0): noise the fills cannot know is not counted against them.
    ``noise_var`` 0 is kornia's SSIM (checked in :func:`main`)."""
    x, y = original.expand_as(fills), fills
    local = lambda t: kornia.filters.filter2d_separable(t, WINDOW, WINDOW)  # reflected borders, as kornia
    mx, my = local(x), local(y)
    vx = (local(x * x) - mx * mx - noise_var).clamp_min(0) if noise_var > 0 else local(x * x) - mx * mx
    vy, cxy = local(y * y) - my * my, local(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2) + 1e-12)
    return float(((1 - ssim) / 2).mean(dim=1).clamp_min(0).mean())


def scores(targets: torch.Tensor, fills: dict[str, torch.Tensor], noise_var: np.ndarray) -> np.ndarray:
    """The MIM score (mean GAN error / mean Gaussian-fill error - 1) of each view, debiased SSIM."""
    return np.array([debiased_ssim_error(targets[i:i + 1], fills["gan"][i], noise_var[i])
                     / debiased_ssim_error(targets[i:i + 1], fills["gauss"][i], noise_var[i]) - 1
                     for i in range(len(targets))])


def conditions(detector: MIMDetector, photos: list, severity: int, seed: int) -> dict[str, np.ndarray]:
    """Scores of one photo set under each condition of the module doc."""
    pre = detector.config.preprocess
    clean_views, noisy_raw = noisy_views(photos, 0, pre, seed), noisy_views(photos, severity, pre, seed)
    seen_clean, from_seen_clean, _ = fills(detector, clean_views)  # the shipped score: Wiener step included
    denoised, from_denoised, estimated = fills(detector, noisy_raw)
    clean, from_clean, _ = fills(detector.with_measure(denoise="none"), clean_views)  # the photo itself
    noisy = torch.stack([view_tensor(v) for v in noisy_raw])
    exact = (noisy - clean).flatten(1).std(dim=1).numpy()  # the added noise, after clipping and rounding
    zero = np.zeros(len(photos))
    return {"clean (shipped)": scores(seen_clean, from_seen_clean, zero),
            "clean, no Wiener step": scores(clean, from_clean, zero),
            "shipped": scores(denoised, from_denoised, zero),
            "inpainter part": scores(clean, from_denoised, zero),
            "target part, Wiener-denoised target": scores(denoised, from_clean, zero),
            "target part, exact sigma": scores(noisy, from_clean, exact ** 2),
            "target part, estimated sigma": scores(noisy, from_clean, estimated ** 2),
            "both, exact sigma": scores(noisy, from_denoised, exact ** 2),
            "both, estimated sigma": scores(noisy, from_denoised, estimated ** 2)}


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["weights/mim_gan.pt"])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--severity", type=int, default=2, help="Gaussian noise severity (2: std 0.08)")
    parser.add_argument("--out", default="runs/noise_decomposition_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    shipped = MIMDetector.load(args.weights[0])
    probe = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert abs(debiased_ssim_error(probe[:1], probe[1:], 0.0)
               - float(((1 - kornia.metrics.ssim(probe[:1], probe[1:], 11)) / 2).mean())) < 1e-6
    sets = dev_photos(shipped, Path(args.data), args.per_class, ("train", "val"), with_others=False)
    results = {}
    for weights in args.weights:
        generator, _ = load_generator(weights, None)
        detector = MIMDetector(generator, shipped.config, shipped.threshold, shipped.card)
        by_set = {name: conditions(detector, photos, args.severity, 1000 * j) for j, (name, photos) in enumerate(sets.items())}
        results[weights] = {condition: {f"{pos} vs DermNet dev": auroc(by_set[pos][condition], by_set["dermnet_dev"][condition])
                                        for pos in ("mpox_train", "mpox_val")} for condition in by_set["dermnet_dev"]}
        print(weights, json.dumps(results[weights], indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"severity": args.severity, "auroc": results}, indent=1))


if __name__ == "__main__":
    main()
