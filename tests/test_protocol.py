"""The protocol's DermNet dev photos: the list dev scripts use is the set the evaluation calls "dev"."""

from __future__ import annotations

import json
from pathlib import Path

from mim_core.data import scan_dataset
from mim_core.evaluation.protocol import DEV_CLASSES, assign_roles, dev_class_paths

CARD = json.loads((Path(__file__).parents[1] / "weights" / "mim_gan.json").read_text())


def test_dev_class_paths_are_the_evaluations_dev_role(data_root: Path):
    roles = assign_roles(scan_dataset(data_root), CARD["split"])
    dev = {(data_root / p) for p in roles.loc[roles["role"] == "dev", "path"]}
    paths = dev_class_paths(data_root)
    assert len(paths) == len(set(paths)) and set(paths) == dev


def test_dev_class_paths_take_the_first_photos_of_each_class_in_order(data_root: Path):
    every, first = dev_class_paths(data_root), dev_class_paths(data_root, 3)
    assert [p.parent.name for p in first] == [c for c in DEV_CLASSES for _ in range(3)]
    for c in DEV_CLASSES:
        chosen = [p for p in first if p.parent.name == c]
        rest = [p for p in every if p.parent.name == c and p not in chosen]
        assert chosen == sorted(chosen) and max(chosen) < min(rest)
