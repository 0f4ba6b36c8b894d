"""Issue 12 part 3 on dev only: why noise moves mpox scores, and SSIM constants that grow with the noise.

Part 1 (``--part shift``): the score shift that Gaussian noise (the benchmark's severities 1-2) causes on the
mpox train, val and test photos, beside each photo's finest-band detail (the gate's ``detail``). It reads
mpox test photos, but only to describe them (nothing is chosen on it).

Part 2 (``--part constants``): the measure's SSIM has stabilising constants c1 = (0.01 L)^2, c2 = (0.03 L)^2
with L = 1. Noise adds structure differences of about its variance everywhere, which dominate where the skin
is flat, so soft photos shift most. Here L grows with the view's excess noise estimate (the one the Wiener
step uses), c2 = 0.03^2 + k * sigma^2, so differences at the noise level count less; clean views (no excess
noise) keep the shipped measure exactly. Scored ungated on mpox val vs DermNet dev (first ``--per-class``
per class) and MSLD Others train + val, clean and noise severities 1-3; reported: AUROC per set and the share
of mpox val / mpox train photos called mpox-like at the clean threshold (largest clean mpox val score).

Part 3 (``--part lowpass``): instead, the original and both fills are low-passed alike after inpainting,
with a Gaussian whose sigma grows with the excess noise. Parts 2 and 3 also score the mpox *train*
photos against the dev negatives: their loss under noise is what the test photos show (val's is not).

    .venv/bin/python bench/noise_ssim_dev.py --part shift
    .venv/bin/python bench/noise_ssim_dev.py --part constants --out runs/noise_ssim_dev.json
    .venv/bin/python bench/noise_ssim_dev.py --part lowpass --out runs/noise_lowpass_dev.json
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
from mim_core.acquisition import channel_noise_sigma, detail_measures, luma_of, view_noise  # noqa: E402
from mim_core.benchmark.corruptions import view_tensor  # noqa: E402
from mim_core.data import decode_image  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402

KS = (0.0, 0.5, 1.0, 2.0, 4.0)
LOWPASS = (0.0, 0.5, 1.0, 2.0)


def fills(detector: MIMDetector, views: list[np.ndarray]) -> tuple[torch.Tensor, dict[str, torch.Tensor], np.ndarray]:
    """The views the measure sees, their GAN and Gaussian reconstructions, and each view's excess noise."""
    tensors = torch.stack([view_tensor(v) for v in views])
    noise = np.array([view_noise(v) for v in views])
    excess = np.sqrt(np.maximum(noise ** 2 - detector.gate.clean_noise ** 2, 0.0))
    seen = detector.denoised(tensors, noise.tolist())
    recon = {}
    for start in range(0, len(seen), 32):
        part = detector.reconstructions(seen[start:start + 32], ["gan", "gauss"])
        for k, v in part.items():
            recon.setdefault(k, []).append(v)
    return seen, {k: torch.cat(v) for k, v in recon.items()}, np.array([channel_noise_sigma(e) for e in excess])


def _score(seen: torch.Tensor, recon: dict[str, torch.Tensor], i: int, max_val: float = 1.0, blur: float = 0.0
           ) -> float:
    """View i's score as the detector computes it (mean GAN SSIM error / mean Gaussian-fill SSIM error - 1),
    with SSIM's data range ``max_val`` and, when ``blur`` > 0.05 px, original and fills low-passed alike."""
    errors = []
    for fill in ("gan", "gauss"):
        r = recon[fill][i]  # (S, 3, H, W)
        o = seen[i : i + 1].expand_as(r)
        if blur > 0.05:
            size = 2 * int(np.ceil(3 * blur)) + 1
            o, r = (kornia.filters.gaussian_blur2d(t, (size, size), (blur, blur), border_type="reflect") for t in (o, r))
        ssim = kornia.metrics.ssim(o, r, window_size=11, max_val=max_val)
        errors.append(float(((1 - ssim) / 2).mean(dim=1).clamp_min(0).mean()))
    return errors[0] / errors[1] - 1


def scores_at(seen: torch.Tensor, recon: dict[str, torch.Tensor], sigma: np.ndarray, k: float) -> np.ndarray:
    """SSIM constants grown with the excess noise: L^2 = 1 + k sigma^2 / 0.03^2 (k = 0: the shipped score)."""
    return np.array([_score(seen, recon, i, max_val=float(np.sqrt(1.0 + k * sigma[i] ** 2 / 0.03 ** 2)))
                     for i in range(len(seen))])


def scores_lowpass(seen: torch.Tensor, recon: dict[str, torch.Tensor], sigma: np.ndarray, c: float) -> np.ndarray:
    """A matched low-pass of the original and both fills whose sigma grows with the excess noise:
    c * sigma / 0.04 view px (0 on views with no excess noise)."""
    return np.array([_score(seen, recon, i, blur=c * sigma[i] / 0.04) for i in range(len(seen))])


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--part", choices=("shift", "constants", "lowpass"), default="constants")
    parser.add_argument("--out", default="runs/noise_ssim_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector = MIMDetector.load(args.weights)
    pre, root = detector.config.preprocess, Path(args.data)
    split = detector.card["split"]
    if args.part == "shift":
        for part in ("train", "val", "test"):
            photos = [decode_image(root / p) for p in split[part]]
            clean = detector.score_views(torch.stack([view_tensor(v) for v in noisy_views(photos, 0, pre, 0)]))
            detail = np.array([detail_measures(luma_of(v))["detail"] for v in noisy_views(photos, 0, pre, 0)])
            row = {"n": len(photos), "detail_median": round(float(np.median(detail)), 4),
                   "called_clean": round(float((clean <= detector.threshold).mean()), 3)}
            for severity in (1, 2):
                noisy = detector.score_views(torch.stack([view_tensor(v) for v in noisy_views(photos, severity, pre, 17)]))
                shift = noisy - clean
                row[f"severity_{severity}"] = {
                    "mean_shift": round(float(shift.mean()), 3),
                    "called": round(float((noisy <= detector.threshold).mean()), 3),
                    "corr_shift_detail": round(float(np.corrcoef(shift, detail)[0, 1]), 2)}
            print(part, json.dumps(row), flush=True)
        return
    variant, strengths = (scores_lowpass, LOWPASS) if args.part == "lowpass" else (scores_at, KS)
    sets = dev_photos(detector, root, args.per_class, ("val", "train"))
    scores: dict = {}
    for severity in (0, 1, 2, 3):
        for j, (name, photos) in enumerate(sets.items()):
            seen, recon, sigma = fills(detector, noisy_views(photos, severity, pre, 1000 * j))
            for k in strengths:
                scores[(k, name, severity)] = variant(seen, recon, sigma, k)
        print("severity", severity, "scored", flush=True)
    results = {}
    for k in strengths:
        threshold = float(scores[(k, "mpox_val", 0)].max())
        rows = {}
        for severity in (0, 1, 2, 3):
            pos = scores[(k, "mpox_val", severity)]
            row = {"mpox_val_called": round(float((pos <= threshold).mean()), 3),
                   "mpox_train_called": round(float((scores[(k, "mpox_train", severity)] <= threshold).mean()), 3)}
            for neg_name in ("dermnet_dev", "others_dev"):
                neg = scores[(k, neg_name, severity)]
                row[f"train_vs_{neg_name}_auroc"] = auroc(scores[(k, "mpox_train", severity)], neg)
                row[f"{neg_name}_auroc"] = auroc(pos, neg)
                row[f"{neg_name}_called"] = round(float((neg <= threshold).mean()), 3)
            rows[f"severity_{severity}"] = row
        results[f"k={k}"] = rows
        print(f"k={k}", json.dumps(rows), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
