"""From the store to the numbers of the validation report (``metrics.json``), UI-free.

Rules, stated in the report too:
- The reference standard is each case's reference label (from its class folder); excluded cases
  (unreadable files) are counted in the flow and left out of every statistic.
- Models: for each model name the latest run is used. The call at the pre-set threshold follows the
  card (MIM: score <= threshold is mpox-like). AUROC CIs resample source groups (crops of one photo).
- MRMC (reader-averaged AUROC, sensitivity, specificity; aided minus unaided): see :mod:`clinical.reader_study`.
- Reviewers: only current verdicts count (a correction replaces what it supersedes). ``ungradable`` is
  left out of sensitivity/specificity; ``uncertain`` counts as positive (referred for testing) unless
  ``uncertain`` is set to "negative" or "exclude". Kappas use the four recorded labels.
- Small samples: every statistic computed on fewer cases or readers than the limits below
  (:data:`MIN_CASES`, :data:`MIN_PER_CLASS`, :data:`MIN_READERS`) carries a ``small_sample_warning`` and the
  warning is listed in ``metrics["warnings"]``; the numbers are kept. A CI that collapses to one point
  (``ci_estimable`` false) is a warning too: the report shows it as "not estimable (too few cases)".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations
from typing import Any

import numpy as np

from mim_core.verdict import Verdict

from .delong import delong_test
from .reader_study import design_section, mrmc_section, reading_time_section
from .schema import LABELS, PHASES
from .stats import (MIN_CASES, MIN_PER_CLASS, MIN_READERS, Proportion, binary_metrics, ci_estimable, cohen_kappa, fleiss,
                    model_auroc, predictions_called_mpox, roc_points, small_sample_warning, wilson)
from .store import Store

# every refusal verdict of mim_core (unusable, too noisy, too blurry, ...): counted as no verdict given
REFUSAL_LABELS = frozenset(v.value for v in Verdict if v.is_refusal)

UNCERTAIN_RULES = ("positive", "negative", "exclude")

def collect_warnings(metrics: dict[str, Any]) -> list[str]:
    """Every small-sample and degenerate-CI warning of the metrics, in report order, without repeats."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("small_sample_warning", "ci_warning") and item:
                    found.append(item)
                else:
                    walk(item)

    for section in ("models", "delong", "reviewers", "kappa", "mim_vs_reviewer_majority", "mrmc"):
        walk(metrics.get(section))
    return list(dict.fromkeys(found))


def _p(prop: Proportion) -> float | None:
    return None if prop.value is None else round(prop.value, 4)


def _ci(prop: Proportion) -> list[float] | None:
    return None if prop.low is None else [round(prop.low, 4), round(prop.high, 4)]


def _accuracy(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flatten binary_metrics into JSON-friendly keys: value, value_ci and counts."""
    out: dict[str, Any] = {k: metrics[k] for k in ("tp", "fp", "fn", "tn")}
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        out[name], out[f"{name}_ci"] = _p(metrics[name]), _ci(metrics[name])
    return out


def flow_counts(cases: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """STARD-style flow: imported, excluded (with reasons), usable by reference label, reads per phase."""
    usable = [c for c in cases if not c["excluded_reason"]]
    flow: dict[str, Any] = {
        "cases_imported": len(cases), "excluded": len(cases) - len(usable),
        "excluded_reasons": dict(Counter(c["excluded_reason"] for c in cases if c["excluded_reason"])),
        "usable": len(usable), "reference": dict(Counter(c["reference_label"] for c in usable)),
        "reviewers": len({v["reviewer_id"] for v in verdicts}),
        "corrections": sum(1 for v in verdicts if v["supersedes"] is not None),
    }
    for phase in PHASES:
        rows = [v for v in verdicts if v["phase"] == phase]
        flow[phase] = {"verdicts": len(rows), "cases_read": len({v["case_id"] for v in rows}),
                       "ungradable_cases": len({v["case_id"] for v in rows if v["label"] == "ungradable"})}
    return flow


def current_verdicts(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts that no correction has replaced."""
    return [v for v in verdicts if v["superseded_by"] is None]


def latest_runs(store: Store) -> dict[str, dict[str, Any]]:
    """For each model name, its latest run that has predictions."""
    with_predictions = {r["run_id"] for r in store.query("SELECT DISTINCT run_id FROM predictions")}
    latest: dict[str, dict[str, Any]] = {}
    for run in store.runs():
        if run["id"] in with_predictions:
            latest[run["model_name"]] = run
    return latest


def model_metrics(store: Store, usable_ids: set[str], n_boot: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics per model, ROC points and scores per model for plots and DeLong)."""
    metrics, curves = {}, {}
    for name, run in sorted(latest_runs(store).items()):
        rows = [p for p in store.predictions(run["id"]) if p["case_id"] in usable_ids]
        scores = np.array([p["score"] for p in rows])
        truth = np.array([p["reference_label"] == "mpox" for p in rows])
        entry: dict[str, Any] = {"run_id": run["id"], "kind": run["kind"], "version": run["version"],
                                 "weights_sha256": run["weights_sha256"], "threshold": run["threshold"],
                                 "mpox_when": run["mpox_when"], "n": len(rows), "n_mpox": int(truth.sum()),
                                 "n_not_mpox": int((~truth).sum()), "auroc": None, "auroc_ci": None,
                                 "unusable_photo_verdicts": sum(p["label"] in REFUSAL_LABELS for p in rows)}
        entry["small_sample_warning"] = small_sample_warning(f"{name}'s AUROC, sensitivity and specificity",
                                                             int(truth.sum()), int((~truth).sum()))
        if truth.any() and (~truth).any():
            auc = model_auroc(scores, truth, [p["group_id"] for p in rows], run["mpox_when"], n_boot=n_boot)
            entry["auroc"], entry["auroc_ci"] = round(auc.value, 4), [round(auc.low, 4), round(auc.high, 4)]
            if not ci_estimable(auc.low, auc.high):
                entry["ci_warning"] = (f"The AUROC CI of {name} collapses to a point ({int(truth.sum())} mpox / "
                                       f"{int((~truth).sum())} not mpox cases): not estimable (too few cases).")
            curves[name] = {"roc": roc_points(scores, truth, run["mpox_when"])}
        called = predictions_called_mpox(rows)
        entry.update(_accuracy(binary_metrics(truth, called)))
        metrics[name] = entry
        curves.setdefault(name, {})["cases"] = {p["case_id"]: (p["score"], bool(c)) for p, c in zip(rows, called)}
        curves[name]["truth"] = {p["case_id"]: p["reference_label"] == "mpox" for p in rows}
    return metrics, curves


def delong_section(models: dict[str, Any], curves: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """DeLong test of the MIM model against each other model on the cases both scored."""
    mim = sorted(name for name, m in models.items() if m["kind"] == "mim")
    if not mim:
        return {}, "No MIM model run is available, so there is nothing to compare baselines with."
    reference = mim[0]
    baselines = sorted(name for name in models if name != reference)
    if not baselines:
        return {}, ("No baseline available: only the MIM model has been run "
                    "(classifier baselines come with their weights).")
    out = {}
    for name in baselines:
        common = sorted(set(curves[reference]["cases"]) & set(curves[name]["cases"]))
        truth = [curves[reference]["truth"][c] for c in common]
        a = [-curves[reference]["cases"][c][0] if models[reference]["mpox_when"] == "lower"
             else curves[reference]["cases"][c][0] for c in common]
        b = [-curves[name]["cases"][c][0] if models[name]["mpox_when"] == "lower"
             else curves[name]["cases"][c][0] for c in common]
        n_pos, n_neg = sum(truth), len(truth) - sum(truth)
        warning = small_sample_warning(f"the DeLong test {reference} vs {name}", n_pos, n_neg)
        try:
            result = delong_test(truth, a, b)
        except ValueError as err:
            out[name] = {"vs": reference, "p_value": None, "note": str(err), "n_pos": n_pos, "n_neg": n_neg,
                         "small_sample_warning": warning}
            continue
        out[name] = {"vs": reference, **{k: (round(v, 6) if isinstance(v, float) and np.isfinite(v) else
                                           (None if isinstance(v, float) else v)) for k, v in result.as_dict().items()}}
        estimable = ci_estimable(result.ci_low, result.ci_high)
        out[name].update(small_sample_warning=warning, ci_estimable=estimable, ci_warning=None if estimable else (
            f"The DeLong CI of {reference} vs {name} collapses to a point (its variance is 0 on "
            f"{n_pos} mpox / {n_neg} not mpox cases): not estimable (too few cases); the p-value is "
            "not informative either."))
    return out, None


def _calls(label: str, uncertain: str) -> bool | None:
    """A reviewer's label as a binary mpox call (None: left out)."""
    if label == "ungradable" or (label == "uncertain" and uncertain == "exclude"):
        return None
    return label == "mpox" or (label == "uncertain" and uncertain == "positive")


def reviewer_section(current: list[dict[str, Any]], usable_ids: set[str], uncertain: str) -> dict[str, Any]:
    """Per reviewer and phase: sensitivity and specificity with Wilson CIs, and label counts."""
    out: dict[str, Any] = {}
    for reviewer in sorted({v["reviewer_id"] for v in current}):
        out[reviewer] = {}
        for phase in PHASES:
            rows = [v for v in current if v["reviewer_id"] == reviewer and v["phase"] == phase
                    and v["case_id"] in usable_ids]
            kept = [(v["reference_label"] == "mpox", c) for v in rows
                    if (c := _calls(v["label"], uncertain)) is not None]
            entry = _accuracy(binary_metrics([t for t, _ in kept], [c for _, c in kept]))
            confidence = round(float(np.mean([v["confidence"] for v in rows])), 3) if rows else None
            entry.update({"n_read": len(rows), "labels": dict(Counter(v["label"] for v in rows)),
                          "mean_confidence": confidence})
            if rows:
                entry["small_sample_warning"] = small_sample_warning(
                    f"{reviewer}'s {phase} sensitivity and specificity",
                    sum(t for t, _ in kept), sum(not t for t, _ in kept))
            out[reviewer][phase] = entry
    return out


def kappa_section(current: list[dict[str, Any]], usable_ids: set[str]) -> dict[str, Any]:
    """Pairwise Cohen's kappa and Fleiss' kappa per phase on the four labels, with the items they used."""
    by_phase: dict[str, dict[str, dict[str, str]]] = {p: defaultdict(dict) for p in PHASES}
    for v in current:
        if v["case_id"] in usable_ids:
            by_phase[v["phase"]][v["case_id"]][v["reviewer_id"]] = v["label"]
    reviewers = sorted({v["reviewer_id"] for v in current})
    cohen: dict[str, Any] = {}
    cohen_n: dict[str, Any] = {}
    for a, b in combinations(reviewers, 2):
        key = f"{a}__{b}"
        cohen[key], cohen_n[key] = {}, {}
        for phase in PHASES:
            both = [(r[a], r[b]) for r in by_phase[phase].values() if a in r and b in r]
            cohen[key][phase] = None if not both else _round(cohen_kappa([x for x, _ in both], [y for _, y in both]))
            cohen_n[key][phase] = len(both)
    fleiss_k, fleiss_n = {}, {}
    for phase in PHASES:
        full = [[r[x] for x in reviewers] for r in by_phase[phase].values() if len(reviewers) >= 2 and
                all(x in r for x in reviewers)]
        fleiss_k[phase] = _round(fleiss(full, LABELS)) if full else None
        fleiss_n[phase] = len(full)
    out: dict[str, Any] = {"cohen": cohen, "cohen_n": cohen_n, "fleiss": fleiss_k, "fleiss_n": fleiss_n}
    used = [n for pair in cohen_n.values() for n in pair.values() if n] + [n for n in fleiss_n.values() if n]
    if used:
        out["small_sample_warning"] = small_sample_warning("the kappas (agreement between reviewers)",
                                                           n=min(used))
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def majority_section(current: list[dict[str, Any]], models: dict[str, Any], curves: dict[str, Any],
                     uncertain: str) -> dict[str, Any]:
    """Agreement of the MIM model's call with the reviewers' majority call, per phase (ties left out)."""
    mim = sorted(name for name, m in models.items() if m["kind"] == "mim")
    if not mim:
        return {}
    calls = curves[mim[0]]["cases"]
    out: dict[str, Any] = {"model": mim[0]}
    for phase in PHASES:
        votes: dict[str, list[bool]] = defaultdict(list)
        for v in current:
            if v["phase"] == phase and (c := _calls(v["label"], uncertain)) is not None:
                votes[v["case_id"]].append(c)
        pairs = [(sum(vs) > len(vs) / 2, calls[case][1]) for case, vs in votes.items()
                 if case in calls and sum(vs) * 2 != len(vs)]
        agree = wilson(sum(a == b for a, b in pairs), len(pairs))
        kappa = cohen_kappa([str(a) for a, _ in pairs], [str(b) for _, b in pairs]) if pairs else None
        out[phase] = {"n": len(pairs), "agreement": _p(agree), "agreement_ci": _ci(agree), "kappa": _round(kappa),
                      "ties": sum(1 for vs in votes.values() if sum(vs) * 2 == len(vs)),
                      "small_sample_warning": small_sample_warning(
                          f"{mim[0]} vs the reviewers' majority ({phase})", n=len(pairs)) if pairs else None}
    return out


def compute_metrics(store: Store, uncertain: str = "positive", n_boot: int = 2000) -> tuple[dict[str, Any], dict]:
    """(metrics.json content, plot data). See the module doc for the rules."""
    if uncertain not in UNCERTAIN_RULES:
        raise ValueError(f"uncertain must be one of {', '.join(UNCERTAIN_RULES)}")
    cases = store.cases()
    usable_ids = {c["id"] for c in cases if not c["excluded_reason"]}
    verdicts = store.all_verdicts()
    current = current_verdicts(verdicts)
    models, curves = model_metrics(store, usable_ids, n_boot)
    delong, delong_note = delong_section(models, curves)
    metrics = {
        "flow": flow_counts(cases, verdicts),
        "models": models,
        "delong": delong,
        "reviewers": reviewer_section(current, usable_ids, uncertain),
        "kappa": kappa_section(current, usable_ids),
        "mim_vs_reviewer_majority": majority_section(current, models, curves, uncertain),
        "mrmc": mrmc_section(current, usable_ids, {c["id"]: c["reference_label"] for c in cases}, uncertain),
        "reading_time": reading_time_section(verdicts, usable_ids),
        "design": design_section(store, verdicts),
        "rules": {"uncertain": uncertain, "ungradable": "excluded from sensitivity/specificity",
                  "auroc_ci": f"percentile bootstrap over source groups, {n_boot} resamples, seed 0",
                  "proportion_ci": "Wilson score, 95 %", "delong": "two-sided, paired, cases assumed independent",
                  "mrmc": ("Obuchowski-Rockette with jackknife covariances and Hillis (2007) degrees of freedom, "
                           "readers and cases random (clinical.mrmc.analyze); cases every reader read in both "
                           "phases")},
        "notes": [delong_note] if delong_note else [],
        "sample_size_limits": {"min_cases": MIN_CASES, "min_per_class": MIN_PER_CLASS, "min_readers": MIN_READERS},
    }
    metrics["warnings"] = collect_warnings(metrics)
    return metrics, curves
