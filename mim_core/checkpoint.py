"""Weights files and their model cards.

A shipped model is ``NAME.pt`` (generator weights + the config that built them) with ``NAME.json``
beside it: the card. The card records the weights' sha256 and the architecture; both are checked on
every load, so a card can never describe another file than the one beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from dataclasses import asdict
from typing import Any

import torch

from .config import MIMConfig
from .model import InpaintGenerator, count_parameters


CARD_FORMAT = "mim-card-v1"


class WeightsError(RuntimeError):
    """Missing, corrupt or mismatched weights; the message says what to do."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_sha256(data_root: str | os.PathLike) -> str | None:
    """sha256 of a data root's MANIFEST.csv (None when it has none): which data a card was made from."""
    manifest = Path(data_root) / "MANIFEST.csv"
    return sha256_file(manifest) if manifest.is_file() else None


def card_path(weights: str | os.PathLike) -> Path:
    return Path(weights).with_suffix(".json")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temporary file + rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_weights(path: str | os.PathLike, generator_state: dict, config: MIMConfig) -> str:
    """Write the deployable weights file (fp32 generator + config) and return its sha256."""
    save_torch(path, {"format": "mim-generator-v1", "config": config.to_dict(), "generator": generator_state})
    return sha256_file(path)


def load_card(weights: str | os.PathLike) -> dict[str, Any]:
    path = card_path(weights)
    if not path.is_file():
        raise WeightsError(f"Model card {path} not found beside the weights; it must be shipped with them.")
    return json.loads(path.read_text())


def verify_weights(weights: str | os.PathLike, expected_sha256: str | None, train_command: str) -> Path:
    """The weights file, checked to exist and (when a sha256 is given) to match its card.

    Raises:
        WeightsError: a missing file (naming ``train_command``, which makes one) or a sha256 mismatch.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise WeightsError(f"Weights file {weights} not found. Train one with `{train_command}`.")
    if expected_sha256 is not None:
        actual = sha256_file(weights)
        if actual != expected_sha256:
            raise WeightsError(
                f"Weights file {weights} does not match its model card (sha256 {actual[:12]}… vs "
                f"{expected_sha256[:12]}…): it is corrupt or was replaced. Restore the shipped file."
            )
    return weights


def load_generator(weights: str | os.PathLike, expected_sha256: str | None) -> tuple[InpaintGenerator, MIMConfig]:
    """Verify the sha256 (when given) and build the generator in eval mode."""
    weights = verify_weights(weights, expected_sha256, "python -m mim_core train")
    try:
        blob = torch.load(weights, map_location="cpu", weights_only=True)
        config = MIMConfig.from_dict(blob["config"])
        generator = InpaintGenerator(config.model)
        generator.load_state_dict(blob["generator"])
    except Exception as err:  # any failure here means the file is not a MIM generator
        raise WeightsError(f"{weights} is not a readable MIM weights file ({err}).") from err
    return generator.eval(), config


def architecture(generator: InpaintGenerator, config: MIMConfig) -> dict[str, Any]:
    """What a card records of the network: its class, its config section and its parameter count."""
    return {"generator": type(generator).__name__, **asdict(config.model), "parameters": count_parameters(generator)}


# Sections of a card's config that must equal the weights file's own: everything but the measure, which does
# not change the network (an experiment may analyse the same weights with another measure).
IDENTITY_SECTIONS = ("preprocess", "masks", "model", "train")


def check_card_matches(card: dict[str, Any], weights: str | os.PathLike, generator: InpaintGenerator,
                       trained: MIMConfig) -> MIMConfig:
    """The config to run with: the card's, once checked to describe these weights.

    Raises:
        WeightsError: the card's architecture or config differs from the weights file's.
    """
    recorded = card.get("architecture")
    if recorded is not None and recorded != architecture(generator, trained):
        raise WeightsError(f"The model card beside {weights} describes another network ({recorded}) than the "
                           f"weights file holds ({architecture(generator, trained)}); restore the card and weights "
                           "that were shipped together.")
    if "config" not in card:
        return trained
    config = MIMConfig.from_dict(card["config"])
    differs = [f"{section}.{key}" for section in IDENTITY_SECTIONS
               for key, value in asdict(getattr(trained, section)).items()
               if asdict(getattr(config, section))[key] != value]
    if differs:
        raise WeightsError(f"The model card beside {weights} was written for another model (it differs from the "
                           f"weights file in {', '.join(differs)}); restore the card and weights that were shipped "
                           "together.")
    return config
