"""DeLong's test for two correlated (paired) AUROCs.

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845, computed with the fast mid-rank
algorithm of Sun & Xu (2014), IEEE Signal Processing Letters 21(11):1389-1393. Scores must be oriented
so that *higher* means positive; :func:`delong_test` takes labels and two score vectors on the same
cases. The test assumes independent cases (it does not model crops of one photo as a cluster).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy.stats import norm, rankdata


@dataclass(frozen=True)
class DeLongResult:
    """Paired comparison of AUROC A and AUROC B on the same cases."""

    auc_a: float
    auc_b: float
    var_a: float
    var_b: float
    cov_ab: float
    z: float
    p_value: float
    ci_low: float  # 95 % CI of auc_a - auc_b
    ci_high: float
    n_pos: int
    n_neg: int

    @property
    def difference(self) -> float:
        return self.auc_a - self.auc_b

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "difference": self.difference}


def structural_components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's placement values for k score sets (Sun & Xu, Algorithm 2).

    Args:
        pos: (k, m) scores of the m positives under each of k models (higher = positive).
        neg: (k, n) scores of the n negatives.
    Returns:
        aucs (k,), v10 (k, m): per-positive components, v01 (k, n): per-negative components.
    """
    k, m = pos.shape
    n = neg.shape[1]
    aucs, v10, v01 = np.empty(k), np.empty((k, m)), np.empty((k, n))
    for r in range(k):
        tx, ty = rankdata(pos[r]), rankdata(neg[r])  # mid-ranks within each class
        tz = rankdata(np.r_[pos[r], neg[r]])  # mid-ranks in the pooled sample
        aucs[r] = (tz[:m].sum() / m - (m + 1) / 2) / n
        v10[r] = (tz[:m] - tx) / n
        v01[r] = 1.0 - (tz[m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k): S10/m + S01/n."""
    aucs, v10, v01 = structural_components(pos, neg)
    m, n = pos.shape[1], neg.shape[1]
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_test(labels: Sequence[bool], scores_a: Sequence[float], scores_b: Sequence[float],
                level: float = 0.95) -> DeLongResult:
    """Two-sided DeLong test of AUC(A) = AUC(B) on paired scores (higher = positive for both).

    Raises:
        ValueError: mismatched lengths, or fewer than two positives or two negatives.
    """
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if not len(y) == len(a) == len(b):
        raise ValueError("labels and both score vectors must cover the same cases")
    if y.sum() < 2 or (~y).sum() < 2:
        raise ValueError("DeLong's test needs at least two positive and two negative cases")
    scores = np.stack([a, b])
    aucs, cov = delong_covariance(scores[:, y], scores[:, ~y])
    diff = aucs[0] - aucs[1]
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-15:
        z, p, half = (0.0, 1.0, 0.0) if abs(diff) < 1e-15 else (float("nan"), float("nan"), float("nan"))
    else:
        z = float(diff / np.sqrt(var))
        p = float(2 * norm.sf(abs(z)))
        half = float(norm.ppf(0.5 + level / 2) * np.sqrt(var))
    return DeLongResult(float(aucs[0]), float(aucs[1]), float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]),
                        z, p, float(diff - half), float(diff + half), int(y.sum()), int((~y).sum()))
