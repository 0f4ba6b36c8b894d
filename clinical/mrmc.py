"""Multi-reader multi-case (MRMC) comparison of modalities: Obuchowski–Rockette with Hillis's degrees of freedom.

:func:`analyze` takes one row per reader x case x modality (a fully crossed, "factorial" design) and compares
the modalities' reader-averaged figure of merit (FOM; empirical AUROC by default), treating readers and cases
as random samples (RRRC), as iMRMC, RJafroc (``method="OR"``) and MRMCaov (``cov = jackknife``) do.

Model (Obuchowski & Rockette 1995): the FOM of reader j in modality i is
``theta_ij = mu + tau_i + R_j + (tau R)_ij + e_ij`` with random reader and modality x reader effects
(variances ``var_R``, ``var_TR``) and correlated errors: ``var_error`` = Var(e_ij), ``cov1`` = Cov between
modalities for the same reader, ``cov2`` = between readers for the same modality, ``cov3`` = both different.
The error (co)variances are estimated by jackknifing cases (Efron 1982): with ``theta_ij(k)`` the FOM without
case k, ``Cov(theta_ij, theta_i'j') = (K-1)/K * sum_k (theta_ij(k) - mean_k)(theta_i'j'(k) - mean_k)``,
then averaged over the pairs of each kind.

Test and interval (Hillis, Obuchowski, Schartz & Berbaum 2005; Hillis 2007, Stat Med 26:596; Hillis, Berbaum &
Metz 2008, Acad Radiol 15:647), with I modalities, J readers, ``den = MS(T:R) + J * max(cov2 - cov3, 0)``:

- ``F = MS(T) / den`` on ``I - 1`` and ``ddf = den**2 / (MS(T:R)**2 / ((I-1)(J-1)))`` degrees of freedom;
- difference ``theta_a. - theta_b.`` with standard error ``sqrt(2 / J * den)`` and a t interval on ``ddf``;
- each modality alone: ``se = sqrt((MS(R)_i + J * max(cov2_i, 0)) / J)``,
  ``df = (MS(R)_i + J max(cov2_i, 0))**2 / (MS(R)_i**2 / (J-1))``.

Fixed readers, random cases (FRRC, the readers of this study only): ``X2 = (I-1) MS(T) / den_f`` with
``den_f = var_error - cov1 + (J-1)(cov2 - cov3)``, chi-square on ``I - 1`` df, z intervals; and per reader
``se = sqrt(2 (var_j - cov1_j))`` from that reader's own jackknife (co)variances.

Variance components (method of moments): ``var_TR = MS(T:R) - var_error + cov1 + max(cov2 - cov3, 0)``,
``var_R = (MS(R) - var_error - (I-1) cov1 + cov2 + (I-1) cov3 - var_TR) / I``.

References: Obuchowski NA, Rockette HE (1995), Commun Stat Simul Comput 24:285-308; Hillis SL (2007), Stat Med
26:596-619; Hillis SL, Berbaum KS, Metz CE (2008), Acad Radiol 15:647-661; Efron B (1982), The jackknife, the
bootstrap and other resampling plans (SIAM). Checked against MRMCaov and RJafroc on the Van Dyke et al. (1993)
data (tests/test_clinical_mrmc.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ("reader", "case", "modality", "truth", "score")
FOMS = ("auc", "sensitivity", "specificity")


def _native(values: Sequence[Any]) -> list[Any]:
    """numpy scalars -> Python ones (JSON keys, stable dict lookups)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _sorted(values: list[Any]) -> list[Any]:
    """Natural order when the labels compare (numbers, strings), else by their text."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _labels(values: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(_show(v) for v in list(values)[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _validated(table: pd.DataFrame, modalities: Sequence[Any] | None
               ) -> tuple[np.ndarray, np.ndarray, list[Any], list[Any], list[Any]]:
    """(scores (I, J, K), truth (K,) of 0/1, modality labels (I), reader labels (J), case labels (K)).

    Raises:
        ValueError: with a sentence naming what is wrong and where.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, not {type(table).__name__}")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    if table.empty:
        raise ValueError("table has no rows")
    df = table[list(COLUMNS)].copy()
    for column in ("reader", "case", "modality", "truth"):
        if df[column].isna().any():
            raise ValueError(f"column '{column}' has {int(df[column].isna().sum())} missing value(s)")
    score = pd.to_numeric(df["score"], errors="coerce")
    bad = ~np.isfinite(score.to_numpy(dtype=float))
    if bad.any():
        row = df[bad].iloc[0]
        raise ValueError(f"score must be a finite number in every row; {int(bad.sum())} row(s) are not, e.g. "
                         f"{_show(row['score'])} (reader {_show(row['reader'])}, case {_show(row['case'])}, "
                         f"modality {_show(row['modality'])})")
    df["score"] = score.astype(float)
    truth = df["truth"].map(lambda v: int(v) if isinstance(v, (bool, np.bool_, int, np.integer, float))
                            and v in (0, 1) else None)
    if truth.isna().any():
        raise ValueError(f"truth must be 1 (diseased / mpox) or 0 (not); found {_labels(df['truth'][truth.isna()].unique())}")
    df["truth"] = truth.astype(int)
    mixed = df.groupby("case")["truth"].nunique()
    if (mixed > 1).any():
        raise ValueError(f"case(s) {_labels(mixed.index[mixed > 1].tolist())} have both truth 0 and truth 1; "
                         "each case has one true status")
    duplicated = df.duplicated(["reader", "case", "modality"], keep=False)
    if duplicated.any():
        row = df[duplicated].iloc[0]
        raise ValueError(f"reader {_show(row['reader'])} scored case {_show(row['case'])} in modality "
                         f"{_show(row['modality'])} "
                         f"more than once ({int(duplicated.sum())} duplicated rows); give one score per reader, "
                         "case and modality")
    present = _native(pd.unique(df["modality"]))
    if modalities is None:
        modalities = _sorted(present)
    modalities = list(modalities)
    if set(modalities) != set(present) or len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities {_labels(modalities)} must list each modality of the table once: "
                         f"{_labels(present)}")
    if len(modalities) < 2:
        raise ValueError(f"need at least 2 modalities to compare; found {len(modalities)}: {_labels(modalities)}")
    readers = _sorted(_native(pd.unique(df["reader"])))
    if len(readers) < 2:
        raise ValueError(f"need at least 2 readers for a random-reader analysis; found {len(readers)}: "
                         f"{_labels(readers)}")
    cases = _sorted(_native(pd.unique(df["case"])))
    grid = df.pivot(index=["modality", "reader"], columns="case", values="score")
    full = pd.MultiIndex.from_product([modalities, readers], names=["modality", "reader"])
    grid = grid.reindex(index=full, columns=cases)
    holes = grid.isna()
    if holes.to_numpy().any():
        flags = holes.stack()
        modality, reader, case = flags[flags].index[0]
        raise ValueError(f"not a fully crossed design: reader {_show(reader)} has no score for case "
                         f"{_show(case)} in modality {_show(modality)} ({int(holes.to_numpy().sum())} missing reader x case x modality "
                         "cells); every reader must score every case in every modality (keep only the cases "
                         "all readers read in all modalities)")
    truth_by_case = df.groupby("case")["truth"].first().reindex(cases).to_numpy()
    n1, n0 = int(truth_by_case.sum()), int((1 - truth_by_case).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"every case has truth {1 if n0 == 0 else 0}: the comparison needs both diseased "
                         "(truth 1) and non-diseased (truth 0) cases")
    if n1 < 2 or n0 < 2:
        raise ValueError(f"need at least 2 diseased and 2 non-diseased cases for the jackknife; found {n1} "
                         f"diseased and {n0} non-diseased")
    scores = grid.to_numpy(dtype=float).reshape(len(modalities), len(readers), len(cases))
    return scores, truth_by_case.astype(int), modalities, readers, cases


def jackknife_fom(scores: np.ndarray, truth: np.ndarray, fom: str = "auc", threshold: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """FOM per modality x reader and its leave-one-case-out values.

    Args:
        scores: (I, J, K) ratings, higher = more likely diseased.
        truth: (K,) 1 = diseased, 0 = not; at least 2 of each.
        fom: "auc" (empirical / Mann-Whitney AUROC, ties count 1/2), "sensitivity" or "specificity"
            of the call ``score >= threshold``.
    Returns:
        (theta (I, J), jack (I, J, K)); ``jack[..., k]`` is the FOM computed without case k. For sensitivity
        (specificity) only diseased (non-diseased) cases are left out, so ``jack`` is (I, J, n1) or (I, J, n0).
    """
    pos, neg = truth == 1, truth == 0
    n1, n0 = int(pos.sum()), int(neg.sum())
    if fom in ("sensitivity", "specificity"):
        if threshold is None:
            raise ValueError(f"fom '{fom}' needs a threshold: a score >= threshold is a positive call")
        calls = (scores >= threshold).astype(float)
        hits, n, mask = (calls, n1, pos) if fom == "sensitivity" else (1.0 - calls, n0, neg)
        total = hits[..., mask].sum(axis=-1, keepdims=True)
        # only the cases the proportion is computed on are left out in turn (as MRMCaov does)
        return total[..., 0] / n, (total - hits[..., mask]) / (n - 1)
    if fom != "auc":
        raise ValueError(f"fom must be one of {', '.join(FOMS)}; got {fom!r}")
    I, J, K = scores.shape
    jack = np.empty((I, J, K))
    theta = np.empty((I, J))
    for i in range(I):
        for j in range(J):
            p, q = np.sort(scores[i, j, pos]), np.sort(scores[i, j, neg])
            x, y = scores[i, j, pos], scores[i, j, neg]
            # per diseased case: non-diseased below it + half the ties; per non-diseased: diseased above + half ties
            row = np.searchsorted(q, x, "left") + 0.5 * (np.searchsorted(q, x, "right") - np.searchsorted(q, x, "left"))
            low, high = np.searchsorted(p, y, "left"), np.searchsorted(p, y, "right")
            col = (n1 - high) + 0.5 * (high - low)
            total = row.sum()
            theta[i, j] = total / (n1 * n0)
            jack[i, j, pos] = (total - row) / ((n1 - 1) * n0)
            jack[i, j, neg] = (total - col) / (n1 * (n0 - 1))
    return theta, jack


def or_covariances(jack: np.ndarray) -> dict[str, float]:
    """Jackknife error variance and the three OR covariances from (I, J, K) leave-one-out FOMs."""
    I, J, K = jack.shape
    centred = (jack - jack.mean(axis=2, keepdims=True)).reshape(I * J, K)
    cov = centred @ centred.T * (K - 1) / K
    modality, reader = np.divmod(np.arange(I * J), J)
    same_i = modality[:, None] == modality[None, :]
    same_j = reader[:, None] == reader[None, :]
    pick = (lambda mask: float(cov[mask].mean()) if mask.any() else 0.0)
    return {"var_error": float(np.diag(cov).mean()), "cov1": pick(~same_i & same_j),
            "cov2": pick(same_i & ~same_j), "cov3": pick(~same_i & ~same_j)}


def _p_f(f: float, df1: float, df2: float) -> float:
    if not np.isfinite(f):
        return 0.0 if f > 0 else float("nan")
    return float(stats.chi2.sf(f * df1, df1) if np.isinf(df2) else stats.f.sf(f, df1, df2))


def _t_interval(estimate: float, se: float, df: float, alpha: float) -> dict[str, Any]:
    crit = float(stats.t.ppf(1 - alpha / 2, df)) if np.isfinite(df) else float(stats.norm.ppf(1 - alpha / 2))
    t = estimate / se if se > 0 else (float("inf") * np.sign(estimate) if estimate else float("nan"))
    p = float(2 * (stats.t.sf(abs(t), df) if np.isfinite(df) else stats.norm.sf(abs(t)))) if np.isfinite(t) else (
        0.0 if estimate else float("nan"))
    return {"se": se, "df": df, "ci": [estimate - crit * se, estimate + crit * se], "t": t, "p_value": p}


def analyze(table: pd.DataFrame, alpha: float = 0.05, modalities: Sequence[Any] | None = None,
            fom: str = "auc", threshold: float | None = None) -> dict[str, Any]:
    """Obuchowski–Rockette MRMC analysis with jackknife covariances and Hillis's ddf (see the module doc).

    Args:
        table: one row per reader x case x modality with columns ``reader``, ``case``, ``modality`` (two or
            more labels), ``truth`` (1 = mpox / diseased, 0 = not) and ``score`` (ordinal or continuous,
            higher = more mpox-like). Every reader must score every case in every modality.
        alpha: 1 - confidence level of the intervals; the tests' significance level.
        modalities: the modalities' order (default: sorted labels); differences are ``a - b`` for each pair
            (a before b), e.g. ``modalities=("aided", "unaided")`` gives aided minus unaided.
        fom: "auc" (empirical AUROC, default), or "sensitivity" / "specificity" of ``score >= threshold``.
    Returns:
        A dict: ``auc`` (reader-averaged FOM per modality), ``reader_auc`` (per modality, per reader),
        ``difference``, ``ci``, ``f``, ``df1``, ``ddf``, ``p_value`` (RRRC; ``difference``/``ci`` only for two
        modalities), ``rrrc`` (overall F test, every pairwise difference, each modality's own CI),
        ``frrc`` (fixed readers: chi-square test, pairwise and per-reader differences), ``variance_components``
        (var_R, var_TR, cov1, cov2, cov3, var_error and the mean squares) and the design counts.
        (For a binary ``fom`` the keys keep the names ``auc``/``reader_auc``; ``fom`` says what they hold.)
    Raises:
        ValueError: bad input (missing columns, an incomplete design, mixed or one-class truth, ...).
        TypeError: ``table`` is not a DataFrame.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha}")
    if fom not in FOMS:
        raise ValueError(f"fom must be one of {', '.join(FOMS)}; got {fom!r}")
    scores, truth, mods, readers, cases = _validated(table, modalities)
    theta, jack = jackknife_fom(scores, truth, fom, threshold)
    I, J = theta.shape
    c = or_covariances(jack)
    mean_i, mean_j, grand = theta.mean(axis=1), theta.mean(axis=0), theta.mean()
    ms_t = J * float(((mean_i - grand) ** 2).sum()) / (I - 1)
    ms_r = I * float(((mean_j - grand) ** 2).sum()) / (J - 1)
    ms_tr = float(((theta - mean_i[:, None] - mean_j[None, :] + grand) ** 2).sum()) / ((I - 1) * (J - 1))
    var_tr = ms_tr - c["var_error"] + c["cov1"] + max(c["cov2"] - c["cov3"], 0.0)
    var_r = (ms_r - c["var_error"] - (I - 1) * c["cov1"] + c["cov2"] + (I - 1) * c["cov3"] - var_tr) / I

    den = ms_tr + J * max(c["cov2"] - c["cov3"], 0.0)
    f = ms_t / den if den > 0 else (float("inf") if ms_t > 0 else float("nan"))
    ddf = den ** 2 / (ms_tr ** 2 / ((I - 1) * (J - 1))) if ms_tr > 0 else float("inf")
    pairs = list(combinations(range(I), 2))
    rrrc_diffs = [{"modality_a": mods[a], "modality_b": mods[b], "difference": float(mean_i[a] - mean_i[b]),
                   **_t_interval(float(mean_i[a] - mean_i[b]), float(np.sqrt(2 / J * den)), ddf, alpha)}
                  for a, b in pairs]
    own = {}
    for i, m in enumerate(mods):
        ms_r_i = float(((theta[i] - mean_i[i]) ** 2).sum()) / (J - 1)
        cov2_i = or_covariances(jack[i:i + 1])["cov2"]
        den_i = ms_r_i + J * max(cov2_i, 0.0)
        df_i = den_i ** 2 / (ms_r_i ** 2 / (J - 1)) if ms_r_i > 0 else float("inf")
        own[m] = {"estimate": float(mean_i[i]), "ms_r": ms_r_i, "cov2": cov2_i,
                  **_t_interval(float(mean_i[i]), float(np.sqrt(den_i / J)), df_i, alpha)}
        del own[m]["t"], own[m]["p_value"]
        own[m]["ci"] = [max(own[m]["ci"][0], 0.0), min(own[m]["ci"][1], 1.0)]  # a FOM lies in [0, 1]

    den_f = c["var_error"] - c["cov1"] + (J - 1) * (c["cov2"] - c["cov3"])
    x2 = (I - 1) * ms_t / den_f if den_f > 0 else float("inf") if ms_t > 0 else float("nan")
    frrc_diffs = [{"modality_a": mods[a], "modality_b": mods[b], "difference": float(mean_i[a] - mean_i[b]),
                   **_t_interval(float(mean_i[a] - mean_i[b]), float(np.sqrt(max(2 / J * den_f, 0.0))),
                                 float("inf"), alpha)} for a, b in pairs]
    reader_diffs = []
    for j, r in enumerate(readers):
        cj = or_covariances(jack[:, j:j + 1])
        se = float(np.sqrt(max(2 * (cj["var_error"] - cj["cov1"]), 0.0)))
        reader_diffs += [{"reader": r, "modality_a": mods[a], "modality_b": mods[b],
                          "difference": float(theta[a, j] - theta[b, j]),
                          **_t_interval(float(theta[a, j] - theta[b, j]), se, float("inf"), alpha)}
                         for a, b in pairs]
    for d in frrc_diffs + reader_diffs:
        d["z"] = d.pop("t")
        del d["df"]

    result: dict[str, Any] = {
        "method": ("Obuchowski-Rockette, jackknife covariances over cases, Hillis (2007) denominator degrees of "
                   "freedom; readers and cases random (RRRC)"),
        "fom": "empirical AUROC" if fom == "auc" else f"{fom} of score >= {threshold}",
        "alpha": alpha, "modalities": mods, "readers": readers, "n_readers": J, "n_cases": len(cases),
        "n_diseased": int(truth.sum()), "n_nondiseased": int((1 - truth).sum()),
        "auc": {m: float(mean_i[i]) for i, m in enumerate(mods)},
        "reader_auc": {m: {r: float(theta[i, j]) for j, r in enumerate(readers)} for i, m in enumerate(mods)},
        "variance_components": {"var_R": var_r, "var_TR": var_tr, **c, "ms_t": ms_t, "ms_r": ms_r,
                                "ms_tr": ms_tr},
        "f": f, "df1": I - 1, "ddf": ddf, "p_value": _p_f(f, I - 1, ddf),
        "rrrc": {"f": f, "df1": I - 1, "ddf": ddf, "p_value": _p_f(f, I - 1, ddf), "denominator": den,
                 "differences": rrrc_diffs, "modalities": own},
        "frrc": {"chi2": x2, "df": I - 1, "p_value": float(stats.chi2.sf(x2, I - 1)) if np.isfinite(x2) else
                 (0.0 if x2 > 0 else float("nan")), "denominator": den_f, "differences": frrc_diffs,
                 "reader_differences": reader_diffs,
                 "reader_se": {m: {r: float(np.sqrt(jack[i, j].var() * (jack.shape[2] - 1)))
                                   for j, r in enumerate(readers)} for i, m in enumerate(mods)}},
    }
    if I == 2:
        result["difference"], result["ci"] = rrrc_diffs[0]["difference"], rrrc_diffs[0]["ci"]
    return result
