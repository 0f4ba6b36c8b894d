"""Clinical statistics against published or independently computed values."""

import math

import numpy as np
import pytest

from mim_core.verdict import called_mpox
from clinical.stats import binary_metrics, cohen_kappa, fleiss, model_auroc, wilson


@pytest.mark.parametrize("k, n, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no correction)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0000, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_newcombe_1998(k, n, low, high):
    result = wilson(k, n)
    assert (round(result.low, 4), round(result.high, 4)) == (low, high)
    # and the closed form, written out independently
    z, p = 1.959963984540054, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert result.low == pytest.approx(centre - half, abs=1e-9)
    assert result.high == pytest.approx(centre + half, abs=1e-9)


def test_wilson_of_nothing_is_undefined():
    assert wilson(0, 0).value is None and wilson(0, 0).low is None


def test_cohen_kappa_worked_example():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> po = .70, pe = .50, kappa = .40
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["mpox"], ["mpox"]) is None  # one item: undefined


def test_fleiss_kappa_matches_fleiss_1971_style_worked_example():
    # 10 subjects, 14 raters, 5 categories (the classic worked example): P-bar = .378, Pe-bar = .213, kappa = .210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    categories = ["a", "b", "c", "d", "e"]
    ratings = [[c for c, n in zip(categories, row) for _ in range(n)] for row in counts]
    value = fleiss(ratings, categories)
    assert round(value, 3) == 0.210
    table = np.array(counts, float)
    p_i = ((table ** 2).sum(1) - 14) / (14 * 13)
    p_j = table.sum(0) / table.sum()
    assert value == pytest.approx((p_i.mean() - (p_j ** 2).sum()) / (1 - (p_j ** 2).sum()), abs=1e-12)


def test_auroc_matches_pair_counting_in_either_score_direction():
    scores = np.array([0.1, 0.4, 0.4, 0.9, 0.2, 0.4, 0.7, 0.8, 0.8])  # ties on purpose
    mpox = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0], bool)
    pos, neg = scores[mpox], scores[~mpox]
    # lower = mpox: a pair counts 1 when the mpox case scores lower, 1/2 on ties
    wins = sum((p < q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
    groups = [str(i) for i in range(len(scores))]
    lower = model_auroc(scores, mpox, groups, "lower", n_boot=200)
    higher = model_auroc(-scores, mpox, groups, "higher", n_boot=200)
    assert lower.value == pytest.approx(wins, abs=1e-12) and higher.value == pytest.approx(wins, abs=1e-12)
    assert lower.low <= lower.value <= lower.high


def test_binary_metrics_counts_and_threshold_direction():
    truth = [True, True, True, False, False]
    called = called_mpox([0.1, 0.5, 0.9, 0.2, 0.8], 0.5, "lower")
    assert list(called) == [True, True, False, True, False]
    m = binary_metrics(truth, called)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 1)
    assert (m["sensitivity"].k, m["sensitivity"].n, m["specificity"].k, m["specificity"].n) == (2, 3, 1, 2)
    assert m["ppv"].value == pytest.approx(2 / 3) and m["npv"].value == pytest.approx(1 / 2)
    assert list(called_mpox([0.1, 0.5, 0.9], 0.5, "higher")) == [False, True, True]
