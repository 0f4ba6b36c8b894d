"""Shared fixtures. The real data lives at ../shared/data (beside the repository), as in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = (REPO.parent / "shared" / "data").resolve()
MSID_ROOT = (REPO.parent / "shared" / "data_msid").resolve()  # a second mpox source, same layout
SHIPPED_WEIGHTS = REPO / "weights" / "mim_gan.pt"

torch.set_num_threads(2)


def located(path: str) -> Path:
    """A card's root-relative photo path under whichever data root holds it (the shipped model has two)."""
    from mim_core.data import locate

    return locate([DATA_ROOT, MSID_ROOT], path)


def shipped_copy(folder: Path) -> Path:
    """The shipped weights, card and appearance bank copied into ``folder``; returns the weights path."""
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    card = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())
    for name in (SHIPPED_WEIGHTS.name, SHIPPED_WEIGHTS.with_suffix(".json").name, card["appearance"]["bank"]):
        shutil.copy(SHIPPED_WEIGHTS.parent / name, folder / name)
    return folder / SHIPPED_WEIGHTS.name


@pytest.fixture(scope="session")
def data_root() -> Path:
    assert (DATA_ROOT / "MANIFEST.csv").is_file(), f"the shared data set is expected at {DATA_ROOT}"
    return DATA_ROOT


@pytest.fixture(scope="session")
def msid_root() -> Path:
    assert (MSID_ROOT / "MANIFEST.csv").is_file(), f"the second mpox source is expected at {MSID_ROOT}"
    return MSID_ROOT


@pytest.fixture(scope="session")
def detector():
    from mim_core.detector import MIMDetector

    return MIMDetector.load(SHIPPED_WEIGHTS, threads=2)


@pytest.fixture(scope="session")
def screening(detector):
    """What the demo runs: the shipped MIM with the shipped probe's verdict."""
    from mim_core import Screening
    from mim_core.baselines.classifier import ClassifierDetector

    return Screening(detector, ClassifierDetector.load(REPO / "weights" / "effnet_probe.pt"))


def dump(db: Path) -> list[str]:
    """Every statement that recreates the SQLite database ``db``: equal dumps mean nothing changed."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
