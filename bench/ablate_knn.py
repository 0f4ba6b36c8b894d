"""Issue #3 ladder rung: patch features + nearest-neighbour scoring over mpox train patches (PatchCore-style).

The features come from networks trained from scratch on mpox photos only, by self-supervision: the
inpainter's encoder (its pretext task is filling masked skin) and the discriminator (real vs inpainted).
Control: the same architecture with seeded random weights (trained on nothing), same memory bank.

Per image: features of the unmasked 128 px crop at 1/2, 1/4 and 1/8 resolution, pooled to a 16x16 grid
(3x3 local averaging first), L2-normalised per level; the score is the mean over the grid of each
location's distance to its nearest mpox-train patch (or the mean of the top 10 %). Higher = less mpox-like.
Dev AUROC only (mpox val vs the 10 DermNet dev classes), as every design choice.

    python bench/ablate_knn.py --weights weights/mim_gan.pt --out runs/ablate_knn.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.config import MIMConfig  # noqa: E402
from mim_core.data import load_tensor, scan_dataset  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.model import InpaintGenerator, PatchDiscriminator  # noqa: E402
from mim_core.protocol import assign_roles  # noqa: E402
from mim_core.evaluation.report import dev_mean_auroc  # noqa: E402

GRID = 16


def _pool(feature: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) -> (B,C,GRID,GRID), locally averaged then L2-normalised over channels."""
    feature = F.avg_pool2d(feature, 3, 1, 1)
    return F.normalize(F.adaptive_avg_pool2d(feature, GRID), dim=1)


@torch.inference_mode()
def generator_features(generator: InpaintGenerator, images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B, GRID*GRID, C): encoder features of the unmasked image (mask channel all zero)."""
    mask = torch.zeros_like(images[:, :1])
    s0 = generator.stem(torch.cat([(images - 0.5) * 2, mask], 1))
    s1 = generator.down1(s0)
    s2 = generator.down2(s1)
    bottleneck = generator.body(generator.down3(s2))
    levels = torch.cat([_pool(s1), _pool(s2), _pool(bottleneck)], 1)
    return levels.flatten(2).transpose(1, 2)


@torch.inference_mode()
def discriminator_features(discriminator: PatchDiscriminator, images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B, GRID*GRID, C): the three stride-2 stages of the discriminator."""
    x = torch.cat([(images - 0.5) * 2, torch.zeros_like(images[:, :1])], 1)
    levels = []
    for layer in discriminator.features:
        x = layer(x)
        if isinstance(layer, torch.nn.LeakyReLU):
            levels.append(_pool(x))
    return torch.cat(levels, 1).flatten(2).transpose(1, 2)


def knn_scores(features: torch.Tensor, bank: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N, P, C) image patches vs (M, C) memory -> {'mean': (N,), 'top10': (N,)} NN distances."""
    out = {"mean": [], "top10": []}
    for image in features:
        nearest = torch.cdist(image, bank).min(1).values  # (P,)
        out["mean"].append(nearest.mean())
        out["top10"].append(nearest.topk(max(1, len(nearest) // 10)).values.mean())
    return {k: torch.stack(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--run", help="training run folder with last.pt (for the discriminator); optional")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    detector = MIMDetector.load(args.weights)
    config: MIMConfig = detector.config
    table = assign_roles(scan_dataset(args.data), detector.card["split"])
    table = table[table["role"].isin(["mpox_train", "mpox_val", "dev"])].reset_index(drop=True)
    started = time.time()
    images = torch.stack([load_tensor(Path(args.data) / p, config.preprocess)
                          for p in tqdm(table["path"], desc="load", file=sys.stderr, mininterval=10)])
    print(f"loaded {len(images)} crops in {time.time() - started:.0f} s", file=sys.stderr)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        random_generator = InpaintGenerator(config.model).eval()
        random_discriminator = PatchDiscriminator(config.model).eval()
    extractors = {"inpainter-encoder": lambda x: generator_features(detector.generator, x),
                  "random-encoder (control)": lambda x: generator_features(random_generator, x),
                  "random-discriminator (control)": lambda x: discriminator_features(random_discriminator, x)}
    if args.run:
        blob = torch.load(Path(args.run) / "last.pt", map_location="cpu", weights_only=False)
        trained_discriminator = PatchDiscriminator(config.model).eval()
        trained_discriminator.load_state_dict(blob["discriminator"])
        extractors["discriminator"] = lambda x: discriminator_features(trained_discriminator, x)

    train_rows = (table["role"] == "mpox_train").to_numpy()
    results = []
    for name, extract in extractors.items():
        started = time.time()
        features = torch.cat([extract(batch) for batch in images.split(32)])
        bank = features[torch.from_numpy(train_rows)].flatten(0, 1)
        scores = knn_scores(features, bank)
        seconds = time.time() - started
        for reducer, values in scores.items():
            dev = dev_mean_auroc(pd.Series(values.numpy()), table)
            results.append({"features": name, "reduce": reducer, "dev_mean_auroc": round(dev, 4),
                            "bank_patches": len(bank), "seconds": round(seconds, 1)})
            print(json.dumps(results[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
