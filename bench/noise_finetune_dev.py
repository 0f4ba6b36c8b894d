"""Issue 12 part 3 on dev only: does training on noisy inputs help the inpainter on photos it did not train on?

The input-noise fine-tune of ``docs/ablations.md`` was judged on the mpox train photos it had trained on
(flattering) and on val (too detail-rich to show a noise loss). Here ``--holdout`` photos' worth of mpox
train source photos (seeded, whole sources) are left out of the fine-tune, and the fine-tune is run twice
from the shipped weights with the same steps and seed: with input noise (std drawn in [0, ``--input-noise``],
half of each batch; targets clean) and without (a control for what more training and a fresh
discriminator do by themselves). The last EMA weights of each run are compared with the shipped generator
by the decomposition of ``bench/noise_decomposition_dev.py`` on the held-out photos against the first
``--per-class`` photos of each DermNet dev class, at noise severity 2. Mpox test is never read; nothing is
shipped.

    .venv/bin/python bench/noise_finetune_dev.py train --input-noise 0.12 --steps 2000 --threads 1 &
    .venv/bin/python bench/noise_finetune_dev.py train --input-noise 0 --steps 2000 --threads 1 &
    wait; .venv/bin/python bench/noise_finetune_dev.py evaluate
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from input_noise_dev import auroc  # noqa: E402  (bench/, beside this file)
from noise_decomposition_dev import conditions  # noqa: E402
from mim_core.checkpoint import export_weights, load_generator  # noqa: E402
from mim_core.config import MIMConfig, RunConfig  # noqa: E402
from mim_core.data import decode_image  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402
from mim_core.training import train as training  # noqa: E402

SHIPPED = "weights/mim_gan.pt"


def split_holdout(data_root: str, seed: int, holdout: int) -> tuple[training.MpoxSplit, list[str]]:
    """The protocol's mpox split with whole train source photos (drawn with ``seed``) moved out of train
    until at least ``holdout`` photos are out; returns the reduced split and the held-out paths."""
    split = training.mpox_split(data_root, seed)
    groups = sorted({r.group for r in split.train})
    out: set[str] = set()
    for index in np.random.default_rng(seed + 12).permutation(len(groups)):
        if sum(r.group in out for r in split.train) >= holdout:
            break
        out.add(groups[index])
    kept = [r for r in split.train if r.group not in out]
    return training.MpoxSplit(kept, split.val, split.test), [r.path for r in split.train if r.group in out]


def run_dir(out: Path, input_noise: float) -> Path:
    return out / f"input_noise_{input_noise:g}"


def train(args: argparse.Namespace) -> None:
    reduced, held_out = split_holdout(args.data, 0, args.holdout)
    training.mpox_split = lambda root, seed: reduced  # this script's only change to the protocol
    shipped = MIMDetector.load(SHIPPED)
    config = MIMConfig.from_dict(shipped.card["config"])
    config = replace(config, train=replace(config.train, steps=args.steps, lr=1e-4, checkpoint_every=250,
                                           input_noise=args.input_noise, init_weights=SHIPPED))
    out = run_dir(Path(args.out), args.input_noise)
    training.train(args.data, out, config, RunConfig(threads=args.threads, precision="bf16"))
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    export_weights(out / "final.pt", last["ema"], config)  # the last EMA, not the best clean-val checkpoint
    (out / "held_out.json").write_text(json.dumps(held_out, indent=1))


@torch.inference_mode()
def evaluate(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    runs = {f"fine-tune, input noise {n:g}": run_dir(Path(args.out), n) for n in (args.input_noise, 0.0)}
    held_outs = [json.loads((run / "held_out.json").read_text()) for run in runs.values()]  # what training left out
    if held_outs[0] != held_outs[1]:
        raise SystemExit("the two fine-tunes held out different photos; train both with the same --holdout")
    root, held_out = Path(args.data), held_outs[0]
    mpox = [decode_image(root / p) for p in held_out]
    dermnet = [decode_image(p) for p in dev_class_paths(root, args.per_class)]
    shipped = MIMDetector.load(SHIPPED)
    results = {"held_out_photos": len(held_out)}
    for name, weights in {"shipped": SHIPPED, **{k: run / "final.pt" for k, run in runs.items()}}.items():
        generator, _ = load_generator(weights, None)
        detector = MIMDetector(generator, shipped.config, shipped.threshold, shipped.card)
        pos, neg = conditions(detector, mpox, 2, 0), conditions(detector, dermnet, 2, 1000)
        results[name] = {c: auroc(pos[c], neg[c]) for c in pos}
        print(name, json.dumps(results[name], indent=1), flush=True)
    Path(args.out, "evaluation.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("train", "evaluate"))
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="runs/noise_finetune_dev")
    parser.add_argument("--holdout", type=int, default=15, help="train: mpox train photos left out of the fine-tune")
    parser.add_argument("--input-noise", type=float, default=0.12)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=12)
    args = parser.parse_args()
    if args.phase == "train":
        train(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
