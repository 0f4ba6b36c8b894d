"""Mild noise, below the gate's noise limit: how often it flips mpox photos to "not mpox-like", with and
without the shipped Wiener step. The benchmark's noise severities start at std 0.04; this covers
0.01-0.03, which the gate lets through.

Each measure is read at its own threshold (the largest clean mpox val score, the card's rule), on the
mpox val photos (which set it) and the held-out mpox test photos. Seeded noise on the model's view.

    .venv/bin/python -m bench.mild_noise
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mim_core.gate import view_noise
from mim_core.benchmark.corruptions import add_noise, to_view, view_tensor
from mim_core.data import decode_image
from mim_core.detector import MIMDetector

STDS = (0.0, 0.01, 0.02, 0.03)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--seed", type=int, default=99)
    args = parser.parse_args()
    torch.set_num_threads(2)
    shipped = MIMDetector.load(args.weights)
    measures = {"shipped (Wiener)": shipped, "without denoising": shipped.with_measure(denoise="none")}
    pre, root = shipped.config.preprocess, Path(args.data)
    clean = {split: [to_view(decode_image(root / p), pre) for p in shipped.card["split"][split]] for split in ("val", "test")}
    thresholds = {name: float(m.score_views(torch.stack([view_tensor(v) for v in clean["val"]])).max())
                  for name, m in measures.items()}
    rows = []
    for split, views in clean.items():
        for std in STDS:
            noisy = [v if std == 0 else add_noise(v, std, np.random.default_rng([args.seed, i])) for i, v in enumerate(views)]
            batch = torch.stack([view_tensor(v) for v in noisy])
            row = {"split": split, "n": len(views), "std": std,
                   "passes_noise_limit": round(float(np.mean([view_noise(v) <= shipped.gate.max_noise for v in noisy])), 3)}
            for name, measure in measures.items():
                row[f"mpox-like, {name}"] = round(float((measure.score_views(batch) <= thresholds[name]).mean()), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
