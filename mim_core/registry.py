"""Model discovery: which model cards a weights folder holds, and loading any of them by its card's kind.

A model is ``NAME.pt`` plus its card ``NAME.json``; MIM (``kind: mim``) and the classifier baselines
(``kind: classifier``) share that shape, so the demo, the benchmark and the clinical module find and
load them all here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import WeightsError, load_card

KINDS = ("mim", "classifier")


@dataclass(frozen=True)
class ModelEntry:
    """A card found in a weights folder, with the path of its weights file."""

    name: str
    kind: str
    card: dict[str, Any]
    weights: Path


def find_models(folder: str | os.PathLike, kinds: tuple[str, ...] = KINDS) -> tuple[list[ModelEntry], list[str]]:
    """Cards in ``folder`` whose kind is in ``kinds``, whose weights file is present and whose card has a
    threshold, sorted by file name; and one note per card that was skipped, saying why.

    JSON files that are not model cards (no ``kind``) are ignored silently.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Weights folder {folder} not found.")
    entries, notes = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            notes.append(f"{path.name}: skipped, not readable JSON")
            continue
        if not isinstance(card, dict) or "kind" not in card:
            continue  # not a model card
        name, kind = str(card.get("name", path.stem)), str(card["kind"])
        weights = folder / str(card.get("weights_file", path.with_suffix(".pt").name))
        if kind not in kinds:
            notes.append(f"{name}: skipped, no scorer registered for kind '{kind}' (known: {', '.join(kinds)})")
        elif not weights.is_file():
            notes.append(f"{name}: skipped, weights file {weights.name} not present")
        elif "value" not in card.get("threshold", {}):
            notes.append(f"{name}: skipped, its card has no threshold.value")
        else:
            entries.append(ModelEntry(name, kind, card, weights))
    return entries, notes


def load_detector(weights: str | os.PathLike, threads: int | None = None, device: str = "cpu") -> Any:
    """A :class:`~mim_core.detector.MIMDetector` or a classifier baseline, picked by the card's ``kind``;
    both answer ``analyze(image)`` with score, threshold, verdict and reason.

    Raises:
        WeightsError: no card, an unknown kind, or weights that do not match their card.
    """
    kind = load_card(weights).get("kind")
    if kind == "mim":
        from .detector import MIMDetector

        return MIMDetector.load(weights, threads=threads, device=device)
    if kind == "classifier":
        from .baselines.classifier import ClassifierDetector

        return ClassifierDetector.load(weights, threads=threads)
    raise WeightsError(f"The card beside {weights} has kind {kind!r}; expected one of {', '.join(KINDS)}.")
