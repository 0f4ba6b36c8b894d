"""The cross-source protocol: fit and calibrate on one mpox source, judge photos of the other.

Every earlier figure came from the sources a model learned from. Here a model learns from one mpox source
(its train split; its val split sets the threshold) and is judged on mpox photos of the *other* source,
which it never saw, against negatives of every kind. The roles were fixed before any result was looked at:

- **dev** (design decisions only): the other source's val split of mpox against the 10 DermNet dev classes,
  the design healthy set ``healthy_skin_dev/Normal`` and the half of ``MSLD_v1/Others`` (split by source photo) that
  the supervised baselines learn from.
- **test** (looked at once per shipped model): the other source's remaining mpox photos (train + test
  split: the model never saw either) against the 21 DermNet test classes, half of ``MSLD_v1/Others`` (split
  by source photo) and the test healthy set ``healthy_skin_dev/MSID_Normal``.
- **supervised negatives** (only for baselines that learn from non-mpox photos): the dev side's negatives, all of
  them. The probe scores each dev photo with a probe fitted without it (without its DermNet class, or without its
  fold of the healthy or the Others photos). The Others dev half joined the dev side in the sixth session of
  2026-12-07, before any figure of it was computed.

Caveat stated with every table: ``MSID_Normal`` comes from the same collection as the MSID mpox photos, so in
the MSID -> MSLD direction the healthy test photos share a source with the training photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import ImageRecord, group_split, scan_datasets
from .protocol import DEV_CLASSES, HEALTHY_DESIGN, HEALTHY_TEST, OTHERS
from .stats import auroc_ci, mean_auroc_ci

MPOX_SOURCES = ("MSLD_v1", "MSID")  # the dataset folder of each mpox source
SPLIT_FRACTIONS = (0.6, 0.15, 0.25)  # the same per-source split as training's mpox_split


@dataclass(frozen=True)
class Photo:
    """One photo of the protocol: its file and its source photo (the bootstrap resamples by it)."""

    location: Path
    group: str


@dataclass(frozen=True)
class Direction:
    """Which photos play which role when a model learns from ``train_source`` and meets ``test_source``."""

    train_source: str
    test_source: str
    fit: list[Photo]                # train_source mpox, train split: the bank / the positives a model learns
    calibration: list[Photo]        # train_source mpox, val split: the threshold
    dev_mpox: list[Photo]           # test_source mpox, val split
    test_mpox: list[Photo]          # test_source mpox, train + test split
    dev_negatives: dict[str, list[Photo]] = field(default_factory=dict)   # DermNet dev class -> photos, "healthy"
    test_negatives: dict[str, list[Photo]] = field(default_factory=dict)  # DermNet test class -> photos, others
    supervised_negatives: list[Photo] = field(default_factory=list)       # for baselines that learn from negatives

    @property
    def name(self) -> str:
        return f"{self.train_source} -> {self.test_source}"

    def photos(self) -> list[Photo]:
        """Every photo of the direction once (for measuring before scoring)."""
        seen: dict[Path, Photo] = {}
        for part in (self.fit, self.calibration, self.dev_mpox, self.test_mpox,
                     *self.dev_negatives.values(), *self.test_negatives.values()):
            seen.update((p.location, p) for p in part)
        seen.update((p.location, p) for p in self.supervised_negatives)
        return list(seen.values())


def _photos(records: Sequence[ImageRecord]) -> list[Photo]:
    return [Photo(r.location, r.group) for r in records]


def _healthy(folder: Path) -> list[Photo]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"No healthy skin photos in {folder}")
    return [Photo(p, f"{folder.name}/{p.stem}") for p in files]


def directions(data_roots: Sequence[str | Path], healthy_root: str | Path, seed: int = 0) -> list[Direction]:
    """Both directions between the two mpox sources of ``data_roots`` (each split on its own by source photo).

    Raises:
        ValueError: the roots do not hold both mpox sources, or a source photo would be on both sides.
    """
    records = scan_datasets(data_roots)
    mpox = {s: [r for r in records if r.is_mpox and r.dataset == s] for s in MPOX_SOURCES}
    missing = [s for s, rs in mpox.items() if not rs]
    if missing:
        raise ValueError(f"The cross-source protocol needs mpox photos of {', '.join(MPOX_SOURCES)}; none of "
                         f"{', '.join(missing)} under {', '.join(map(str, data_roots))}.")
    splits = {s: group_split(rs, SPLIT_FRACTIONS, seed) for s, rs in mpox.items()}
    dermnet = [r for r in records if r.dataset == "DermNetNZ"]
    by_class = lambda names: {c: _photos([r for r in dermnet if r.label_class == c]) for c in names}  # noqa: E731
    test_classes = sorted({r.label_class for r in dermnet} - set(DEV_CLASSES))
    others = group_split([r for r in records if f"{r.dataset}/{r.label_class}" == OTHERS], (0.5, 0.0, 0.5), seed)
    healthy_root = Path(healthy_root)
    dev_neg = {**by_class(DEV_CLASSES), "healthy": _healthy(healthy_root / HEALTHY_DESIGN),
               "others": _photos(others["train"])}
    test_neg = {**by_class(test_classes), "others": _photos(others["test"]),
                "healthy": _healthy(healthy_root / HEALTHY_TEST)}
    # the probe's negatives, as its recipe's less MSID_Normal (MSID is a test source here): MSLD Others train, the
    # DermNet dev classes and the healthy design photos
    supervised = [p for c in DEV_CLASSES for p in dev_neg[c]] + dev_neg["healthy"] + dev_neg["others"]
    out = []
    for a, b in (MPOX_SOURCES, MPOX_SOURCES[::-1]):
        fit, cal = _photos(splits[a]["train"]), _photos(splits[a]["val"])
        dev, test = _photos(splits[b]["val"]), _photos(splits[b]["train"] + splits[b]["test"])
        if {p.group for p in dev} & {p.group for p in test}:
            raise ValueError(f"A {b} source photo is on both the dev and the test side.")
        out.append(Direction(a, b, fit, cal, dev, test, dev_neg, test_neg, supervised))
    return out



def _auroc(pos: list[Photo], neg: list[Photo], score: dict[Path, float]) -> dict:
    return auroc_ci([score[p.location] for p in pos], [score[p.location] for p in neg],
                    [p.group for p in pos], [p.group for p in neg]).as_dict()


def side_report(mpox: list[Photo], negatives: dict[str, list[Photo]], score: dict[Path, float],
                threshold: float | None) -> dict:
    """AUROCs of one side (lower score = mpox): mean over DermNet classes with its CI, then healthy and
    MSLD Others on their own; and, at the threshold, the share of each set called mpox-like."""
    classes = [c for c in negatives if c not in ("healthy", "others")]
    pos = [score[p.location] for p in mpox]
    groups = [p.group for p in mpox]
    dermnet = mean_auroc_ci(pos, groups, [([score[p.location] for p in negatives[c]], [p.group for p in negatives[c]])
                                          for c in classes]).as_dict()
    report = {"n_mpox": len(mpox), "dermnet_mean": dermnet,
              **{name: _auroc(mpox, negatives[name], score) for name in ("healthy", "others") if name in negatives}}
    if threshold is not None:
        called = lambda photos: float(np.mean([score[p.location] <= threshold for p in photos]))  # noqa: E731
        report["called_mpox_like"] = {"mpox": called(mpox), "dermnet": called([p for c in classes for p in negatives[c]]),
                                      **{n: called(negatives[n]) for n in ("healthy", "others") if n in negatives}}
    return report
