"""Issue #3 ladder rung: a learned measure, DRAEM-style, with no real negatives.

A small discriminative head sees the inpainter's input/output pair (photo, GAN reconstruction at one mask
scale; 6 channels) and is trained to segment synthetic anomalies pasted into mpox *train* photos: smooth
random blobs (thresholded, upsampled value noise, the usual stand-in for Perlin noise) filled with noise,
a flat colour, or the texture of another mpox photo, blended at a random opacity. The frozen inpainter
reconstructs the corrupted photo, so the head learns where the reconstruction disagrees with the photo in
the way anomalies make it disagree. Score of a photo: mean over the mask scales of the mean of the top 10 %
of the head's anomaly probabilities. Higher = less mpox-like. Dev AUROC only.

    python bench/ablate_draem.py --weights weights/mim_gan.pt --steps 600 --out runs/ablate_draem.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.training.augment import augment  # noqa: E402
from mim_core.data import decode_image, load_tensor, scan_dataset  # noqa: E402
from mim_core.detector import MIMDetector, reconstruct  # noqa: E402
from mim_core.protocol import assign_roles  # noqa: E402
from mim_core.evaluation.report import dev_mean_auroc  # noqa: E402


class AnomalyHead(nn.Module):
    """(B,6,H,W) photo + reconstruction in [0,1] -> (B,1,H,W) anomaly logits; dilations give ~60 px context."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers, cin = [], 6
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(cin, width, 3, padding=dilation, dilation=dilation), nn.GroupNorm(8, width), nn.GELU()]
            cin = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, photo: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        x = torch.cat([photo, recon], 1) * 2 - 1
        return self.out(self.body(x))


def blob_masks(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n,1,size,size) smooth random blobs covering ~5-40 % of the crop."""
    coarse = torch.randn(n, 1, 8, 8, generator=generator)
    smooth = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    cover = 0.05 + 0.35 * torch.rand(n, 1, 1, 1, generator=generator)
    cut = torch.stack([torch.quantile(row, 1 - c) for row, c in zip(smooth.flatten(1), cover.flatten())]).view(n, 1, 1, 1)
    return (smooth >= cut).float()


def corrupt(images: torch.Tensor, textures: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,3,H,W) mpox crops -> (corrupted, anomaly masks (B,1,H,W)). Fills: noise, flat colour, other texture."""
    b, _, h, w = images.shape
    masks = blob_masks(b, h, generator)
    kind = torch.randint(0, 3, (b,), generator=generator)
    noise = torch.rand(b, 3, h, w, generator=generator)
    flat = torch.rand(b, 3, 1, 1, generator=generator).expand(b, 3, h, w)
    fill = torch.where((kind == 0).view(b, 1, 1, 1), noise, torch.where((kind == 1).view(b, 1, 1, 1), flat, textures))
    opacity = 0.3 + 0.7 * torch.rand(b, 1, 1, 1, generator=generator)
    blended = masks * (opacity * fill + (1 - opacity) * images) + (1 - masks) * images
    return blended, masks


@torch.inference_mode()
def scale_reconstructions(detector: MIMDetector, images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,S,3,H,W) GAN reconstructions, one per mask scale."""
    return reconstruct(detector._fill, images, detector.bank, detector.config.masks.scales)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = torch.Generator().manual_seed(0)

    detector = MIMDetector.load(args.weights)
    size, root = detector.config.preprocess.size, Path(args.data)
    table = assign_roles(scan_dataset(args.data), detector.card["split"])
    table = table[table["role"].isin(["mpox_train", "mpox_val", "dev"])].reset_index(drop=True)
    train_photos = [torch.from_numpy(np.array(decode_image(root / p))).permute(2, 0, 1).float() / 255
                    for p in table.loc[table["role"] == "mpox_train", "path"]]

    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = AnomalyHead()
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    started = time.time()
    for step in tqdm(range(args.steps), desc="train head", file=sys.stderr, mininterval=10):
        picks = torch.randint(len(train_photos), (2 * args.batch_size,), generator=rng)
        views = torch.stack([augment(train_photos[int(i)], size, rng) for i in picks])
        images, textures = views[: args.batch_size], views[args.batch_size:]
        corrupted, masks = corrupt(images, textures, rng)
        scale = int(torch.randint(detector.bank.shape[0], (1,), generator=rng))
        with torch.inference_mode():
            recon = reconstruct(detector._fill, corrupted, detector.bank[scale:scale + 1],
                                detector.config.masks.scales[scale:scale + 1])[:, 0]
        logits = head(corrupted, recon.clone())
        loss = F.binary_cross_entropy_with_logits(logits, masks, pos_weight=torch.tensor(3.0))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    train_seconds = time.time() - started

    head.eval()
    scores = []
    with torch.inference_mode():
        for path in tqdm(table["path"], desc="score", file=sys.stderr, mininterval=10):
            image = load_tensor(root / path, detector.config.preprocess).unsqueeze(0)
            recon = scale_reconstructions(detector, image)[0]  # (S,3,H,W)
            probs = torch.sigmoid(head(image.expand(len(recon), -1, -1, -1), recon)).flatten(1)
            scores.append(float(probs.topk(probs.shape[1] // 10, dim=1).values.mean()))
    dev = dev_mean_auroc(pd.Series(scores), table)
    result = {"recipe": "DRAEM-lite head on (photo, GAN reconstruction)", "steps": args.steps,
              "train_seconds": round(train_seconds, 1), "final_loss": round(float(loss), 4),
              "dev_mean_auroc": round(dev, 4), "dev_mean_auroc_reversed": round(dev_mean_auroc(-pd.Series(scores), table), 4)}
    print(json.dumps(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
