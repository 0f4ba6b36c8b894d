"""The fixed evaluation protocol: which images are positives and negatives for what.

Positives are mpox photos of the card's split (val for dev decisions, test for reporting). Negatives:
10 DermNet *dev* classes for design decisions; ``MSLD_v1/Others`` and the 21 other DermNet classes for
reporting only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data import ImageRecord

DEV_CLASSES = (
    "Acne_vulgaris", "Atopic_dermatitis", "Psoriasis", "Rosacea", "Vitiligo", "Urticaria", "Lichen_planus",
    "Pityriasis_versicolor", "Basal_cell_carcinoma", "Bullous_pemphigoid",
)
OTHERS = "MSLD_v1/Others"
# healthy_skin_dev/<folder>: fixed before any result was seen. The design set may shape checks and train the probe
# (never the inpainter); the test set is only ever reported on.
HEALTHY_DATASET = "healthy_skin_dev"  # a data root of its own: <root>/<folder>/<photo>
HEALTHY_DESIGN = "Normal"
HEALTHY_TEST = "MSID_Normal"
# MSID_Normal is the only non-mpox set of MSID's look: a seeded half of it (by photo) teaches the shipped probe that
# this look is not mpox, the other half stays the healthy test set. Chosen after the test result was seen (the probe
# learnt the source: docs/ablations.md). The cross-source protocol never learns from it (MSID is a test source).
HEALTHY_TEST_LEARNT = (0.425, 0.075, 0.5)  # train / val / held out
# DermNet watermark boxes (fractions of width, height): the round logo and the "Te Whatu Ora" lines, both
# bottom left (checked by eye on a random sample). The central crop of preprocessing lies outside them.
WATERMARK_BOXES = ((0.0, 0.66, 0.27, 0.95), (0.0, 0.78, 0.45, 0.95))


def dev_class_paths(data_root: str | Path, per_class: int | None = None) -> list[Path]:
    """The DermNet dev classes' photos (class by class in :data:`DEV_CLASSES` order, each sorted by path),
    or the first ``per_class`` of each: the negatives design decisions and dev scripts use."""
    root = Path(data_root) / "DermNetNZ"
    return [p for c in DEV_CLASSES for p in sorted((root / c).iterdir())[:per_class]]


def assign_roles(records: list[ImageRecord], split: dict[str, list[str]]) -> pd.DataFrame:
    """One row per image with its role: mpox_train / mpox_val / mpox_test / dev / test."""
    part_of = {path: f"mpox_{name}" for name, paths in split.items() for path in paths}
    rows = []
    for r in records:
        if r.is_mpox:
            role = part_of.get(r.path)
            if role is None:
                raise ValueError(f"{r.path} is mpox but not in the card's split; wrong data root?")
        else:
            role = "dev" if r.dataset == "DermNetNZ" and r.label_class in DEV_CLASSES else "test"
        rows.append({"path": r.path, "dataset": r.dataset, "class": f"{r.dataset}/{r.label_class}",
                     "group": r.group, "role": role})
    return pd.DataFrame(rows)
