"""Accuracy and agreement statistics, UI-free, on top of well-kept libraries.

- AUROC with a group-bootstrap CI: :func:`mim_core.evaluation.stats.auroc_ci` (lower score = positive), reused here
  for any model through its score direction.
- Proportions with Wilson score intervals: statsmodels ``proportion_confint(method="wilson")``.
- Cohen's kappa: scikit-learn; Fleiss' kappa: statsmodels.
- Small-sample limits (:data:`MIN_CASES`, :data:`MIN_PER_CLASS`, :data:`MIN_READERS`) and their warning text
  (:func:`small_sample_warning`); :func:`ci_estimable` tells a CI that collapsed to one point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.metrics import cohen_kappa_score, roc_curve
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from mim_core.evaluation.stats import AUROC, auroc_ci
from mim_core.verdict import Verdict, judge, lower_is_mpox


@dataclass(frozen=True)
class Proportion:
    """k of n, with a Wilson score interval (all None when n is 0)."""

    k: int
    n: int
    value: float | None
    low: float | None
    high: float | None


NO_REASONS = {Verdict.MPOX_LIKE: "", Verdict.NOT_MPOX_LIKE: ""}  # only the verdict is read here


def predictions_called_mpox(predictions: list[dict]) -> np.ndarray:
    """Bool per stored prediction: the model's own call by the one verdict rule (:func:`mim_core.verdict.judge`)
    from its stored score and threshold; a stored "no rash visible" keeps its override, and a prediction
    without a score is no call."""
    return np.array([p["score"] is not None
                     and judge(p["score"], p["threshold"], p["mpox_when"], NO_REASONS,
                               no_rash=p["label"] == Verdict.NO_RASH.value).verdict is Verdict.MPOX_LIKE
                     for p in predictions], dtype=bool)


def wilson(k: int, n: int, level: float = 0.95) -> Proportion:
    """k/n with its Wilson score interval."""
    if n == 0:
        return Proportion(k, n, None, None, None)
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return Proportion(int(k), int(n), k / n, float(low), float(high))


def binary_metrics(truth: Sequence[bool], called: Sequence[bool]) -> dict[str, Proportion | int]:
    """Sensitivity, specificity, PPV and NPV (with Wilson CIs) and the 2x2 counts."""
    t, c = np.asarray(truth, bool), np.asarray(called, bool)
    tp, fp = int((t & c).sum()), int((~t & c).sum())
    fn, tn = int((t & ~c).sum()), int((~t & ~c).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "sensitivity": wilson(tp, tp + fn), "specificity": wilson(tn, tn + fp),
            "ppv": wilson(tp, tp + fp), "npv": wilson(tn, tn + fn)}


def model_auroc(scores: Sequence[float], is_mpox: Sequence[bool], groups: Sequence[str], mpox_when: str,
                n_boot: int = 2000, seed: int = 0) -> AUROC:
    """AUROC for detecting mpox with a 95 % bootstrap CI over source groups."""
    s, y, g = lower_is_mpox(scores, mpox_when), np.asarray(is_mpox, bool), np.asarray(groups)
    return auroc_ci(s[y], s[~y], list(g[y]), list(g[~y]), n_boot=n_boot, seed=seed)


def roc_points(scores: Sequence[float], is_mpox: Sequence[bool], mpox_when: str) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) of the ROC curve for detecting mpox."""
    fpr, tpr, _ = roc_curve(np.asarray(is_mpox, bool), -lower_is_mpox(scores, mpox_when))
    return fpr, tpr


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters on the same items (None when fewer than 2 items or undefined)."""
    if len(a) != len(b):
        raise ValueError("both raters must rate the same items")
    if len(a) < 2:
        return None
    if len(set(a) | set(b)) == 1:
        return None  # both raters used one single category: kappa is 0/0
    return _finite(float(cohen_kappa_score(list(a), list(b))))


def fleiss(ratings: Sequence[Sequence[str]], categories: Sequence[str]) -> float | None:
    """Fleiss' kappa for items x raters labels (every item rated by the same number of raters)."""
    if len(ratings) < 2 or len(ratings[0]) < 2:
        return None
    index = {c: i for i, c in enumerate(categories)}
    coded = np.array([[index[label] for label in row] for row in ratings])
    table, _ = aggregate_raters(coded, n_cat=len(categories))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finite(float(fleiss_kappa(table, method="fleiss")))


# Small-sample limits (conservative rules of thumb, stated in every warning): below them an AUROC, a DeLong
# test, a sensitivity/specificity or a kappa rests on too few cases for its CI and p-value to be trusted
# (the asymptotic DeLong/OR-Hillis variances and the bootstrap are unreliable there), and a random-reader
# MRMC analysis on fewer than 3 readers has almost no degrees of freedom for the reader variance.
MIN_CASES = 20  # cases, with both classes present
MIN_PER_CLASS = 10  # mpox and not-mpox cases each
MIN_READERS = 3  # readers, for the MRMC analysis
LIMITS = (f"limits: at least {MIN_CASES} cases with both classes present and at least {MIN_PER_CLASS} per class; "
          f"at least {MIN_READERS} readers for MRMC")


def small_sample_warning(what: str, n_pos: int | None = None, n_neg: int | None = None, n: int | None = None,
                         n_readers: int | None = None) -> str | None:
    """One sentence when ``what`` was computed on too few cases (``n_pos``/``n_neg`` per class, or ``n``
    items when classes do not apply) or readers; None when the sample meets the limits."""
    problems = []
    if n_pos is not None and n_neg is not None:
        total = n_pos + n_neg
        if total < MIN_CASES or min(n_pos, n_neg) < MIN_PER_CLASS:
            problems.append(f"{total} case(s), {n_pos} mpox / {n_neg} not mpox")
    elif n is not None and n < MIN_CASES:
        problems.append(f"{n} case(s)")
    if n_readers is not None and n_readers < MIN_READERS:
        problems.append(f"{n_readers} reader(s)")
    if not problems:
        return None
    return (f"Small sample for {what}: {'; '.join(problems)} ({LIMITS}). Its estimate, CI and p-value are "
            "unreliable: read them as descriptive only.")


CI_MIN_WIDTH = 1e-3  # narrower than this, a CI of an AUROC, proportion or their difference prints as one point


def ci_estimable(low: float | None, high: float | None) -> bool:
    """False when a CI collapses to a point: low == high, or narrower than :data:`CI_MIN_WIDTH` (it would print
    as e.g. [0.000, 0.000]; on the 0..1 scale of AUROCs and proportions a real 95 % CI that narrow needs far
    more cases than any reader study has), or not finite. Such a CI estimated nothing."""
    return bool(low is not None and high is not None and np.isfinite(low) and np.isfinite(high)
                and high - low >= CI_MIN_WIDTH)
