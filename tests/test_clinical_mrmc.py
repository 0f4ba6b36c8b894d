"""clinical.mrmc.analyze: published Van Dyke analysis to its printed digits, Roe–Metz null simulation, input checks.

Reference figures (jackknife covariances, Obuchowski–Rockette with Hillis ddf, empirical AUROC) for the
Van Dyke et al. (1993) data in tests/data/vandyke_1993.csv, as printed by
- MRMCaov (github.com/brian-j-smith/MRMCaov), README.md "Getting Started" (v0.1.8):
  ``summary(mrmc(empirical_auc(truth, rating), treatment, reader, case, data = VanDyke))``;
- MRMCaov docs/jss/MRMCaov.tex (commit f1c63dc4383e23ed8f1e64adee4476e768cd9287): the fixed-readers analysis
  (per-reader AUROCs, standard errors and differences) and ``binary_sens(truth, rating >= 3)``;
- the RJafroc book chapters on OR analysis of dataset02 (github.com/dpc10ster/RJafrocBook), which print
  the same F = 4.456319, ddf = 15.25967, p = 0.05166569 and CI [-0.0879594986, 0.0003588544].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from clinical.mrmc import analyze

DATA = Path(__file__).parent / "data" / "vandyke_1993.csv"


def _digits(value: float, printed: str) -> None:
    """``value`` rounds to ``printed`` at the number of significant digits printed."""
    text = printed.lstrip("-").replace(".", "").lstrip("0")
    significant = len(text)
    assert float(f"{value:.{significant - 1}e}") == pytest.approx(float(printed), rel=1e-12, abs=1e-15), (
        value, printed)


@pytest.fixture(scope="module")
def vandyke() -> pd.DataFrame:
    data = pd.read_csv(DATA, comment="#")
    assert data.shape == (1140, 5)
    return data.rename(columns={"treatment": "modality", "rating": "score"})


def test_vandyke_rrrc_matches_published(vandyke: pd.DataFrame) -> None:
    r = analyze(vandyke)
    assert (r["n_readers"], r["n_cases"], r["n_diseased"], r["n_nondiseased"]) == (5, 114, 45, 69)
    _digits(r["auc"][1], "0.8970370")
    _digits(r["auc"][2], "0.9408374")
    vc = r["variance_components"]
    for key, printed in [("var_R", "0.0015349993"), ("var_TR", "0.0002004025"), ("var_error", "0.0008022883"),
                         ("cov1", "0.0003466137"), ("cov2", "0.0003440748"), ("cov3", "0.0002390284"),
                         ("ms_t", "0.004796171"), ("ms_tr", "0.0005510306")]:
        _digits(vc[key], printed)
    _digits(r["rrrc"]["denominator"], "0.001076263")
    _digits(r["f"], "4.456319")
    assert r["df1"] == 1
    _digits(r["ddf"], "15.25967")
    _digits(r["p_value"], "0.05166569")
    d = r["rrrc"]["differences"][0]
    assert (d["modality_a"], d["modality_b"]) == (1, 2)
    _digits(r["difference"], "-0.04380032")
    _digits(d["se"], "0.02074862")
    _digits(r["ci"][0], "-0.0879594986")
    _digits(r["ci"][1], "0.0003588544")
    _digits(d["t"], "-2.110999")
    _digits(d["p_value"], "0.05166569")
    for modality, printed in [(1, ("0.003082629", "0.0004839618", "0.03317360", "12.74465", "0.8252236",
                                   "0.9688505")),
                              (2, ("0.001304602", "0.0002041879", "0.02156637", "12.71019", "0.8941378",
                                   "0.9875369"))]:
        own = r["rrrc"]["modalities"][modality]
        for value, text in zip([own["ms_r"], own["cov2"], own["se"], own["df"], *own["ci"]], printed):
            _digits(value, text)


def test_vandyke_fixed_readers_and_reader_aucs_match_published(vandyke: pd.DataFrame) -> None:
    r = analyze(vandyke)
    published_auc = {1: ["0.9196457", "0.8587762", "0.9038647", "0.9731079", "0.8297907"],
                     2: ["0.9478261", "0.9053140", "0.9217391", "0.9993559", "0.9299517"]}
    published_se = {1: ["0.0301255164", "0.0363753335", "0.0282594118", "0.0173388332", "0.0417201720"],
                    2: ["0.0221416887", "0.0298151099", "0.0297673065", "0.0007213348", "0.0262023046"]}
    for modality in (1, 2):
        for reader in range(1, 6):
            _digits(r["reader_auc"][modality][reader], published_auc[modality][reader - 1])
            _digits(r["frrc"]["reader_se"][modality][reader], published_se[modality][reader - 1])
            rows = vandyke[(vandyke.reader == reader) & (vandyke.modality == modality)]
            assert r["reader_auc"][modality][reader] == pytest.approx(roc_auc_score(rows.truth, rows.score))
    f = r["frrc"]
    _digits(f["denominator"], "0.0008758604")
    _digits(f["chi2"], "5.475953")
    _digits(f["p_value"], "0.01927984")
    d = f["differences"][0]
    _digits(d["se"], "0.01871748")
    _digits(d["ci"][0], "-0.08048591")
    _digits(d["ci"][1], "-0.00711473")
    _digits(d["z"], "-2.340075")
    published = [("-0.02818035", "0.02551213", "0.26933885"), ("-0.04653784", "0.02630183", "0.07683102"),
                 ("-0.01787440", "0.03120965", "0.56683414"), ("-0.02624799", "0.01729129", "0.12901715"),
                 ("-0.10016103", "0.04405746", "0.02300099")]
    for row, (diff, se, p) in zip(f["reader_differences"], published):
        _digits(row["difference"], diff)
        _digits(row["se"], se)
        _digits(row["p_value"], p)


def test_vandyke_binary_sensitivity_matches_published(vandyke: pd.DataFrame) -> None:
    r = analyze(vandyke, fom="sensitivity", threshold=3)
    _digits(r["auc"][1], "0.8222222")
    _digits(r["auc"][2], "0.9200000")
    vc = r["variance_components"]
    for key, printed in [("var_R", "0.0049747475"), ("var_TR", "0.0007828283"), ("var_error", "0.0023681257"),
                         ("cov1", "0.0009943883"), ("cov2", "0.0010145903"), ("cov3", "0.0006604938")]:
        _digits(vc[key], printed)
    _digits(r["f"], "6.689493")
    _digits(r["ddf"], "15.71732")
    _digits(r["p_value"], "0.02008822")
    _digits(r["ci"][0], "-0.1780371")
    _digits(r["ci"][1], "-0.0175185")
    assert r["rrrc"]["modalities"][2]["ci"][1] == 1.0  # clipped to the FOM's range, as printed


def test_modality_order_and_labels(vandyke: pd.DataFrame) -> None:
    t = vandyke.assign(modality=vandyke.modality.map({1: "cine", 2: "spin echo"}))
    r = analyze(t, modalities=["spin echo", "cine"])
    assert r["difference"] == pytest.approx(0.04380032, abs=5e-9)
    assert r["ci"][0] == pytest.approx(-0.0003588544, abs=5e-11)
    assert analyze(t, fom="specificity", threshold=3)["auc"]["cine"] == pytest.approx(
        np.mean([(g.score < 3).mean() for _, g in t[(t.truth == 0) & (t.modality == "cine")].groupby("reader")]))


# --- Roe & Metz (1997) simulation: no modality effect --------------------------------------------------------

def roe_metz(rng: np.random.Generator, modalities: int = 2, readers: int = 5, n0: int = 50, n1: int = 50,
             mu: float = 1.5, shift: float = 0.0) -> pd.DataFrame:
    """One simulated study: ratings = truth mean + reader, modality x reader, case, modality x case,
    reader x case and error effects, each drawn independently per truth state (Roe & Metz 1997), variances
    0.011, 0.011, 0.3, 0.3, 0.2, 0.2 (case-level variances sum to 1). ``shift`` adds to the diseased mean in
    the last modality only (0: the null)."""
    cases = n0 + n1
    truth = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    effects = np.zeros((modalities, readers, cases))
    for t in (0, 1):
        k = truth == t
        r = rng.normal(0, np.sqrt(0.011), (1, readers, 1))
        tr = rng.normal(0, np.sqrt(0.011), (modalities, readers, 1))
        effects[:, :, k] += r + tr
    c = rng.normal(0, np.sqrt(0.3), (1, 1, cases))
    tc = rng.normal(0, np.sqrt(0.3), (modalities, 1, cases))
    rc = rng.normal(0, np.sqrt(0.2), (1, readers, cases))
    e = rng.normal(0, np.sqrt(0.2), (modalities, readers, cases))
    means = np.zeros((modalities, 1, cases))
    means[:, :, truth == 1] = mu
    means[-1, :, truth == 1] += shift
    scores = means + effects + c + tc + rc + e
    i, j, k = np.meshgrid(range(modalities), range(readers), range(cases), indexing="ij")
    return pd.DataFrame({"reader": j.ravel(), "case": k.ravel(), "modality": i.ravel(),
                         "truth": truth[k.ravel()], "score": scores.ravel()})


def _band(p: float, n: int) -> tuple[float, float]:
    se = np.sqrt(p * (1 - p) / n)
    return p - 3 * se, p + 3 * se


def test_roe_metz_null_type_one_error_and_coverage() -> None:
    rng = np.random.default_rng(20240614)
    n = 600
    rejected, covered = 0, 0
    for _ in range(n):
        r = analyze(roe_metz(rng))
        rejected += r["p_value"] < 0.05
        covered += r["ci"][0] <= 0.0 <= r["ci"][1]
    low, high = _band(0.05, n)
    assert low <= rejected / n <= high, f"type-I error {rejected / n:.4f} outside [{low:.4f}, {high:.4f}]"
    low, high = _band(0.95, n)
    assert low <= covered / n <= high, f"coverage {covered / n:.4f} outside [{low:.4f}, {high:.4f}]"


def test_roe_metz_three_modalities_f_test_and_true_difference_coverage() -> None:
    rng = np.random.default_rng(7)
    n = 250
    rejected = sum(analyze(roe_metz(rng, modalities=3))["p_value"] < 0.05 for _ in range(n))
    low, high = _band(0.05, n)
    assert low <= rejected / n <= high, f"3-modality F type-I error {rejected / n:.4f}"
    # a true effect: the expected AUROC over readers is Phi(mu / sqrt(2 + 2 (var_R + var_TR))) per modality
    shift, scale = 0.5, np.sqrt(2 + 2 * (0.011 + 0.011))
    true_diff = norm.cdf(1.5 / scale) - norm.cdf(2.0 / scale)
    covered, rejected = 0, 0
    for _ in range(n):
        r = analyze(roe_metz(rng, shift=shift))
        covered += r["ci"][0] <= true_diff <= r["ci"][1]
        rejected += r["p_value"] < 0.05
    low, high = _band(0.95, n)
    assert low <= covered / n <= high, f"coverage of the true difference {covered / n:.4f}"
    assert rejected / n > 0.5  # the test has power against a real difference


# --- input validation -------------------------------------------------------------------------------------------

def _small() -> pd.DataFrame:
    rows = [{"reader": r, "case": c, "modality": m, "truth": int(c >= 3), "score": float((c + 2 * i + 3 * j) % 5)}
            for i, r in enumerate(("a", "b")) for c in range(6) for j, m in enumerate(("unaided", "aided"))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns=["truth"]), "lacks the column(s) truth"),
    (lambda t: t.iloc[:0], "no rows"),
    (lambda t: t.drop(index=3), "not a fully crossed design: reader 'a' has no score for case 1 in modality 'aided'"),
    (lambda t: t.assign(truth=np.where(t.index == 0, 1, t.truth)), "case(s) 0 have both truth 0 and truth 1"),
    (lambda t: t.assign(truth=1), "every case has truth 1"),
    (lambda t: t[t.reader == "a"], "need at least 2 readers"),
    (lambda t: t[t.modality == "aided"], "need at least 2 modalities"),
    (lambda t: t.assign(truth=2), "truth must be 1 (diseased / mpox) or 0"),
    (lambda t: t.assign(score=np.where(t.index == 5, np.nan, t.score)), "score must be a finite number"),
    (lambda t: t.assign(score=t.score.astype(object).where(t.index != 2, "high")), "'high'"),
    (lambda t: pd.concat([t, t.iloc[[0]]]), "reader 'a' scored case 0 in modality 'unaided' more than once"),
    (lambda t: t.assign(truth=(t.case >= 5).astype(int)), "at least 2 diseased and 2 non-diseased"),
    (lambda t: t.assign(reader=t.reader.where(t.index != 0, None)), "column 'reader' has 1 missing value"),
])
def test_validation_messages(change, message: str) -> None:
    analyze(_small())  # the unchanged table is valid
    with pytest.raises(ValueError) as err:
        analyze(change(_small()))
    assert message in str(err.value)


def test_argument_checks() -> None:
    with pytest.raises(TypeError, match="pandas DataFrame"):
        analyze([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        analyze(_small(), alpha=1.5)
    with pytest.raises(ValueError, match="fom must be one of"):
        analyze(_small(), fom="pauc")
    with pytest.raises(ValueError, match="needs a threshold"):
        analyze(_small(), fom="sensitivity")
    with pytest.raises(ValueError, match="must list each modality of the table once"):
        analyze(_small(), modalities=["aided", "other"])
