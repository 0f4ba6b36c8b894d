"""Issue 12 part 3 on dev only: can the measure survive noise? Ungated AUROC, mpox val vs DermNet dev.

Compares (1) the shipped measure, (2) a matched low-pass (original, GAN fill and reference fill blurred
by the same Gaussian before SSIM) and (3) denoising the view before masking (Gaussian, median,
bilateral), on clean views and under Gaussian noise severities 1-2 and blur severity 2.

    .venv/bin/python bench/noise_measure_dev.py --per-class 12 --out runs/noise_measure_dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import kornia
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.benchmark.corruptions import corrupted_view, to_view, view_tensor  # noqa: E402
from mim_core.data import decode_image  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.measure import dissimilarity_map  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402

LOWPASS_SIGMAS = (0.0, 1.0, 1.5, 2.0, 3.0)
CONDITIONS = {"clean": None, "noise1": ("gaussian_noise", 1), "noise2": ("gaussian_noise", 2),
              "blur2": ("gaussian_blur", 2)}
DENOISERS = {
    "gauss1.0": lambda v: kornia.filters.gaussian_blur2d(v, (7, 7), (1.0, 1.0), border_type="reflect"),
    "median3": lambda v: kornia.filters.median_blur(v, (3, 3)),
    "median5": lambda v: kornia.filters.median_blur(v, (5, 5)),
    "bilateral": lambda v: kornia.filters.bilateral_blur(v, (7, 7), 0.15, (2.0, 2.0)),
}


def blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return t
    k = 2 * int(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(t, (k, k), (sigma, sigma), border_type="reflect")


@torch.inference_mode()
def lowpass_scores(detector: MIMDetector, views: torch.Tensor) -> dict[float, np.ndarray]:
    """Scores with the SSIM maps taken after a matched low-pass, one array per sigma."""
    out: dict[float, list[np.ndarray]] = {s: [] for s in LOWPASS_SIGMAS}
    for i in range(0, len(views), 16):
        batch = views[i:i + 16]
        recon = detector.reconstructions(batch, ["gan", "gauss"])
        original = batch.unsqueeze(1).expand_as(recon["gan"]).flatten(0, 1)
        for s in LOWPASS_SIGMAS:
            o = blur(original, s)
            gan = dissimilarity_map(o, blur(recon["gan"].flatten(0, 1), s), "ssim").view(len(batch), -1).mean(1)
            ref = dissimilarity_map(o, blur(recon["gauss"].flatten(0, 1), s), "ssim").view(len(batch), -1).mean(1)
            out[s].append((gan / ref.clamp_min(1e-6) - 1).numpy())
    return {s: np.concatenate(v) for s, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--out", default="runs/noise_measure_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector = MIMDetector.load(args.weights)
    pre, root = detector.config.preprocess, Path(args.data)
    positives = [decode_image(root / p) for p in detector.card["split"]["val"]]
    negatives = [decode_image(p) for p in dev_class_paths(root, args.per_class)]
    photos = positives + negatives
    truth = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    auroc = lambda scores: round(float(roc_auc_score(truth, -scores)), 4)  # noqa: E731 - lower = mpox
    results: dict[str, dict] = {"n_pos": len(positives), "n_neg": len(negatives), "lowpass": {}, "denoise": {}}
    for name, condition in CONDITIONS.items():
        views = torch.stack([view_tensor(to_view(p, pre) if condition is None else
                                         corrupted_view(p, *condition, 500 + i, pre)) for i, p in enumerate(photos)])
        results["lowpass"][name] = {str(s): auroc(v) for s, v in lowpass_scores(detector, views).items()}
        if name.startswith("noise") or name == "clean":
            results["denoise"][name] = {d: auroc(np.concatenate([detector.score_views(f(views[i:i + 16]).clamp(0, 1))
                                                                 for i in range(0, len(views), 16)]))
                                        for d, f in DENOISERS.items()}
        print(name, results["lowpass"][name], results["denoise"].get(name), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
