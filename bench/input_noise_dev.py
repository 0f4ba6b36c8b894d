"""Issue 12 part 3 on dev only: does an inpainter fine-tuned on noisy inputs (``train.input_noise``, the
target kept clean) make the shipped measure survive noise?

Each weights file is scored with the shipped card's measure, Wiener step and gate constants (only the
generator differs; and once more without the Wiener step), ungated, on mpox val against two dev negative
sets MIM never trained or chose on: the first ``--per-class`` photos of each DermNet dev class, and MSLD
Others' train + val splits (by source photo, as the benchmark splits it; only the classifier baselines
train on them). Conditions: clean and the benchmark's Gaussian noise severities 1-3 (seeded per
photo). Mpox test is never read. Reported per set: AUROC (mpox vs it) and its drop from clean, and the
share of mpox val and of negatives called mpox-like at the weights' own threshold (the card's rule: the
largest clean mpox val score).

    .venv/bin/python bench/input_noise_dev.py --weights weights/mim_gan.pt runs/ft_noise/model.pt \
        --out runs/input_noise_dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.baselines.train import classifier_split  # noqa: E402
from mim_core.benchmark.corruptions import corrupted_view, to_view, view_tensor  # noqa: E402
from mim_core.checkpoint import load_generator  # noqa: E402
from mim_core.data import decode_image  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402

SEVERITIES = (0, 1, 2, 3)  # 0: clean; 1-3: Gaussian noise std 0.04 / 0.08 / 0.12


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUROC for detecting mpox from MIM scores (lower = more mpox-like), rounded to 4 places."""
    truth = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return round(float(roc_auc_score(truth, -np.r_[positives, negatives])), 4)


def noisy_views(photos: list, severity: int, config, seed: int) -> list[np.ndarray]:
    """(H,W,3) uint8 model views: clean at severity 0, else with the benchmark's Gaussian noise (seeded)."""
    return [to_view(p, config) if severity == 0 else corrupted_view(p, "gaussian_noise", severity, seed + i, config)
            for i, p in enumerate(photos)]


def dev_photos(detector: MIMDetector, root: Path, per_class: int, mpox_parts: tuple[str, ...] = ("val",),
               with_others: bool = True) -> dict:
    """The noise experiments' dev sets, decoded: mpox photos of ``mpox_parts`` of the card's split, the
    first ``per_class`` photos of each DermNet dev class, and (``with_others``) MSLD Others train + val."""
    sets = {**{f"mpox_{part}": [decode_image(root / p) for p in detector.card["split"][part]] for part in mpox_parts},
            "dermnet_dev": [decode_image(p) for p in dev_class_paths(root, per_class)]}
    if with_others:
        others = classifier_split(root, "others", detector.config.train.split_seed).negatives
        sets["others_dev"] = [decode_image(root / r.path) for r in others["train"] + others["val"]]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["weights/mim_gan.pt"])
    parser.add_argument("--card-of", default="weights/mim_gan.pt", help="the card whose measure and gate are used")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--out", default="runs/input_noise_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    shipped = MIMDetector.load(args.card_of)
    pre, root = shipped.config.preprocess, Path(args.data)
    sets = dev_photos(shipped, root, args.per_class)
    views = {(name, s): torch.stack([view_tensor(v) for v in noisy_views(photos, s, pre, 1000 * k)])
             for k, (name, photos) in enumerate(sets.items()) for s in SEVERITIES}
    results = {"n": {k: len(v) for k, v in sets.items()}, "weights": {}}
    for weights, denoise in ((w, d) for w in args.weights for d in ("wiener", "none")):
        generator, _ = load_generator(weights, None)
        detector = MIMDetector(generator, shipped.config, shipped.threshold, shipped.card).with_measure(denoise=denoise)
        scores = {key: detector.score_views(v) for key, v in views.items()}
        threshold = float(scores[("mpox_val", 0)].max())
        rows = {}
        for s in SEVERITIES:
            pos = scores[("mpox_val", s)]
            row = {"mpox_val_called": round(float((pos <= threshold).mean()), 3)}
            for neg_name in ("dermnet_dev", "others_dev"):
                neg = scores[(neg_name, s)]
                row[f"{neg_name}_auroc"] = auroc(pos, neg)
                row[f"{neg_name}_called"] = round(float((neg <= threshold).mean()), 3)
            rows[f"severity_{s}"] = row
        for s in SEVERITIES[1:]:
            for neg_name in ("dermnet_dev", "others_dev"):
                rows[f"severity_{s}"][f"{neg_name}_drop"] = round(
                    rows["severity_0"][f"{neg_name}_auroc"] - rows[f"severity_{s}"][f"{neg_name}_auroc"], 4)
        results["weights"][f"{weights}, denoise {denoise}"] = rows
        print(weights, denoise, json.dumps(rows, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
