import numpy as np
from sklearn.metrics import roc_auc_score

from mim_core.evaluation.stats import _group_weights, auroc_ci, mean_auroc_ci


def test_auroc_matches_sklearn_and_ci_brackets_it():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0, 1, 30), rng.normal(1, 1, 80)
    result = auroc_ci(pos, neg, [str(i // 3) for i in range(30)])
    expected = roc_auc_score(np.r_[np.ones(30), np.zeros(80)], -np.r_[pos, neg])
    assert abs(result.value - expected) < 1e-12
    assert result.low < result.value < result.high
    assert 0.6 < result.value < 0.9
    tied_pos, tied_neg = np.round(pos, 1), np.round(neg, 1)  # ties count half, as in sklearn
    expected = roc_auc_score(np.r_[np.ones(30), np.zeros(80)], -np.r_[tied_pos, tied_neg])
    assert abs(auroc_ci(tied_pos, tied_neg).value - expected) < 1e-12


def test_each_bootstrap_resample_draws_as_many_source_groups_as_there_are():
    groups = ["a", "a", "b", "c", "c", "c"]
    weights = _group_weights(groups, 500, np.random.default_rng(0))  # (resamples, items)
    first_of_each = [0, 2, 3]
    assert weights.shape == (500, 6) and (weights[:, first_of_each].sum(axis=1) == 3).all()
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()  # a group moves whole
    assert len({tuple(row) for row in weights}) > 5  # and the resamples differ


def test_perfect_and_reversed_separation():
    assert auroc_ci([0, 1, 2], [5, 6]).value == 1.0
    assert auroc_ci([5, 6], [0, 1, 2]).value == 0.0
    assert auroc_ci([1, 1], [1, 1]).value == 0.5


def test_grouped_bootstrap_is_wider_than_pretending_crops_are_independent():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 10)
    pos = np.repeat(base, 5)  # 5 identical crops per photo
    neg = rng.normal(0.8, 1, 60)
    grouped = auroc_ci(pos, neg, [str(i // 5) for i in range(50)])
    naive = auroc_ci(pos, neg)
    assert (grouped.high - grouped.low) > (naive.high - naive.low)


def test_mean_auroc_is_the_mean_of_class_aurocs():
    rng = np.random.default_rng(2)
    pos = rng.normal(0, 1, 20)
    negs = [(rng.normal(m, 1, 15), [str(i) for i in range(15)]) for m in (0.5, 1.0, 2.0)]
    result = mean_auroc_ci(pos, [str(i) for i in range(20)], negs)
    assert abs(result.value - np.mean([auroc_ci(pos, n).value for n, _ in negs])) < 1e-12
    assert result.low < result.value < result.high
