"""Calibration: from a trained weights file to its model card, in one enforced order.

``python -m mim_core calibrate RUN/model.pt`` reads ``RUN/training.json`` (written by ``train`` or
``train-classifier``, with the recipe that made the weights) and writes the card ``RUN/model.json``:

- MIM: (1) the acquisition gate from the mpox train + val photos; (2) the threshold from the mpox val
  photos, as the detector sees them (denoised for the noise above the gate's ``clean_noise``, so after 1);
  (3) the appearance checks ("no rash visible", "not a skin photo"): their memory bank from the mpox
  train + val views the measure sees (after 1) and their limits; (4) the card, written once at the end.
- A classifier baseline: the threshold from the mpox val photos and its val / test metrics.

No non-mpox photo sets a threshold. Every section is computed in memory from the previous ones and the
card is written in one atomic step, so a failure leaves no half-calibrated card. ``--export`` copies the
weights, the appearance bank and the card to a shipped name (e.g. ``weights/mim_gan.pt``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .appearance import AppearanceConfig, calibrate_appearance
from .baselines.train import classifier_card
from .benchmark.corruptions import VIEW_CORRUPTIONS, view_tensor
from .checkpoint import (CARD_FORMAT, WeightsError, architecture, card_path, load_generator, manifest_sha256, save_json,
                         sha256_file)
from .config import MIMConfig
from .data import decode_image, load_tensor, locate, preprocess, source_group, to_uint8
from .detector import MIMDetector
from .evaluation.protocol import dev_class_paths
from .gate import GateThresholds, calibrate_gate, effective_resolution, quality_gate
from .verdict import MIM_SCORE_DIRECTION, calibrate_threshold, mpox_when

MIM_LIMITATIONS = [
    "Research and screening aid only: it does not diagnose mpox or any other disease.",
    "Trained on a few dozen to about 150 web-scraped mpox photos (the train split named in this card); skin "
    "tones, body sites, cameras and lesion stages outside them are poorly covered, and on photos from sources it "
    "never saw its verdict carries little signal (see the cross-source section).",
    "It calls most photos of healthy skin mpox-like: healthy skin inpaints about as easily as the skin between "
    "mpox lesions.",
    "A low score means 'reproduced as well as mpox', not 'mpox': other rashes may look mpox-like.",
    "Scores depend on image scale and sharpness; see the controls in the evaluation table before trusting a number.",
    "The acquisition gate refuses noisy, blurred, compressed and enlarged photos rather than judging them; it "
    "also refuses some mildly degraded ones (docs/benchmark.md).",
    "'No rash visible' comes from an ImageNet patch distance to the mpox photos: it flags photos unlike the "
    "mpox photos (whole hands, torsos, backgrounds), not the absence of lesions.",
]


def read_training(weights: str | Path) -> dict[str, Any]:
    """``training.json`` beside freshly trained weights, checked to describe them.

    Raises:
        WeightsError: no record (weights not from ``train``), or weights that changed since training.
    """
    weights = Path(weights)
    record = weights.parent / "training.json"
    if not record.is_file():
        raise WeightsError(f"No training.json beside {weights}: calibrate works on the run folder that "
                           "`python -m mim_core train` (or train-classifier) wrote.")
    training = json.loads(record.read_text())
    if sha256_file(weights) != training["weights_sha256"]:
        raise WeightsError(f"{weights} is not the file its training.json describes (sha256 differs).")
    return training


def score_paths(detector: MIMDetector, data_roots: str | Path | Sequence[str | Path], paths: list[str]) -> np.ndarray:
    """MIM scores of root-relative paths (found under the first of ``data_roots`` that has each), in order,
    without the gates (calibration needs every score)."""
    return score_views(detector, torch.stack([load_tensor(locate(data_roots, p), detector.config.preprocess)
                                              for p in paths]))


def score_views(detector: MIMDetector, views: torch.Tensor, denoised: bool = False) -> np.ndarray:
    """(N, 3, H, W) preprocessed views (``denoised``: already through ``detector.denoised``) -> (N,) scores,
    in batches of 8, without the gates."""
    return np.concatenate([detector.score_tensors(views[i:i + 8], denoised).scores for i in range(0, len(views), 8)])


DEGRADE_SEVERITY = 3  # the strongest of the benchmark's default severities (distances grow with severity)
DEGRADED_RULE = ("every view corruption of the benchmark (" + ", ".join(VIEW_CORRUPTIONS) + f") at severity "
                 f"{DEGRADE_SEVERITY}, seeded by the photo's index, denoised as the detector does")


def degraded_copies(detector: MIMDetector, views: torch.Tensor, batch: int = 32
                    ) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Batches of (copies of ``views`` under :data:`DEGRADED_RULE`, index of each copy's view): photos with
    the acquisition faults the gate refuses, which the whole-view not-skin limit must still call skin.
    Lazy: a copy of every reference view per corruption would not fit in memory at once."""
    for corrupt in VIEW_CORRUPTIONS.values():
        for start in range(0, len(views), batch):
            index = list(range(start, min(start + batch, len(views))))
            copies = torch.stack([view_tensor(corrupt(to_uint8(views[i]), DEGRADE_SEVERITY, i)) for i in index])
            yield detector.denoised(copies), index


def mim_sections(weights: Path, generator: torch.nn.Module, config: MIMConfig, data_roots: list[Path],
                 split: dict[str, list[str]], command: str) -> dict[str, dict[str, Any]]:
    """The calibrated sections of a MIM card, in their order: ``quality_gate``, ``threshold``, ``appearance``.

    The threshold's scores and the appearance bank both come from views denoised with the gate's
    ``clean_noise``, so the gate comes first; the no-rash and patch limits judge only views the gate passes,
    the whole-view not-skin limit also degraded copies of its reference photos (:func:`degraded_copies`).
    The appearance bank is written beside ``weights``.
    """
    calibration = split["train"] + split["val"]
    photos = [decode_image(locate(data_roots, p)) for p in calibration]
    gate = {**calibrate_gate(photos, config.preprocess), "command": command}

    detector = MIMDetector(generator, config, float("nan"), {"quality_gate": gate})
    views = torch.stack([preprocess(photo, config.preprocess) for photo in photos])
    seen = detector.denoised(views)  # the views the detector's measure and appearance check see
    val_scores = score_views(detector, seen[len(split["train"]):], denoised=True)
    threshold = calibrate_threshold(val_scores, mpox_when(MIM_SCORE_DIRECTION))

    limits = GateThresholds.from_card({"quality_gate": gate})
    judged = [quality_gate(to_uint8(v), limits, effective_resolution(photo, config.preprocess)) is None
              for v, photo in zip(views, photos)]
    groups = [source_group(*Path(p).parts[-3:]) for p in calibration]
    skin = dev_class_paths(next((r for r in data_roots if (r / "DermNetNZ").is_dir()), data_roots[0]))
    skin_photos = torch.stack([preprocess(decode_image(p), config.preprocess) for p in skin])
    bank = weights.with_name(f"{weights.stem}_appearance.pt")
    degraded = degraded_copies(detector, torch.cat([views, skin_photos]))
    appearance = {**calibrate_appearance(seen, groups, judged, detector.denoised(skin_photos), bank, AppearanceConfig(),
                                         degraded, DEGRADED_RULE), "command": command}
    return {"quality_gate": gate, "threshold": threshold, "appearance": appearance}


def mim_card(weights: Path, training: dict[str, Any], data_roots: list[Path], command: str) -> dict[str, Any]:
    """The whole card of a MIM run (see module doc)."""
    generator, config = load_generator(weights, training["weights_sha256"])
    recipe = training.get("recipe") or {}
    sections = mim_sections(weights, generator, config, data_roots, training["split"], command)
    sources = sorted({path.rpartition("/")[0] for path in training["split"]["train"]})  # e.g. MSLD_v1/Monkeypox
    return {
        "format": CARD_FORMAT,
        "name": training.get("name", "mim-gan"),
        "kind": "mim",
        "description": "MIM (Mask, Inpainting, and Measure): a GAN inpainter trained on mpox photos only; "
                       "the score is how badly it reproduces masked parts of a photo.",
        "score_direction": MIM_SCORE_DIRECTION,
        "weights_file": weights.name,
        "weights_sha256": training["weights_sha256"],
        "architecture": architecture(generator, config),
        "config": config.to_dict(),
        "recipe": recipe,
        "training": {
            "command": training.get("command", ""),
            "seed": config.train.seed,
            "split_seed": config.train.split_seed,
            "steps": training["steps_done"],
            "best_step_by_val_masked_l1": training["best_step"],
            "train_seconds": training["train_seconds"],
            "generator_parameters": training["generator_parameters"],
            # how the run executed (not part of the model: the config above is)
            "run_settings": {key: training[key] for key in ("threads", "device", "precision", "world_size")
                             if key in training},
            **({"note": training["note"]} if "note" in training else {}),  # what the record alone cannot say
        },
        "data": {
            "roots": training.get("data_roots", [str(r) for r in data_roots]),
            "manifest_sha256": manifest_sha256(data_roots[0]) if len(data_roots) == 1 else
            {str(r): manifest_sha256(r) for r in data_roots},
            "train_uses": f"the mpox train split only ({', '.join(sources)}); no non-mpox image is used to "
                          "train the model or to set its threshold",
            "split_rule": "each mpox source split on its own by source photo (file-name prefix before the last "
                          "'_'), ~60/15/25 %, seeded",
        },
        "split": training["split"],
        **sections,
        "calibration": {"command": command, "order": ["quality_gate", "threshold", "appearance"]},
        "evaluation": {},
        "limitations": MIM_LIMITATIONS,
    }


def calibrate(weights: str | Path, data_roots: Sequence[str | Path] | None = None, export: str | Path | None = None,
              command: str | None = None) -> dict[str, Any]:
    """Calibrate the run's weights and write their card beside them (and to ``export``); returns the card.

    Args:
        data_roots: where the photos are; default the roots the training run read.
        export: a ``.pt`` path to copy the weights, card (and appearance bank) to, renamed after it.
    Raises:
        WeightsError: no training record, or weights that differ from it.
        ValueError: an ``export`` path that is not a ``.pt`` file.
    """
    weights = Path(weights)
    training = read_training(weights)
    if export is not None and Path(export).suffix != ".pt":
        raise ValueError(f"--export wants a .pt path (its card goes beside it), not {export}")
    roots = [Path(r) for r in (data_roots or training["data_roots"])]
    command = command or f"python -m mim_core calibrate {weights}"
    if training.get("kind", "mim") == "classifier":
        card = classifier_card(weights, training, roots, command)
    else:
        card = mim_card(weights, training, roots, command)
    save_json(card_path(weights), card)
    if export is not None:
        card = export_model(weights, card, Path(export))
    return card


def export_model(weights: Path, card: dict[str, Any], target: Path) -> dict[str, Any]:
    """Copy weights, appearance bank and card to ``target`` (``NAME.pt``, ``NAME.json``,
    ``NAME_appearance.pt``); returns the exported card (its file names changed, nothing else)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    card = {**card, "weights_file": target.name}
    if "appearance" in card:
        bank = target.with_name(f"{target.stem}_appearance.pt")
        shutil.copyfile(weights.parent / card["appearance"]["bank"], bank)
        card["appearance"] = {**card["appearance"], "bank": bank.name}
    shutil.copyfile(weights, target)
    save_json(card_path(target), card)
    print(f"exported {target} and its card", file=sys.stderr)
    return card
