"""Command line: ``python -m mim_core {train,calibrate,score,evaluate,cross-source,train-classifier,benchmark} ...``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any


DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = DEFAULT_WEIGHTS_DIR / "mim_gan.pt"
DEFAULT_VERDICT_WEIGHTS = DEFAULT_WEIGHTS_DIR / "effnet_probe.pt"  # the web page's verdict (docs/method.md)
DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "mim_gan.toml"


def _command_line(args: argparse.Namespace) -> str:
    """The command as a user would retype it (``torchrun`` launches name themselves)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node {world} -m mim_core" if world > 1 else "python -m mim_core"
    return " ".join([launcher] + args.argv)


def _recipe_run(args: argparse.Namespace, kind: str) -> tuple[Any, list[str], dict[str, Any]]:
    """The recipe of a train command, checked to be of ``kind``; its data roots (or ``--data``'s); and the
    provenance ``training.json`` records for the card."""
    from .config import read_recipe

    recipe = read_recipe(args.recipe)
    if recipe.kind != kind:
        other = "train-classifier" if recipe.kind == "classifier" else "train"
        raise ValueError(f"{args.recipe} is a {recipe.kind} recipe; train it with `python -m mim_core {other}`.")
    roots = args.data or list(recipe.data_roots)
    return recipe, roots, {"name": recipe.name, "recipe": recipe.as_card_entry(), "command": _command_line(args)}


def _train(args: argparse.Namespace) -> int:
    from .training.train import train

    recipe, roots, provenance = _recipe_run(args, "mim")
    overrides = {f"train__{k}": v for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None}
    config = recipe.config.replace(**overrides)
    run = replace(recipe.run, **{k: v for k, v in (("threads", args.threads), ("device", args.device),
                                                   ("precision", args.precision)) if v is not None},
                  time_limit_s=args.time_limit_min * 60 if args.time_limit_min else None)
    train(roots, args.out, config, run, resume=not args.no_resume, provenance=provenance)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained; next: python -m mim_core calibrate {Path(args.out) / 'model.pt'}", file=sys.stderr)
    return 0


def _score(args: argparse.Namespace) -> int:
    from .checkpoint import load_card
    from .data import ImageDecodeError, decode_image, iter_paths
    from .screening import Screening, load_detector

    verdict = args.verdict_weights
    if load_card(args.weights).get("kind") == "mim" and verdict != "none":
        detector = Screening.load(args.weights, verdict or DEFAULT_VERDICT_WEIGHTS, threads=args.threads,
                                  precision=args.precision)
    elif verdict not in (None, "none"):
        raise ValueError("--verdict-weights goes with MIM weights only (a classifier card gives its own verdict).")
    else:
        detector = load_detector(args.weights, threads=args.threads, precision=args.precision)
    failures = 0
    for path in iter_paths(args.images):
        try:
            result = detector.analyze(decode_image(path)).summary()
        except ImageDecodeError as err:
            failures += 1
            result = {"error": str(err)}
        line = {"path": str(path), **result}
        if args.json:
            print(json.dumps(line), flush=True)
        elif "error" in line:
            print(f"{path}\tERROR\t{line['error']}", flush=True)
        elif line["refused"]:
            print(f"{path}\tREFUSED\t{line['verdict']}\t{line['reason']}", flush=True)
        else:
            print(f"{path}\t{line['score']:.4f}\t(threshold {line['threshold']:.4f})\t{line['verdict']}", flush=True)
    return 1 if failures else 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    card = calibrate(args.weights, args.data, args.export, command=_command_line(args))
    print(json.dumps({"name": card["name"], "threshold": card["threshold"]["value"],
                      **({"no_rash_threshold": card["appearance"]["no_rash"]["threshold"],
                          "skin_limit": card["appearance"]["not_skin"]["limit"]} if "appearance" in card else {})}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate

    results = evaluate(args.weights, args.data, args.out, update_card=args.update_card,
                       per_class_limit=args.per_class_limit, reuse_measurements=args.reuse_measurements,
                       dermnet_short_side=args.dermnet_short_side, device=args.device)
    print((Path(args.out) / "evaluation.md").read_text())
    print(json.dumps({"selected": results["selected"], **results["margins"]}), file=sys.stderr)
    return 0



def _train_classifier(args: argparse.Namespace) -> int:
    from .baselines.train import train_classifier

    recipe, roots, provenance = _recipe_run(args, "classifier")
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("threads", args.threads),
                 ("eval_every", args.eval_every)) if v is not None}
    config = replace(recipe.config, **overrides)
    weights = train_classifier(roots, args.out, config, device=args.device or recipe.run.device,
                               provenance=provenance)
    print(f"trained; next: python -m mim_core calibrate {weights}", file=sys.stderr)
    return 0


def _cross_source(args: argparse.Namespace) -> int:
    from .evaluation.cross_source_run import run_cross_source

    pairs = [item.split("=", 1) for item in args.mim or []]
    mim = {pair[0]: pair[1] for pair in pairs if len(pair) == 2 and all(pair)}
    if len(mim) != len(pairs):
        raise ValueError("--mim takes SOURCE=WEIGHTS pairs, one per source, e.g. MSLD_v1=weights/mim_gan.pt")
    record = dict(item.split("=", 1) for item in args.record_in or [] if "=" in item)
    if len(record) != len(args.record_in or []):
        raise ValueError("--record-in takes METHOD=WEIGHTS pairs, e.g. mim=weights/mim_gan.pt probe=weights/effnet_probe.pt")
    sides = ["dev", "test"] if args.side == "both" else [args.side]
    run_cross_source(args.data, args.healthy, mim, args.out, sides, _command_line(args), record,
                     dev_seeds=args.dev_seeds)
    print((Path(args.out) / "cross_source.md").read_text())
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark.run import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(seed=args.seed, per_class_limit=args.per_class_limit, limit=args.limit,
                             noise_per_class=args.noise_per_class, severities=tuple(args.severities),
                             threads=args.threads, healthy_dirs=tuple(args.healthy))
    run_benchmark(args.weights_dir, args.data, args.out, config)
    print((Path(args.out) / "benchmark.md").read_text())
    return 0


def _add_baseline_commands(sub: argparse._SubParsersAction) -> None:
    """``train-classifier`` and ``benchmark``: classifier baselines and the robustness benchmark."""
    p = sub.add_parser("train-classifier", help="train a classifier baseline (from scratch) from its recipe")
    p.add_argument("--recipe", required=True, help="TOML recipe of kind 'classifier', e.g. recipes/resnet18_others.toml")
    p.add_argument("--out", required=True, help="run folder: model.pt and training.json (then `calibrate` it)")
    p.add_argument("--data", nargs="+", help="data root(s) instead of the recipe's")
    p.add_argument("--steps", type=int, help="override the recipe's steps (quick checks; the card records it)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", help="torch device (default: the recipe's)")
    p.set_defaults(run=_train_classifier)

    p = sub.add_parser("benchmark", help="MIM vs every classifier card: unseen classes, noise, abnormal inputs")
    p.add_argument("--out", required=True, help="folder for benchmark.md, benchmark.json, CSVs and PNG plots")
    p.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS_DIR), help="folder of model cards + weights")
    p.add_argument("--data", nargs="+", default=["../shared/data", "../shared/data_msid"],
                   help="data roots; every mpox source in them is a positive set of its own")
    p.add_argument("--per-class-limit", type=int, help="unseen classes: first N images per DermNet test class")
    p.add_argument("--noise-per-class", type=int, default=2,
                   help="noise: first N images of each DermNet test class join the corrupted negatives (default 2)")
    p.add_argument("--limit", type=int,
                   help="quick checks only: at most N mpox and N Others test photos, N abnormal pictures per category")
    p.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3, 4, 5])
    p.add_argument("--healthy", nargs="*", default=["../shared/healthy_skin_dev/Normal",
                                                    "../shared/healthy_skin_dev/MSID_Normal"],
                   help="folders of healthy-skin photos for part (d), one row each (missing ones skipped)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(run=_benchmark)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mim_core", description="MIM: Mask, Inpainting, and Measure.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the inpainter from a recipe (resumes from OUT/last.pt)")
    p.add_argument("--recipe", default=str(DEFAULT_RECIPE),
                   help="TOML recipe: model config, data roots, run settings (default: the shipped model's)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, model.pt and training.json")
    p.add_argument("--data", nargs="+", help="data root(s) instead of the recipe's (e.g. a copy elsewhere)")
    p.add_argument("--steps", type=int, help="override the recipe's steps (quick checks; the card records it)")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size (quick checks)")
    p.add_argument("--threads", type=int,
                   help="CPU threads (a run setting: resuming with others continues the same model)")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--device", help="where the networks train, e.g. cuda (default: the recipe's)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="override the recipe's precision")
    p.add_argument("--time-limit-min", type=float,
                   help="stop at the first checkpoint after this many minutes of training and export the best so far")
    p.set_defaults(run=_train)

    p = sub.add_parser("score", help="score photos: one line (or JSON object with --json) per image")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="any model card's weights: MIM or a classifier")
    p.add_argument("--verdict-weights", help="with MIM weights: the classifier card whose score and verdict are "
                   "reported, as on the web page (default: weights/effnet_probe.pt); 'none': MIM's own verdict")
    p.add_argument("--json", action="store_true", help="one JSON object per line: path, score, threshold, verdict")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: about 1.8x faster analysis on CPUs with avx512_bf16; scores within 0.01 of fp32")
    p.set_defaults(run=_score)

    p = sub.add_parser("calibrate", help="write the card of a trained run: gate, threshold, no-rash check (that order)")
    p.add_argument("weights", help="RUN/model.pt of a train or train-classifier run (reads RUN/training.json)")
    p.add_argument("--data", nargs="+", help="data root(s) of the photos (default: the ones the run trained on)")
    p.add_argument("--export", help="also copy weights, card and appearance bank to this .pt path (e.g. weights/NAME.pt)")
    p.set_defaults(run=_calibrate)

    p = sub.add_parser("evaluate", help="the fixed protocol: MIM vs controls, dev and test classes")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--data", nargs="+", help="data root(s) of the photos (default: the ones in the card)")
    p.add_argument("--out", required=True, help="folder for evaluation.md, results.json, CSVs and roc.png")
    p.add_argument("--update-card", action="store_true", help="record the results in the model card")
    p.add_argument("--per-class-limit", type=int,
                   help="first N images per class and per mpox split (quick checks only)")
    p.add_argument("--reuse-measurements", action="store_true",
                   help="re-derive scores and tables from OUT/measurements.csv of an earlier run (same weights)")
    p.add_argument("--dermnet-short-side", type=int,
                   help="stress check: shrink DermNet photos to this short side first (224 = MSLD's scale)")
    p.add_argument("--device", default="cpu", help="where the networks run, e.g. cuda (default: cpu)")
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("cross-source", help="fit on one mpox source, judge the other: MIM, baselines, control")
    p.add_argument("--data", nargs="+", default=["../shared/data", "../shared/data_msid"],
                   help="data roots holding both mpox sources (MSLD_v1 and MSID), DermNet and MSLD Others")
    p.add_argument("--healthy", default="../shared/healthy_skin_dev", help="folder with Normal/ and MSID_Normal/")
    p.add_argument("--mim", nargs="*", metavar="SOURCE=WEIGHTS",
                   help="MIM cards trained on one source each, e.g. MSLD_v1=weights/mim_gan.pt")
    p.add_argument("--side", choices=["dev", "test", "both"], default="dev",
                   help="dev for design decisions; test once per shipped model")
    p.add_argument("--out", required=True, help="folder for cross_source.md and cross_source.json")
    p.add_argument("--record-in", nargs="*", metavar="METHOD=WEIGHTS",
                   help="record both sides and the dev winner in these cards, each under its own method "
                        "(e.g. mim=weights/mim_gan.pt probe=weights/effnet_probe.pt); needs --side both")
    p.add_argument("--dev-seeds", type=int, default=1, metavar="N",
                   help="also report the dev side under split seeds 0..N-1 for every method (about 15 s a "
                        "seed): judge design decisions on all of them, not one split")
    p.set_defaults(run=_cross_source)

    _add_baseline_commands(sub)
    return parser


def _plain_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' hook
    """A warning as one sentence for the user (the default shows the source line that raised it)."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Known failures print one plain sentence (no traceback) and exit 2."""
    from .checkpoint import WeightsError
    from .data import ImageDecodeError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _plain_warning
            return args.run(args)
    except (WeightsError, ImageDecodeError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
