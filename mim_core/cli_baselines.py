"""``python -m mim_core train-classifier`` and ``benchmark`` (issue #6): classifier baselines and the
robustness benchmark. Registered on the main parser by :func:`add_commands`; errors are handled there
(one plain sentence, exit 2)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def _train_classifier(args: argparse.Namespace) -> int:
    import shutil

    from .classifier import ClassifierConfig
    from .classifier_train import train_classifier, write_classifier_card

    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("seed", args.seed),
                 ("threads", args.threads), ("eval_every", args.eval_every)) if v is not None}
    config = ClassifierConfig(arch=args.arch, negatives=args.negatives, **overrides)
    name = args.name or f"{config.arch.replace('_', '-')}-{config.negatives.replace('+', '-plus-')}"
    command = " ".join(["python -m mim_core"] + sys.argv[1:])
    if args.export and Path(args.export).suffix != ".pt":
        raise ValueError(f"--export wants a .pt path (its card goes beside it), not {args.export}")
    weights = train_classifier(args.data, args.out, config, device=args.device)
    card = write_classifier_card(weights, args.data, command=command, name=name)
    if args.export:
        target = Path(args.export)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, target)
        from .checkpoint import card_path, save_json

        save_json(card_path(target), {**card, "weights_file": target.name})
    print(json.dumps({"name": name, "weights": str(args.export or weights),
                      "threshold": card["threshold"]["value"], **card["evaluation"]["test_vs_negatives_test_split"]}))
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(seed=args.seed, per_class_limit=args.per_class_limit, limit=args.limit,
                             noise_per_class=args.noise_per_class, severities=tuple(args.severities),
                             threads=args.threads)
    run_benchmark(args.weights_dir, args.data, args.out, config)
    print((Path(args.out) / "benchmark.md").read_text())
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``train-classifier`` and ``benchmark`` subcommands to the main parser's subparsers."""
    p = sub.add_parser("train-classifier", help="train a classifier baseline (from scratch) and write its card")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "mobilenet_v3_small"])
    p.add_argument("--negatives", default="others", choices=["others", "others+dev"],
                   help="MSLD Others only, or also the 10 DermNet dev classes")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", required=True, help="run folder: model.pt, training.json and the card")
    p.add_argument("--export",
                   help="also copy the weights to this .pt path (e.g. weights/NAME.pt) with the card beside it")
    p.add_argument("--name", help="model name in the card (default from arch and negatives)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.set_defaults(run=_train_classifier)

    p = sub.add_parser("benchmark", help="MIM vs every classifier card: unseen classes, noise, abnormal inputs")
    p.add_argument("--out", required=True, help="folder for benchmark.md, benchmark.json, CSVs and PNG plots")
    p.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS_DIR), help="folder of model cards + weights")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--per-class-limit", type=int, help="unseen classes: first N images per DermNet test class")
    p.add_argument("--noise-per-class", type=int, default=2,
                   help="noise: first N images of each DermNet test class join the corrupted negatives (default 2)")
    p.add_argument("--limit", type=int,
                   help="quick checks only: at most N mpox and N Others test photos, N abnormal pictures per category")
    p.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3, 4, 5])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(run=_benchmark)
