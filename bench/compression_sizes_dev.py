"""Ordinary JPEG of photos near the model's size: how often the compression gate refuses it, and what it
costs MIM when the gate is switched off (a check of the shipped limits; nothing is chosen here).

Photos: the first 6 of each DermNet dev class and the first 30 mpox train photos (refusal shares), and
the 76 mpox train + val photos (MIM's verdicts), downsized to a short side of 233 / 240 / 256 / 300 px
(resolution 1.00-1.29 photo px per model px) and sent through JPEG at quality 95 / 85 / 75 (/ 50).
No test photo is read.

    .venv/bin/python bench/compression_sizes_dev.py   # ~1 min on 2 cores
"""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.acquisition import effective_resolution, measure_quality  # noqa: E402
from mim_core.benchmark.corruptions import to_view  # noqa: E402
from mim_core.data import decode_image, preprocess  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402
from mim_core.quality import is_compressed  # noqa: E402

SIDES = (233, 240, 256, 300)


def resized_jpeg(photo: Image.Image, side: int, quality: int | None) -> Image.Image:
    """``photo`` with its short side at ``side`` px (Lanczos), then a JPEG round trip (None: none)."""
    scale = side / min(photo.size)
    small = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    if quality is None:
        return small
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def main() -> None:
    torch.set_num_threads(2)
    root = Path("../shared/data")
    detector = MIMDetector.load("weights/mim_gan.pt")
    gate, config = detector.gate, detector.config.preprocess
    split = detector.card["split"]
    sample = (dev_class_paths(root, 6)
              + [root / p for p in split["train"][:30]])
    photos = [decode_image(p) for p in sample]
    print("refused as compressed:")
    for side in SIDES:
        for quality in (95, 85, 75):
            refused = []
            for photo in photos:
                sent = resized_jpeg(photo, side, quality)
                quality = measure_quality(to_view(sent, config), effective_resolution(sent, config))
                refused.append(is_compressed(quality, gate))
            print(f"  short side {side} px, quality {quality}: {np.mean(refused):.0%} of {len(refused)}")
    ungated = MIMDetector(detector.generator, detector.config, detector.threshold, detector.card,
                          appearance=detector.appearance)
    ungated.gate = dataclasses.replace(gate, max_blockiness=np.inf, max_photo_blockiness=np.inf)
    mpox = [decode_image(root / p) for p in split["train"] + split["val"]]
    print("MIM on the mpox train + val photos at 240 px, compression gate off:")
    for quality in (None, 95, 75, 50):
        sent = [resized_jpeg(p, 240, quality) for p in mpox]
        views = torch.stack([preprocess(p, config) for p in sent])
        judgements, _, _ = ungated.judge(views, [effective_resolution(p, config) for p in sent])
        verdicts = [j.decision.verdict.value for j in judgements]
        print(f"  quality {quality or 'none'}: " + ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts))))


if __name__ == "__main__":
    main()
