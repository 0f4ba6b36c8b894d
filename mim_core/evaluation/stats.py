"""AUROC with group-bootstrap confidence intervals.

The bootstrap resamples *source groups* (all crops of one photo together), positives and negatives
separately, so crops of one photo never pretend to be independent evidence. It reuses one pairwise
comparison matrix, which makes 2000 resamples cheap. The point estimate is read from the same matrix
(the Mann-Whitney statistic, ties counted half: scikit-learn's ``roc_auc_score`` to float rounding, which
a test checks); calling sklearn took most of an evaluation's time, in its input validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class AUROC:
    value: float
    low: float
    high: float
    n_pos: int
    n_neg: int

    def as_dict(self) -> dict[str, float | int]:
        return {"auroc": round(self.value, 4), "ci_low": round(self.low, 4), "ci_high": round(self.high, 4),
                "n_pos": self.n_pos, "n_neg": self.n_neg}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _group_weights(groups: Sequence[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_items) multiplicity of each item when groups are drawn with replacement."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    draws = rng.integers(0, len(names), size=(n_boot, len(names)))
    rows = np.arange(n_boot)[:, None] * len(names)  # one bincount over all resamples at once
    counts = np.bincount((draws + rows).ravel(), minlength=n_boot * len(names)).reshape(n_boot, len(names))
    return counts[:, index].astype(np.float64)


def _point_and_wins(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray]:
    """AUROC (lower score = positive) and wins[i, j] = 1 if positive i ranks as more mpox-like than
    negative j, 0.5 for ties; the AUROC is the mean of wins."""
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    wins = (pos[:, None] < neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    return float(wins.mean()), wins


def _boot_auroc(wp: np.ndarray, wins: np.ndarray, wn: np.ndarray) -> np.ndarray:
    return np.einsum("bi,ij,bj->b", wp, wins, wn) / (wp.sum(1) * wn.sum(1))


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return float(low), float(high)


def _own_groups(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def auroc_ci(
    pos_scores: Sequence[float],
    neg_scores: Sequence[float],
    pos_groups: Sequence[str] | None = None,
    neg_groups: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> AUROC:
    """AUROC for detecting positives when *lower* scores mean positive (MIM: higher = less mpox-like),
    with a percentile bootstrap CI over groups (each item its own group when groups are None)."""
    pos, neg = np.asarray(pos_scores, float), np.asarray(neg_scores, float)
    value, wins = _point_and_wins(pos, neg)
    rng = np.random.default_rng(seed)
    wp = _group_weights(pos_groups if pos_groups is not None else _own_groups(len(pos)), n_boot, rng)
    wn = _group_weights(neg_groups if neg_groups is not None else _own_groups(len(neg)), n_boot, rng)
    return AUROC(value, *_interval(_boot_auroc(wp, wins, wn), level), len(pos), len(neg))


def mean_auroc_ci(
    pos_scores: Sequence[float],
    pos_groups: Sequence[str],
    negatives: Sequence[tuple[Sequence[float], Sequence[str]]],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> AUROC:
    """Mean over negative classes of per-class AUROC (the paper's "average AUROC"), with a bootstrap
    CI in which the shared positive groups are resampled jointly for all classes."""
    pos = np.asarray(pos_scores, float)
    rng = np.random.default_rng(seed)
    wp = _group_weights(pos_groups, n_boot, rng)
    values, boots, n_neg = [], [], 0
    for neg_scores, neg_groups in negatives:
        neg = np.asarray(neg_scores, float)
        value, wins = _point_and_wins(pos, neg)
        values.append(value)
        boots.append(_boot_auroc(wp, wins, _group_weights(neg_groups, n_boot, rng)))
        n_neg += len(neg)
    return AUROC(float(np.mean(values)), *_interval(np.mean(boots, axis=0), level), len(pos), n_neg)
