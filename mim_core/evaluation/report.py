"""Tables, plots and files of an evaluation (see :mod:`.evaluate` for the protocol).

Controls get every benefit of the doubt: each one's direction (which scores mean mpox) is chosen on the
dev classes. MIM's direction is fixed by design (higher = less mpox-like).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .protocol import DEV_CLASSES, OTHERS  # noqa: E402
from ..verdict import MIM_SCORE_DIRECTION, called_mpox, lower_is_mpox, mpox_when  # noqa: E402
from .stats import auroc_ci, mean_auroc_ci  # noqa: E402

N_BOOT = 2000


def _classes(table: pd.DataFrame, role: str, dataset: str | None = None) -> list[str]:
    rows = table[table["role"] == role]
    if dataset:
        rows = rows[rows["dataset"] == dataset]
    return sorted(rows["class"].unique())


def _negatives(scores: pd.Series, table: pd.DataFrame, classes: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(scores[table["class"] == c].to_numpy(), table.loc[table["class"] == c, "group"].to_numpy())
            for c in classes]


def _positives(scores: pd.Series, table: pd.DataFrame, role: str) -> tuple[np.ndarray, np.ndarray]:
    rows = table["role"] == role
    return scores[rows].to_numpy(), table.loc[rows, "group"].to_numpy()


def dev_mean_auroc(score: pd.Series, table: pd.DataFrame) -> float:
    """Mean AUROC of mpox val vs each of the 10 DermNet dev classes."""
    pos, groups = _positives(score, table, "mpox_val")
    return mean_auroc_ci(pos, groups, _negatives(score, table, [f"DermNetNZ/{c}" for c in DEV_CLASSES]),
                         n_boot=200).value


def orient(scores: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every score turned to lower = more mpox-like (the convention of :mod:`.stats`).

    ``mim:*`` scores keep MIM's fixed direction (:data:`mim_core.verdict.MIM_SCORE_DIRECTION`); each
    control, which has no direction of its own, gets the one with the higher dev AUROC.
    Returns: (oriented scores, dev table with columns ``score``, ``mpox_when``, ``dev_mean_auroc``).
    """
    oriented, rows = scores.copy(), []
    for name in scores.columns:
        when = mpox_when(MIM_SCORE_DIRECTION)
        auroc = dev_mean_auroc(pd.Series(lower_is_mpox(scores[name], when), index=scores.index), table)
        if name.startswith("control:") and auroc < 0.5:
            when = "higher" if when == "lower" else "lower"
            auroc = dev_mean_auroc(pd.Series(lower_is_mpox(scores[name], when), index=scores.index), table)
        oriented[name] = lower_is_mpox(scores[name], when)
        rows.append({"score": name, "mpox_when": when, "dev_mean_auroc": round(auroc, 4)})
    return oriented, pd.DataFrame(rows)


def test_results(scores: pd.DataFrame, table: pd.DataFrame, names: list[str], prefix_note: str = "") -> dict[str, Any]:
    """Per test class AUROC with CI, the mean over DermNet test classes, vs Others, pooled DermNet."""
    dermnet = _classes(table, "test", "DermNetNZ")
    out: dict[str, Any] = {"dermnet_test_classes": dermnet, "per_class": [], "summary": {}}
    for name in names:
        pos, pos_groups = _positives(scores[name], table, "mpox_test")
        negs = _negatives(scores[name], table, dermnet)
        for cls, (neg, neg_groups) in zip(dermnet + [OTHERS], negs + _negatives(scores[name], table, [OTHERS])):
            result = auroc_ci(pos, neg, pos_groups, neg_groups, n_boot=N_BOOT)
            out["per_class"].append({"score": name, "class": cls, **result.as_dict()})
        pooled_rows = (table["role"] == "test") & (table["dataset"] == "DermNetNZ")
        out["summary"][name] = {
            "mean_dermnet_test": mean_auroc_ci(pos, pos_groups, negs, n_boot=N_BOOT).as_dict(),
            "others": next(r for r in out["per_class"] if r["score"] == name and r["class"] == OTHERS),
            "pooled_dermnet_test": auroc_ci(pos, scores.loc[pooled_rows, name], pos_groups,
                                            table.loc[pooled_rows, "group"], n_boot=N_BOOT).as_dict(),
        }
    return out


def per_source_results(scores: pd.DataFrame, table: pd.DataFrame, names: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`test_results` summaries with the mpox test photos of one source at a time as positives (same
    negatives), keyed by source; empty when the mpox test photos come from one source (the pooled figure is it)."""
    mpox = table["role"] == "mpox_test"
    sources = sorted(table.loc[mpox, "dataset"].unique())
    if len(sources) < 2:
        return {}
    out = {}
    for source in sources:
        keep = ~mpox | (table["dataset"] == source)
        out[source] = test_results(scores[keep], table[keep], names)["summary"]
    return out


def complexity_terciles(scores: pd.DataFrame, table: pd.DataFrame, measured: pd.DataFrame, name: str) -> list[dict]:
    """AUROC of mpox test vs pooled DermNet test within terciles of PNG complexity (cut on the pooled set)."""
    rows = (table["role"] == "mpox_test") | ((table["role"] == "test") & (table["dataset"] == "DermNetNZ"))
    edges = np.quantile(measured.loc[rows, "png_bpp"], [0, 1 / 3, 2 / 3, 1])
    out = []
    for i in range(3):
        inside = rows & measured["png_bpp"].between(edges[i], edges[i + 1], inclusive="both" if i == 2 else "left")
        pos = inside & (table["role"] == "mpox_test")
        neg = inside & (table["role"] == "test")
        row = {"tercile": i + 1, "png_bpp_range": [round(float(edges[i]), 3), round(float(edges[i + 1]), 3)],
               "auroc": None, "n_pos": int(pos.sum()), "n_neg": int(neg.sum())}
        if pos.sum() >= 2 and neg.sum() >= 2:  # an AUROC from fewer positives is noise, not a number
            row.update(auroc_ci(scores.loc[pos, name], scores.loc[neg, name], table.loc[pos, "group"],
                                table.loc[neg, "group"], n_boot=N_BOOT).as_dict())
        out.append(row)
    return out


def threshold_metrics(score: pd.Series, table: pd.DataFrame, threshold: float, when: str) -> dict[str, float]:
    """Sensitivity on mpox test; specificity on Others and on pooled DermNet test, at the card's threshold
    (``when``: which scores mean mpox, :func:`mim_core.verdict.mpox_when`)."""
    flagged = pd.Series(~called_mpox(score, threshold, when), index=score.index)
    dermnet = (table["role"] == "test") & (table["dataset"] == "DermNetNZ")
    return {
        "threshold": threshold,
        "sensitivity_mpox_test": round(float((~flagged[table["role"] == "mpox_test"]).mean()), 4),
        "specificity_others": round(float(flagged[table["class"] == OTHERS].mean()), 4),
        "specificity_dermnet_test": round(float(flagged[dermnet].mean()), 4),
    }


def roc_plot(path: Path, scores: pd.DataFrame, table: pd.DataFrame, names: list[str]) -> None:
    """ROC curves, mpox test vs MSLD Others and vs pooled DermNet test classes."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    targets = [("MSLD_v1/Others", table["class"] == OTHERS),
               ("DermNet test classes (pooled)", (table["role"] == "test") & (table["dataset"] == "DermNetNZ"))]
    pos = table["role"] == "mpox_test"
    for ax, (title, neg) in zip(axes, targets):
        for name in names:
            y = np.r_[np.ones(pos.sum()), np.zeros(neg.sum())]
            s = -np.r_[scores.loc[pos, name], scores.loc[neg, name]]
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, lw=2.5 if name.startswith("mim") else 1.2, label=name)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=f"mpox test vs {title}", xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(result: dict) -> str:
    return f"{result['auroc']:.3f} [{result['ci_low']:.3f}, {result['ci_high']:.3f}]"


def markdown(results: dict[str, Any]) -> str:
    """The evaluation as a Markdown document."""
    mim, controls = results["selected"], results["controls"]
    summary = results["test"]["summary"]
    lines = [f"# MIM evaluation: `{results['model']}`", "",
             f"MIM score (the card's measure, chosen on dev classes only): `{mim}`. Positives: {results['n_mpox_test']} mpox test "
             "photos. AUROC [95% bootstrap CI over source groups]; higher = better at telling mpox apart.", "",
             *([f"**Stress check:** every DermNet photo was first shrunk to a short side of "
                f"{results['dermnet_short_side']} px (MSLD's scale).", ""] if results.get("dermnet_short_side") else []),
             "## Summary: MIM beside every mpox-agnostic control", "",
             "| score | mean AUROC, 21 DermNet test classes | AUROC vs MSLD Others | pooled DermNet test |",
             "|---|---|---|---|"]
    for name in [mim] + controls:
        s = summary[name]
        lines.append(f"| `{name}` | {_fmt(s['mean_dermnet_test'])} | {_fmt(s['others'])} | {_fmt(s['pooled_dermnet_test'])} |")
    for source, by_name in results.get("per_source", {}).items():
        n = by_name[mim]["mean_dermnet_test"].get("n_pos", "")
        lines += ["", f"Mpox test photos of `{source}` only{f' ({n})' if n else ''}:", "",
                  "| score | mean AUROC, 21 DermNet test classes | AUROC vs MSLD Others | pooled DermNet test |",
                  "|---|---|---|---|"]
        for name in [mim] + controls:
            s = by_name[name]
            lines.append(f"| `{name}` | {_fmt(s['mean_dermnet_test'])} | {_fmt(s['others'])} | "
                         f"{_fmt(s['pooled_dermnet_test'])} |")
    margins = results["margins"]
    lines += ["", f"MIM's margin over the best control: mean DermNet test {margins['mean_dermnet_test']:+.3f} "
              f"(best `{margins['best_control_mean_dermnet_test']}`), vs Others {margins['others']:+.3f} "
              f"(best `{margins['best_control_others']}`).", "",
              "## Per test class", "", "| class | n | MIM | best control | its AUROC | margin |", "|---|---|---|---|---|---|"]
    for row in results["per_class_margins"]:
        lines.append(f"| {row['class']} | {row['n_neg']} | {row['mim']:.3f} [{row['mim_low']:.3f}, {row['mim_high']:.3f}] "
                     f"| `{row['best_control']}` | {row['best_control_auroc']:.3f} | {row['margin']:+.3f} |")
    wm = results["watermark"]
    lines += ["", "## Watermark check", "",
              f"DermNet photos scored again with the watermark corner blanked ({wm['identical_crops']} of "
              f"{wm['n_dermnet']} preprocessed crops identical). Mean DermNet test AUROC: {wm['mean_auroc']:.4f} "
              f"as is, {wm['mean_auroc_blanked']:.4f} blanked (difference {wm['difference']:+.4f}).", "",
              "## Complexity terciles (PNG bits per pixel; mpox test vs pooled DermNet test)", "",
              "| tercile | bpp range | n mpox | n non-mpox | AUROC |", "|---|---|---|---|---|"]
    for t in results["complexity_terciles"]:
        auc = f"{t['auroc']:.3f} [{t['ci_low']:.3f}, {t['ci_high']:.3f}]" if t.get("auroc") is not None else "n/a"
        lines.append(f"| {t['tercile']} | {t.get('png_bpp_range', '')} | {t['n_pos']} | {t['n_neg']} | {auc} |")
    th = results["threshold"]
    lines += ["", "## At the card's threshold", "",
              f"Threshold {th['threshold']:.4f}: sensitivity on mpox test {th['sensitivity_mpox_test']:.3f}; "
              f"specificity vs Others {th['specificity_others']:.3f}, vs DermNet test {th['specificity_dermnet_test']:.3f}.",
              "", "## Dev classes (mpox val vs 10 DermNet dev classes): used for every choice", "",
              "| score | direction | mean dev AUROC |", "|---|---|---|"]
    for row in results["dev"]:
        direction = f"{row['mpox_when']} = more mpox-like"
        lines.append(f"| `{row['score']}` | {direction} | {row['dev_mean_auroc']:.3f} |")
    lines += ["", "Score definitions:", ""] + [f"- `{k}`: {v}" for k, v in results["definitions"].items()]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, results: dict[str, Any], scores: pd.DataFrame, measured: pd.DataFrame) -> None:
    """results.json, evaluation.md, per_class_auroc.csv, scores.csv (score per image), measurements.csv
    (raw per-image numbers, for new measures without re-running the model) and roc.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = measured[["path", "dataset", "class", "group", "role"]]
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    pd.DataFrame(results["test"]["per_class"]).to_csv(out_dir / "per_class_auroc.csv", index=False)
    pd.concat([table, scores], axis=1).to_csv(out_dir / "scores.csv", index=False)
    measured.to_csv(out_dir / "measurements.csv", index=False)
    (out_dir / "evaluation.md").write_text(markdown(results))
    roc_plot(out_dir / "roc.png", scores, table, [results["selected"]] + results["controls"])
