"""The reader-study part of the report: MRMC unaided vs aided, reading times, per-case table, design facts.

- Scores for MRMC and the readers' ROC curves come from verdict and confidence on one ordinal scale
  (:data:`SCORE_SCALE`); the MRMC analysis is :func:`clinical.mrmc.analyze` with the phase as modality.
- MRMC needs a fully crossed design: it uses only the usable cases that every reader has a current verdict
  for in both phases, and says so (with a warning when readers read different case sets).
- Reading time: ``lead_time_s`` of each first verdict (corrections left out), per reader and phase.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from .design import describe, washout_days
from .mrmc import analyze
from .schema import PHASES
from .stats import ci_estimable, small_sample_warning
from .store import Store

SCORE_SCALE = ("not mpox with confidence 5, 4, 3, 2, 1 -> 1, 2, 3, 4, 5; uncertain or ungradable (any confidence) "
               "-> 6; mpox with confidence 1, 2, 3, 4, 5 -> 7, 8, 9, 10, 11 (higher = more mpox-like)")
MIDDLE = 6


def ordinal_score(label: str, confidence: int) -> int:
    """One verdict on the 1..11 scale of :data:`SCORE_SCALE`."""
    if label == "mpox":
        return MIDDLE + int(confidence)
    if label == "not mpox":
        return MIDDLE - int(confidence)
    return MIDDLE


def _short(case_id: str) -> str:
    return case_id[:12]


def reads(current: list[dict[str, Any]], usable_ids: set[str]) -> dict[str, dict[str, dict[str, dict]]]:
    """reader -> phase -> case id -> current verdict, usable cases only."""
    out: dict[str, dict[str, dict[str, dict]]] = defaultdict(lambda: {p: {} for p in PHASES})
    for v in current:
        if v["case_id"] in usable_ids:
            out[v["reviewer_id"]][v["phase"]][v["case_id"]] = v
    return dict(sorted(out.items()))


def case_sets(by_reader: dict[str, dict[str, dict[str, dict]]]) -> dict[str, Any]:
    """Which cases every reader read in both phases, and a warning when readers' case sets differ."""
    both = {r: set(p["unaided"]) & set(p["aided"]) for r, p in by_reader.items()}
    anyone = set().union(*(set(p["unaided"]) | set(p["aided"]) for p in by_reader.values())) if by_reader else set()
    common = set.intersection(*both.values()) if both else set()
    differ = any(b != anyone for b in both.values())
    warning = None
    if differ:
        counts = ", ".join(f"{r}: {len(b)}" for r, b in both.items())
        warning = (f"Readers did not all read the same cases (cases read in both phases: {counts}; "
                   f"{len(anyone)} cases read by at least one reader). The MRMC analysis uses only the "
                   f"{len(common)} cases that every reader read in both phases; {len(anyone) - len(common)} "
                   "are left out of it (the per-reader tables use every case each reader read).")
    return {"common": sorted(common), "n_common": len(common), "n_read_by_anyone": len(anyone),
            "per_reader_both_phases": {r: len(b) for r, b in both.items()}, "case_sets_differ": differ,
            "warning": warning}


def mrmc_section(current: list[dict[str, Any]], usable_ids: set[str], reference: dict[str, str],
                 uncertain: str, alpha: float = 0.05) -> dict[str, Any]:
    """``metrics.json["mrmc"]``: OR/Hillis MRMC of AUROC, sensitivity and specificity, aided minus unaided."""
    by_reader = reads(current, usable_ids)
    sets = case_sets(by_reader)
    threshold = MIDDLE if uncertain == "positive" else MIDDLE + 1
    out: dict[str, Any] = {
        "score_scale": SCORE_SCALE, "modalities": ["aided", "unaided"], "difference": "aided - unaided",
        "readers": list(by_reader), "n_cases": sets["n_common"], "n_cases_read_by_anyone": sets["n_read_by_anyone"],
        "cases_left_out": sets["n_read_by_anyone"] - sets["n_common"], "case_sets_differ": sets["case_sets_differ"],
        "per_reader_cases_both_phases": sets["per_reader_both_phases"], "warning": sets["warning"],
        "binary_call": (f"score >= {threshold}: " + ("mpox, uncertain and ungradable are positive calls (referred)"
                                                     if threshold == MIDDLE else
                                                     "only mpox is a positive call (uncertain and ungradable are "
                                                     "negative: an MRMC design cannot leave cells out)")),
        "available": False, "reason": None, "small_sample_warning": None}
    if sets["common"] and len(by_reader) >= 2:
        n_pos = sum(reference[c] == "mpox" for c in sets["common"])
        out["small_sample_warning"] = small_sample_warning(
            "the MRMC analysis (aided vs unaided)", n_pos, len(sets["common"]) - n_pos, n_readers=len(by_reader))
    if len(by_reader) < 2:
        out["reason"] = (f"MRMC needs at least 2 readers with verdicts in both phases; this study has "
                         f"{len(by_reader)}.")
        return out
    if not sets["common"]:
        out["reason"] = "MRMC not computed: no case was read by every reader in both phases."
        return out
    table = pd.DataFrame([{"reader": r, "case": c, "modality": phase, "truth": int(reference[c] == "mpox"),
                           "score": ordinal_score(by_reader[r][phase][c]["label"], by_reader[r][phase][c]["confidence"])}
                          for r in by_reader for c in sets["common"] for phase in PHASES])
    try:
        for key, fom in (("auroc", "auc"), ("sensitivity", "sensitivity"), ("specificity", "specificity")):
            out[key] = analyze(table, alpha=alpha, modalities=("aided", "unaided"), fom=fom,
                               threshold=threshold if fom != "auc" else None)
    except ValueError as err:
        out["reason"] = f"MRMC not computed: {err}."
        for key in ("auroc", "sensitivity", "specificity"):
            out.pop(key, None)
        return out
    out["available"] = True
    collapsed = [key for key in ("auroc", "sensitivity", "specificity")
                 if not all(ci_estimable(*e["ci"]) for e in [*out[key]["rrrc"]["modalities"].values(),
                                                             *out[key]["rrrc"]["differences"],
                                                             *out[key]["frrc"]["differences"]])]
    if collapsed:
        out["ci_warning"] = (f"MRMC CIs that collapse to a point ({', '.join(collapsed)}): not estimable (too few "
                             "cases or readers, or the same calls in both phases leave no variance); their p-values "
                             "are not informative either.")
    return out


def _quartiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median_s": None, "q1_s": None, "q3_s": None}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"n": len(values), "median_s": round(float(median), 2), "q1_s": round(float(q1), 2),
            "q3_s": round(float(q3), 2)}


def reading_time_section(verdicts: list[dict[str, Any]], usable_ids: set[str]) -> dict[str, Any]:
    """``metrics.json["reading_time"]``: median and IQR of ``lead_time_s`` per reader and phase (first reads)."""
    first = [v for v in verdicts if v["supersedes"] is None and v["case_id"] in usable_ids]
    out: dict[str, Any] = {"source": "lead_time_s of each first verdict (corrections left out), seconds",
                           "readers": {}, "all_readers": {}}
    for reader in sorted({v["reviewer_id"] for v in first}):
        out["readers"][reader] = {}
        for phase in PHASES:
            rows = [v for v in first if v["reviewer_id"] == reader and v["phase"] == phase]
            times = [float(v["lead_time_s"]) for v in rows if v["lead_time_s"] is not None]
            out["readers"][reader][phase] = {**_quartiles(times), "without_time": len(rows) - len(times)}
    for phase in PHASES:
        rows = [v for v in first if v["phase"] == phase]
        times = [float(v["lead_time_s"]) for v in rows if v["lead_time_s"] is not None]
        out["all_readers"][phase] = {**_quartiles(times), "without_time": len(rows) - len(times)}
    return out


def reader_rocs(current: list[dict[str, Any]], usable_ids: set[str], reference: dict[str, str]
                ) -> dict[str, dict[str, dict[str, Any]]]:
    """phase -> reader -> ROC points and AUROC of the ordinal score on every case the reader read."""
    out: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PHASES}
    for reader, phases in reads(current, usable_ids).items():
        for phase, rows in phases.items():
            truth = np.array([reference[c] == "mpox" for c in rows])
            if truth.all() or not truth.any():
                continue
            score = np.array([ordinal_score(v["label"], v["confidence"]) for v in rows.values()])
            fpr, tpr, _ = roc_curve(truth, score)
            out[phase][reader] = {"fpr": fpr, "tpr": tpr, "auroc": float(roc_auc_score(truth, score)),
                                  "n": len(rows)}
    return out


def case_table(cases: list[dict[str, Any]], current: list[dict[str, Any]], models: dict[str, Any],
               curves: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """(CSV columns, one row per usable case, reader ids): truth, each model's score, each reader's verdicts."""
    usable = [c for c in cases if not c["excluded_reason"]]
    by_reader = reads(current, {c["id"] for c in usable})
    model_names = sorted(models)
    columns = ["case_id", "file_name", "dataset", "label_class", "reference_label",
               *[f"score {m}" for m in model_names]]
    for reader in by_reader:
        columns += [f"{reader} {phase} {part}" for phase in PHASES for part in ("label", "confidence")]
    rows = []
    for case in usable:
        row: dict[str, Any] = {k: case[k] for k in ("file_name", "dataset", "label_class", "reference_label")}
        row["case_id"] = case["id"]
        for m in model_names:
            row[f"score {m}"] = curves.get(m, {}).get("cases", {}).get(case["id"], (None,))[0]
        for reader, phases in by_reader.items():
            for phase in PHASES:
                v = phases[phase].get(case["id"])
                row[f"{reader} {phase} label"] = v["label"] if v else None
                row[f"{reader} {phase} confidence"] = v["confidence"] if v else None
        rows.append(row)
    return columns, rows, list(by_reader)


def design_section(store: Store, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """``metrics.json["design"]``: randomisation, washout and the stored study settings."""
    settings = {r["key"]: r["value"] for r in store.query("SELECT key, value FROM study_settings ORDER BY key")}
    kinds = {r["id"]: r["kind"] for r in store.query("SELECT id, kind FROM sessions")}
    imported = sum(1 for v in verdicts if kinds.get(v["session_id"]) == "import")
    first = {(v["reviewer_id"], v["case_id"], v["phase"]): v["created_at"] for v in verdicts
             if v["supersedes"] is None and kinds.get(v["session_id"]) != "import"}
    gaps = [(pd.Timestamp(first[(r, c, "aided")]) - pd.Timestamp(t)).total_seconds()
            for (r, c, phase), t in first.items() if phase == "unaided" and (r, c, "aided") in first]
    return {
        "randomisation": ("each reviewer reads the usable cases in their own random order (a permutation seeded "
                          "from the reviewer id; cases imported later are shuffled and appended)"),
        "washout": describe(washout_days(store)),
        "settings": settings,
        "imported_verdicts": imported,
        "unaided_to_aided_interval_s": _quartiles(gaps) | {"source": "created_at of the first unaided and aided "
                                                                     "verdicts read in the app (imports left out)"},
    }
