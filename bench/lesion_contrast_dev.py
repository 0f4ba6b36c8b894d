"""Does local colour contrast tell healthy skin from mpox? A candidate "no rash" signal, design sets only.

For each view the detector's checks see (denoised), CIELAB L* and a* are compared with a 21 px median
of themselves; the statistics are the 99th percentile of that deviation and the share of pixels more
than 5 units from it. A lesion-presence check would call a mpox-like photo "no rash visible" below the
smallest value of the mpox train+val photos the model calls mpox-like (mpox-only calibration). The
script counts how many mpox-like healthy_skin_dev and DermNet dev photos fall below it. Mpox test photos
are never read.

    .venv/bin/python bench/lesion_contrast_dev.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import kornia
import numpy as np
import torch
from scipy.ndimage import median_filter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.acquisition import effective_resolution  # noqa: E402
from mim_core.data import decode_image, preprocess  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402
from mim_core.verdict import Verdict  # noqa: E402


def mpox_like_views(detector: MIMDetector, paths: list[Path]) -> torch.Tensor:
    """The denoised views of the photos the detector calls mpox-like (before the no-rash override)."""
    kept = []
    for start in range(0, len(paths), 16):
        photos = [decode_image(p) for p in paths[start:start + 16]]
        views = torch.stack([preprocess(p, detector.config.preprocess) for p in photos])
        resolutions = [effective_resolution(p, detector.config.preprocess) for p in photos]
        judgements = detector.judge(views, resolutions)[0]
        called = [i for i, j in enumerate(judgements) if j.decision.verdict in (Verdict.MPOX_LIKE, Verdict.NO_RASH)]
        if called:  # judge() passed them, so this is the same denoising its measure saw
            kept.append(detector.denoised(views[called]))
    return torch.cat(kept)


def design_set_views(detector: MIMDetector, root: Path, healthy: Path) -> dict[str, torch.Tensor]:
    """:func:`mpox_like_views` of the three sets a lesion-presence check is designed on: ``mpox`` (the
    card's train + val photos, its calibration), ``healthy`` (healthy_skin_dev) and ``dermnet`` (the 10
    DermNet dev classes)."""
    calibration = [root / p for p in detector.card["split"]["train"] + detector.card["split"]["val"]]
    dermnet = dev_class_paths(root)
    return {name: mpox_like_views(detector, paths) for name, paths in
            (("mpox", calibration), ("healthy", sorted(healthy.iterdir())), ("dermnet", dermnet))}


def contrast_statistics(views: torch.Tensor) -> dict[str, np.ndarray]:
    """(B, 3, H, W) in [0, 1] -> {statistic: (B,)} local L* / a* contrast against a 21 px median."""
    lab = kornia.color.rgb_to_lab(views.float()).numpy()
    out = {}
    for channel, name in ((0, "L"), (1, "a")):
        values = lab[:, channel]
        deviation = np.abs(values - np.stack([median_filter(v, size=21, mode="reflect") for v in values]))
        flat = deviation.reshape(len(values), -1)
        out[f"{name}* p99"] = np.percentile(flat, 99, axis=1)
        out[f"{name}* share > 5"] = (flat > 5).mean(axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--healthy", default="../shared/healthy_skin_dev/Normal")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector = MIMDetector.load(args.weights)
    stats = {name: contrast_statistics(views)
             for name, views in design_set_views(detector, Path(args.data), Path(args.healthy)).items()}
    print("| statistic | mpox train+val minimum | healthy mpox-like below it | DermNet dev mpox-like below it |")
    print("|---|---|---|---|")
    for key, mpox in stats["mpox"].items():
        limit = mpox.min()
        below = {name: f"{int((stats[name][key] < limit).sum())} of {len(stats[name][key])}"
                 for name in ("healthy", "dermnet")}
        print(f"| {key} | {limit:.3f} | {below['healthy']} | {below['dermnet']} |")


if __name__ == "__main__":
    main()
