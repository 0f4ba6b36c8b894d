"""Part (d) of the benchmark: how many photos each model calls right, wrong, "no rash" or refuses.

Every model goes through the **same** gates: MIM's (:meth:`mim_core.detector.MIMDetector.refusals`, run
once per view inside :meth:`~mim_core.detector.MIMDetector.decide_views`: the usable-skin and acquisition
checks with the limits of MIM's card, and the appearance check's not-skin limit). A refused photo gets no
verdict from any model. Every verdict comes from the one rule, :func:`mim_core.verdict.judge`: MIM's
through its own verdict path (gates, score, threshold, no-rash check), a classifier's from its score and
threshold behind the same refusals (the no-rash override reads MIM's score, so it is MIM's alone).

Outcomes per photo:

- mpox photo: ``right`` = mpox-like; ``wrong`` = not mpox-like *or* no rash visible (a missed case);
- photo of another rash (MSLD Others, DermNet): ``right`` = not mpox-like; ``wrong`` = mpox-like;
  ``no_rash`` = "no rash visible" (not a mpox call, but a wrong statement about a rash, so counted apart);
- healthy skin: ``wrong`` = mpox-like; ``right`` = no rash visible or not mpox-like;
- abnormal (not a skin photo): ``refused`` is right; any verdict (``judged``) is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from statsmodels.stats.proportion import proportion_confint

from ..baselines.classifier import REASONS as CLASSIFIER_REASONS
from ..verdict import Verdict, judge

OUTCOMES = ("right", "wrong", "no_rash", "refused")
ROLES = ("mpox", "other_rash", "healthy", "abnormal")


def model_verdicts(model: Any, raw: np.ndarray, judgements: Sequence[Any]) -> list[Verdict]:
    """Each view's verdict from one benchmark model (a :class:`mim_core.benchmark.run.BenchModel`).

    Args:
        raw: (B,) the model's raw scores of its own views of the photos (computed once, ungated).
        judgements: MIM's verdict path on its views of the same photos (:func:`mim_judgements`); their refusals are the
            shared gates', so a classifier gets the same refusals and its own threshold elsewhere.
    """
    if model.kind == "mim":
        return [j.decision.verdict for j in judgements]
    refusals = [j.decision if j.decision.verdict.is_refusal else None for j in judgements]
    return [judge(float(score), model.threshold, model.when, CLASSIFIER_REASONS, refusal=refusal).verdict
            for score, refusal in zip(raw, refusals)]


def mim_judgements(models: Sequence[Any], batch: torch.Tensor, raw: dict[str, np.ndarray],
                   resolutions: Sequence[float | None]) -> list[Any]:
    """MIM's verdict path on the views (models sorted MIM first), reusing its benchmark scores: one run of
    the gates and the appearance network per view, shared by every model."""
    mim = models[0]
    return mim.detector.decide_views(batch, resolutions, scores=raw[mim.name])[0]


def outcome(verdict: Verdict, role: str) -> str:
    """One of :data:`OUTCOMES` for a verdict on a photo of ``role`` (see the module docstring)."""
    if verdict.is_refusal:
        return "refused"
    if role == "mpox":
        return "right" if verdict is Verdict.MPOX_LIKE else "wrong"
    if role == "other_rash" and verdict is Verdict.NO_RASH:
        return "no_rash"
    if role == "abnormal":
        return "wrong"  # a verdict on a picture that is not a skin photo
    return "wrong" if verdict is Verdict.MPOX_LIKE else "right"


def tally(verdicts: Sequence[Verdict], role: str) -> dict[str, Any]:
    """Shares of each outcome, and the 95 % Wilson interval of the wrong share."""
    counts = {k: 0 for k in OUTCOMES}
    for v in verdicts:
        counts[outcome(v, role)] += 1
    n = len(verdicts)
    low, high = proportion_confint(counts["wrong"], n, method="wilson") if n else (np.nan, np.nan)
    return {"n": n, **{k: round(c / n, 4) if n else None for k, c in counts.items()},
            "wrong_ci_low": round(float(low), 4), "wrong_ci_high": round(float(high), 4),
            "mpox_like": round(sum(v is Verdict.MPOX_LIKE for v in verdicts) / n, 4) if n else None}


def verdict_rows(models: Sequence[Any], judgements: Sequence[Any], raw: dict[str, np.ndarray],
                 sets: dict[str, np.ndarray], roles: dict[str, str],
                 condition: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, list]]:
    """Rows of part (d) for one condition: one per model x set.

    Args:
        models: MIM first; judgements: :func:`mim_judgements` of the views; raw: every model's scores.
        sets: {set name: (B,) bool mask over the views}; roles: {set name: one of :data:`ROLES`}.
        condition: columns copied into every row (corruption, severity, description).
    Returns:
        (rows, {model name: per-view verdict values}).
    """
    rows, per_view = [], {}
    for model in models:
        verdicts = model_verdicts(model, raw[model.name], judgements)
        per_view[model.name] = [v.value for v in verdicts]
        for name, mask in sets.items():
            chosen = [v for v, m in zip(verdicts, mask) if m]
            rows.append({"model": model.name, "kind": model.kind, **condition, "set": name, "role": roles[name],
                         **tally(chosen, roles[name])})
    return rows, per_view


def targets(verdicts: pd.DataFrame, noise: pd.DataFrame, healthy: pd.DataFrame, abnormal: pd.DataFrame,
            model: str) -> list[dict[str, Any]]:
    """The robustness targets for one model, measured: [{"target", "measured", "met"}]."""
    def share(set_name: str, corruption: str, severity: int, column: str) -> tuple[float | None, int]:
        rows = verdicts[(verdicts["model"] == model) & (verdicts["set"] == set_name) &
                        (verdicts["corruption"] == corruption) & (verdicts["severity"] == severity)]
        return (None, 0) if rows.empty else (float(rows[column].iloc[0]), int(rows["n"].iloc[0]))

    out = []
    def add(text: str, value: float | None, n: int, limit: float, at_most: bool = True) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        out.append({"target": text, "measured": None if value is None else round(value, 4), "n": n, "met": met})

    add("noisy mpox (std 0.12) called wrong ≤ 10 %", *share("mpox_test", "gaussian_noise", 3, "wrong"), 0.10)
    add("blurred DermNet (2.5 px) called wrong ≤ 10 %", *share("dermnet_test", "gaussian_blur", 3, "wrong"), 0.10)
    add("x4-downscaled DermNet called wrong ≤ 10 %", *share("dermnet_test", "downscale", 3, "wrong"), 0.10)
    add("clean mpox test refused ≤ 10 %", *share("mpox_test", "clean", 0, "refused"), 0.10)
    add("clean DermNet test refused ≤ 20 %", *share("dermnet_test", "clean", 0, "refused"), 0.20)
    add("mpox test sensitivity (called mpox-like) ≥ 0.85", *share("mpox_test", "clean", 0, "right"), 0.85, False)
    mine = healthy[healthy["model"] == model] if not healthy.empty else healthy
    for row in mine.to_dict("records"):
        judged = row["n"] > 0  # none left when the model trained on every one of them
        add(f"healthy-skin photos ({Path(row['description']).name}) called mpox-like ≤ 10 %",
            float(row["mpox_like"]) if judged else None, int(row["n"]), 0.10)
    if mine.empty:
        add("healthy-skin photos called mpox-like ≤ 10 %", None, 0, 0.10)
    ab = abnormal[(abnormal["model"] == model) & (abnormal["category"] == "all")]
    add("abnormal inputs given a verdict ≤ 5 %", *((float(ab["judged"].iloc[0]), int(ab["n"].iloc[0]))
                                                   if len(ab) else (None, 0)), 0.05)
    rows = noise[noise["model"] == model]
    clean = rows[rows["corruption"] == "clean"]["auroc"]
    noisy = rows[(rows["corruption"] == "gaussian_noise") & (rows["severity"] == 2)]["auroc"]
    drop = None if clean.empty or noisy.empty else float(clean.iloc[0] - noisy.iloc[0])
    add("AUROC drop under noise severity 2 ≤ 0.05 (ungated scores)", drop, 0, 0.05)
    return out
