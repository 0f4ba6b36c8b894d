"""DeLong's test (fast mid-rank algorithm) against a hand-worked example and the 1988 definition."""

import math
from fractions import Fraction as F

import numpy as np
import pytest

from clinical.delong import delong_test


def test_hand_worked_example():
    # Model A: positives .9 .6 .4, negatives .5 .3 -> placement values V10 = 1, 1, 1/2; V01 = 2/3, 1; AUC 5/6.
    # Model B: positives .8 .5 .5, negatives .5 .7 -> V10 = 1, 1/4, 1/4; V01 = 2/3, 1/3; AUC 1/2.
    # S10 (m=3, n-1 denominators): AA 1/12, BB 3/16, AB 1/16.  S01 (n=2): AA 1/18, BB 1/18, AB -1/18.
    # var A = 1/36 + 1/36 = 1/18; var B = 1/16 + 1/36 = 13/144; cov = 1/48 - 1/36 = -1/144.
    # var(A - B) = 23/144, z = (1/3) / sqrt(23/144) = 4 / sqrt(23), p = erfc(z / sqrt 2).
    labels = [1, 1, 1, 0, 0]
    result = delong_test(labels, [0.9, 0.6, 0.4, 0.5, 0.3], [0.8, 0.5, 0.5, 0.5, 0.7])
    assert result.auc_a == pytest.approx(float(F(5, 6))) and result.auc_b == pytest.approx(0.5)
    assert result.var_a == pytest.approx(float(F(1, 18)))
    assert result.var_b == pytest.approx(float(F(13, 144)))
    assert result.cov_ab == pytest.approx(float(F(-1, 144)))
    assert result.z == pytest.approx(4 / math.sqrt(23))
    assert result.p_value == pytest.approx(math.erfc(4 / math.sqrt(23) / math.sqrt(2)))
    assert result.p_value == pytest.approx(0.4042, abs=1e-4)
    half = 1.959963984540054 * math.sqrt(23 / 144)
    assert (result.ci_low, result.ci_high) == pytest.approx((1 / 3 - half, 1 / 3 + half))


def brute_force(labels, a, b):
    """DeLong, DeLong & Clarke-Pearson (1988) straight from the definition: psi kernel, explicit loops."""
    pos = [i for i, y in enumerate(labels) if y]
    neg = [j for j, y in enumerate(labels) if not y]
    m, n = len(pos), len(neg)

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    out = []
    for s in (a, b):
        v10 = [sum(psi(s[i], s[j]) for j in neg) / n for i in pos]
        v01 = [sum(psi(s[i], s[j]) for i in pos) / m for j in neg]
        out.append((sum(v10) / m, v10, v01))

    def cov(u, v):
        mu, mv = sum(u) / len(u), sum(v) / len(v)
        return sum((x - mu) * (y - mv) for x, y in zip(u, v)) / (len(u) - 1)

    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    var_a = cov(v10a, v10a) / m + cov(v01a, v01a) / n
    var_b = cov(v10b, v10b) / m + cov(v01b, v01b) / n
    cov_ab = cov(v10a, v10b) / m + cov(v01a, v01b) / n
    z = (auc_a - auc_b) / math.sqrt(var_a + var_b - 2 * cov_ab)
    return auc_a, auc_b, var_a, var_b, cov_ab, z, math.erfc(abs(z) / math.sqrt(2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_algorithm_equals_the_definition(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(40) < 0.4
    labels[:2], labels[2:4] = True, False
    a = np.round(labels * 1.0 + rng.normal(0, 1, 40), 1)  # rounding makes ties
    b = np.round(labels * 0.5 + 0.5 * a + rng.normal(0, 1, 40), 1)  # correlated with a
    result = delong_test(labels, a, b)
    expected = brute_force(list(labels), list(a), list(b))
    got = (result.auc_a, result.auc_b, result.var_a, result.var_b, result.cov_ab, result.z, result.p_value)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_same_scores_give_p_one_and_too_few_cases_are_refused():
    scores = [0.1, 0.4, 0.35, 0.8, 0.7]
    result = delong_test([0, 0, 1, 1, 1], scores, scores)
    assert result.z == 0.0 and result.p_value == 1.0
    with pytest.raises(ValueError, match="at least two"):
        delong_test([1, 0, 0], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3])
