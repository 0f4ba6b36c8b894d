"""Ablation (issue #3, first rung): the GAN discriminator as the measure.

Scores every protocol image with the PatchGAN discriminator saved in a training run's ``last.pt``:
- ``disc:realness``: minus the mean patch logit of the unmasked photo (higher = less real-mpox-like);
- ``disc:worst10``: minus the mean of the lowest 10 % of patch logits;
- ``disc:feature-residual``: distance between discriminator features of the photo and of its MIM
  reconstruction (mean over scales), Skip-GANomaly style.
Reports dev-class AUROC (mpox val vs 10 DermNet dev classes) for each, beside the controls already in
``EVAL/scores.csv``; test numbers only with ``--test``.

    .venv/bin/python bench/ablate_discriminator.py --run runs/mim_v1 --eval runs/eval_v1 [--test]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mim_core.config import MIMConfig  # noqa: E402
from mim_core.data import load_tensor  # noqa: E402
from mim_core.detector import MIMDetector, reconstruct  # noqa: E402
from mim_core.model import PatchDiscriminator  # noqa: E402
from mim_core.evaluation.report import dev_mean_auroc, test_results  # noqa: E402


@torch.inference_mode()
def discriminator_scores(run: Path, weights: Path, data: Path, table: pd.DataFrame) -> pd.DataFrame:
    blob = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    config = MIMConfig.from_dict(blob["config"])
    disc = PatchDiscriminator(config.model)
    disc.load_state_dict(blob["discriminator"])
    disc.eval()
    detector = MIMDetector.load(weights)
    rows = []
    for path in tqdm(table["path"], desc="discriminator", file=sys.stderr, mininterval=10):
        image = load_tensor(data / path, config.preprocess).unsqueeze(0)
        zeros = torch.zeros_like(image[:, :1])
        logits = disc(image, zeros).flatten()
        worst = logits.sort().values[: max(1, logits.numel() // 10)]
        recon = reconstruct(detector._fill, image, detector.bank, config.masks.scales)[0]  # (S,3,H,W)
        f_orig = disc.features(torch.cat([(image - 0.5) * 2, zeros], 1))
        f_recon = disc.features(torch.cat([(recon - 0.5) * 2, zeros.expand(len(recon), -1, -1, -1)], 1))
        rows.append({"disc:realness": -float(logits.mean()), "disc:worst10": -float(worst.mean()),
                     "disc:feature-residual": float((f_orig - f_recon).pow(2).mean())})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/mim_v1")
    parser.add_argument("--eval", default="runs/eval_v1")
    parser.add_argument("--weights", default=str(REPO / "weights" / "mim_gan.pt"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--test", action="store_true", help="also report test classes (final choice only)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    previous = pd.read_csv(Path(args.eval) / "scores.csv")
    table = previous[["path", "dataset", "class", "group", "role"]]
    scores = discriminator_scores(Path(args.run), Path(args.weights), Path(args.data), table)
    scores.to_csv(Path(args.eval) / "discriminator_scores.csv", index=False)
    report = {name: {"dev_mean_auroc": round(dev_mean_auroc(scores[name], table), 4)} for name in scores}
    if args.test:
        summary = test_results(scores, table, list(scores.columns))["summary"]
        for name in scores:
            report[name]["mean_dermnet_test"] = summary[name]["mean_dermnet_test"]
            report[name]["others"] = summary[name]["others"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
