"""Model cards: how a model was made, what it needs, how its threshold was set, what it scored.

The threshold is set on the mpox *val* split only, by :func:`mim_core.calibration.calibrate_threshold`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .calibration import calibrate_threshold
from .checkpoint import architecture, card_path, load_card, load_generator, save_json, sha256_file
from .data import load_tensor
from .verdict import MIM_SCORE_DIRECTION, mpox_when

CARD_FORMAT = "mim-card-v1"
LIMITATIONS = [
    "Research and screening aid only: it does not diagnose mpox or any other disease.",
    "Trained on about 60 web-scraped mpox photos (MSLD v1, 224 px crops); skin tones, body sites, cameras "
    "and lesion stages outside that set are poorly covered.",
    "A low score means 'reproduced as well as mpox', not 'mpox': other rashes may look mpox-like.",
    "Scores depend on image scale and sharpness; see the controls in the evaluation table before trusting a number.",
]


def manifest_sha256(data_root: str | Path) -> str | None:
    manifest = Path(data_root) / "MANIFEST.csv"
    return sha256_file(manifest) if manifest.is_file() else None


def score_records(detector, data_root: str | Path, paths: list[str]) -> np.ndarray:
    """MIM scores of data-root-relative paths, in order (no quality gate: calibration needs every score)."""
    root = Path(data_root)
    images = torch.stack([load_tensor(root / p, detector.config.preprocess) for p in paths])
    return np.concatenate([detector.score_tensors(images[i:i + 8]).scores for i in range(0, len(images), 8)])


def recalibrate(weights: str | Path, data_root: str | Path) -> dict[str, Any]:
    """Re-set the card's threshold for its current measure from the mpox val split; returns the card."""
    from .detector import MIMDetector

    card = load_card(weights)
    detector = MIMDetector.load(weights, require_threshold=False)
    card["threshold"] = calibrate_threshold(score_records(detector, data_root, card["split"]["val"]),
                                            mpox_when(MIM_SCORE_DIRECTION))
    save_json(card_path(weights), card)
    return card


def write_card(weights: str | Path, data_root: str | Path, command: str, name: str = "mim-gan") -> dict[str, Any]:
    """Create the card beside freshly trained weights (from ``training.json`` in the run folder),
    calibrating the threshold on the mpox val split."""
    weights = Path(weights)
    training = json.loads((weights.parent / "training.json").read_text())
    generator, config = load_generator(weights, training["weights_sha256"])
    card = {
        "format": CARD_FORMAT,
        "name": name,
        "kind": "mim",
        "description": "MIM (Mask, Inpainting, and Measure): a GAN inpainter trained on mpox photos only; "
                       "the score is how badly it reproduces masked parts of a photo.",
        "score_direction": MIM_SCORE_DIRECTION,
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "architecture": architecture(generator, config),
        "config": config.to_dict(),
        "training": {
            "command": command,
            "seed": config.train.seed,
            "split_seed": config.train.split_seed,
            "steps": config.train.steps,
            "best_step_by_val_masked_l1": training["best_step"],
            "train_seconds": training["train_seconds"],
            "generator_parameters": training["generator_parameters"],
            "steps_done": training.get("steps_done", config.train.steps),
            # how the run executed (not part of the model: the config above is)
            "run_settings": {key: training[key] for key in ("threads", "device", "precision", "world_size")
                             if key in training},
        },
        "data": {
            "root": "../shared/data",
            "manifest_sha256": manifest_sha256(data_root),
            "train_uses": "MSLD_v1/Monkeypox train split only (mpox photos); no non-mpox image is used to "
                          "train the model or to set its threshold",
            "split_rule": "MSLD mpox split by source photo (file-name prefix before the last '_'), "
                          "~60/15/25 %, seeded",
        },
        "split": training["split"],
        "evaluation": {},
        "limitations": LIMITATIONS,
    }
    save_json(card_path(weights), card)
    from .acquisition import calibrate_card_gate

    calibrate_card_gate(str(weights), str(data_root))
    return recalibrate(weights, data_root)
