"""Does any cell of the photo look like an mpox *lesion* cell? A no-rash signal tried on the design sets.

The shipped appearance check averages, over the photo's 7x7 cells, the distance to the nearest cell of
*any* mpox calibration cell, so plain skin matches the skin between lesions. Here the bank keeps only
each mpox train + val photo's ``k`` hardest cells (highest SSIM error of the GAN fill, or of the
Gaussian reference fill, average-pooled to the same 7x7 grid), and a photo's statistic is the mean of
its ``m`` best-matching cells' distances: small when some part of it looks like an mpox lesion. The
limit is the largest leave-one-source-out statistic among the gate-passing calibration photos (mpox
only), as for the shipped check; a mpox-like call above it would become "no rash visible".

Counted on design sets only (mpox test is never read): healthy_skin_dev and DermNet dev photos that are
mpox-like *after* the shipped check and would be flagged on top of it, the issue's synthetic plain-skin
patches (``tests/test_appearance.py``), and the nested leave-one-source-out miss rate of the calibration
photos (as in ``bench/appearance_size_dev.py``).

    .venv/bin/python bench/lesion_bank_dev.py --out runs/lesion_bank_dev.json   # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from appearance_size_dev import scored_set  # noqa: E402
from mim_core.data import source_group  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402
from mim_core.verdict import Verdict  # noqa: E402
from tests.test_appearance import _plain_skin  # noqa: E402

CHUNK = 48  # photos per pass: bounds memory
GRID = 7


def measured(detector: MIMDetector, plain: MIMDetector, images: list) -> dict:
    """Cell features, per-cell hardness of both fills, and verdicts after the shipped check, per photo."""
    parts = []
    for start in range(0, len(images), CHUNK):
        scored = scored_set(plain, images[start:start + CHUNK])
        seen = scored["seen"]
        _, maps = detector.measure_fills(seen, ["gan", "gauss"], ["ssim"], denoised=True)
        hard = {fill: F.adaptive_avg_pool2d(maps[(fill, "ssim")].mean(1, keepdim=True), GRID).flatten(1)
                for fill in ("gan", "gauss")}
        check = detector.appearance
        verdicts = [v if v.is_refusal else Verdict.UNUSABLE if d > check.skin_limit else
                    Verdict.NO_RASH if v is Verdict.MPOX_LIKE and d > check.no_rash_threshold else v
                    for v, d in zip(scored["verdicts"], check.distances(seen))]
        parts.append({"features": detector.appearance.features(seen), **hard, "verdicts": verdicts})
    return {k: (torch.cat([p[k] for p in parts]) if k != "verdicts" else sum((p[k] for p in parts), []))
            for k in parts[0]}


def best_cells(features: torch.Tensor, bank: torch.Tensor, m: int, bank_groups: np.ndarray | None = None,
               groups: np.ndarray | None = None) -> np.ndarray:
    """(B, P, C) cells vs (N, C) bank -> (B,) mean distance of each photo's ``m`` best-matching cells."""
    similarity = features.float() @ bank.float().T
    if groups is not None:
        similarity = similarity.masked_fill(torch.from_numpy(groups[:, None] == bank_groups[None, :])[:, None], -2.0)
    return (1 - similarity.max(2).values).sort(1).values[:, :m].mean(1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--healthy", default="../shared/healthy_skin_dev/Normal")
    parser.add_argument("--out", default="runs/lesion_bank_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.set_grad_enabled(False)
    root = Path(args.data)
    detector = MIMDetector.load(args.weights)
    plain = MIMDetector(detector.generator, detector.config, detector.threshold, detector.card)  # no check
    paths = detector.card["split"]["train"] + detector.card["split"]["val"]
    groups = np.array([source_group(*Path(p).parts[-3:]) for p in paths])
    sets = {"healthy_skin_dev": sorted(Path(args.healthy).iterdir()),
            "dermnet_dev": dev_class_paths(root),
            "synthetic_plain_skin": [Image.fromarray(_plain_skin(seed)) for seed in (0, 1, 2, 3)]}
    calibration = measured(detector, plain, [root / p for p in paths])
    others = {name: measured(detector, plain, images) for name, images in sets.items()}
    passing = np.array([not v.is_refusal for v in calibration["verdicts"]])
    rows = []
    for fill in ("gan", "gauss"):
        for k in (3, 5, 10):
            top = calibration[fill].topk(k, dim=1).indices
            bank = torch.stack([calibration["features"][i, top[i]] for i in range(len(top))]).flatten(0, 1)
            bank_groups = np.repeat(groups, k)
            for m in (1, 3, 5):
                loo = best_cells(calibration["features"], bank, m, bank_groups, groups)
                limit = float(loo[passing].max())
                missed = [bool(loo[i] > loo[passing & (groups != groups[i])].max()) for i in np.flatnonzero(passing)]
                row = {"fill": fill, "k": k, "m": m, "limit": round(limit, 4),
                       "nested_loso_missed": f"{sum(missed)} / {len(missed)}"}
                for name, s in others.items():
                    mpox_like = np.array([v is Verdict.MPOX_LIKE for v in s["verdicts"]])
                    flagged = mpox_like & (best_cells(s["features"], bank, m) > limit)
                    row[name] = f"{int(mpox_like.sum())} mpox-like, {int(flagged.sum())} flagged"
                rows.append(row)
                print(row, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
