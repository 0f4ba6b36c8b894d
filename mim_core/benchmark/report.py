"""Files of a benchmark run (see :mod:`mim_core.benchmark.run`): Markdown, JSON, CSVs and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..evaluation.protocol import OTHERS  # noqa: E402

FILES = ("benchmark.md", "benchmark.json", "unseen_per_class.csv", "unseen_summary.csv", "unseen_scores.csv",
         "noise.csv", "abnormal.csv", "abnormal_summary.csv", "verdicts.csv", "unseen.png", "noise.png",
         "abnormal.png", "verdicts.png")
SHORT = {"gaussian_noise": "noise", "gaussian_blur": "blur", "jpeg": "jpeg-view", "jpeg_photo": "jpeg-photo",
         "brightness_contrast": "bright", "rotation": "rot", "downscale": "down"}
SET_LABELS = {"mpox_test": "mpox test", "others_test": "Others test", "dermnet_test": "DermNet test",
              "healthy": "healthy skin"}


def _fmt(result: dict[str, Any] | None) -> str:
    if not result or result.get("auroc") is None:
        return "n/a"
    return f"{result['auroc']:.3f} [{result['ci_low']:.3f}, {result['ci_high']:.3f}]"


def _pct(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * value:.0f} %"


def summary_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per model: mean / pooled DermNet test AUROC, vs Others test, and the at-threshold rates."""
    rows = []
    for model in results["models"]:
        s = results["unseen"]["summary"][model["name"]]
        t = results["unseen"]["at_threshold"][model["name"]]
        rows.append({"model": model["name"], "kind": model["kind"], "negatives_seen": model["trained_on_negatives"],
                     **{f"mean_dermnet_{k}": v for k, v in s["mean_dermnet_test"].items()},
                     **{f"pooled_dermnet_{k}": v for k, v in s["pooled_dermnet_test"].items()},
                     **{f"others_test_{k}": v for k, v in s["others"].items() if k != "score"},
                     **{k: v for k, v in t.items() if k != "sensitivity_per_source"},
                     **{f"sensitivity_{source}": v for source, v in t.get("sensitivity_per_source", {}).items()}})
    return pd.DataFrame(rows)


def markdown(results: dict[str, Any]) -> str:
    """The benchmark as a Markdown document (numbers only; conclusions are written by people)."""
    models = [m["name"] for m in results["models"]]
    n, summary, cfg = results["n"], results["unseen"]["summary"], results["config"]
    lines = ["# Benchmark: MIM vs classifier baselines", "",
             f"{n['mpox_test']} mpox test photos (never used for training, checkpoints or thresholds by any model) "
             f"against {n['dermnet_test']} photos of the 21 DermNet test classes and the {n['others_test']} photos of "
             "MSLD Others' test split. AUROC for detecting mpox [95 % bootstrap CI over source photos]. Seed "
             f"{cfg['seed']}; {results['timings']['threads']} CPU thread(s); {results['timings']['total_s']:.0f} s.",
             *([f"**Quick run**: at most {cfg['limit']} mpox / Others photos (`--limit`)."] if cfg["limit"] else []),
             *([f"**Subset**: first {cfg['per_class_limit']} photos per DermNet test class (`--per-class-limit`)."]
               if cfg["per_class_limit"] else []),
             "", "| model | kind | negatives seen in training | threshold | ms per image |", "|---|---|---|---|---|"]
    for m in results["models"]:
        lines.append(f"| `{m['name']}` | {m['kind']} | {m['trained_on_negatives']} | {m['threshold']:.4f} | "
                     f"{m['ms_per_image']:.0f} |")
    lines += ["", "## (a) Unseen categories", "",
              "| model | mean AUROC, DermNet test classes | pooled DermNet test | MSLD Others (test split) | "
              "sensitivity | specificity Others | specificity DermNet |", "|---|---|---|---|---|---|---|"]
    for name in models:
        s, t = summary[name], results["unseen"]["at_threshold"][name]
        lines.append(f"| `{name}` | {_fmt(s['mean_dermnet_test'])} | {_fmt(s['pooled_dermnet_test'])} | "
                     f"{_fmt(s['others'])} | {_pct(t['sensitivity_mpox_test'])} | "
                     f"{_pct(t['specificity_others_test'])} | {_pct(t['specificity_dermnet_test'])} |")
    for source, by_model in results["unseen"].get("per_source", {}).items():
        lines += ["", f"Mpox test photos of `{source}` only ({n['mpox_test_per_source'][source]}), same negatives:", "",
                  "| model | mean AUROC, DermNet test classes | pooled DermNet test | MSLD Others (test split) | "
                  "sensitivity |", "|---|---|---|---|---|"]
        for name in models:
            s = by_model[name]
            sensitivity = results["unseen"]["at_threshold"][name]["sensitivity_per_source"][source]
            lines.append(f"| `{name}` | {_fmt(s['mean_dermnet_test'])} | {_fmt(s['pooled_dermnet_test'])} | "
                         f"{_fmt(s['others'])} | {_pct(sensitivity)} |")
    lines += ["", "Sensitivity and specificities at each card's own threshold (set on the val split: every val mpox photo "
              "called mpox-like; for a card whose recipe says `youden-val`, Youden's J over val mpox and val "
              "negatives; `youden-val-oof`, Youden's J over those and the train photos' out-of-fold scores).", "",
              "Per test class (AUROC; CIs in `unseen_per_class.csv`):", "",
              "| class | n | " + " | ".join(f"`{m}`" for m in models) + " |", "|---|---|" + "---|" * len(models)]
    per_class = pd.DataFrame(results["unseen"]["per_class"])
    for cls, rows in per_class.groupby("class", sort=True):
        by_model = dict(zip(rows["score"], rows["auroc"]))
        best = max(by_model.values())
        cells = [f"**{by_model[m]:.3f}**" if by_model[m] == best else f"{by_model[m]:.3f}" for m in models]
        label = cls.split("/")[-1] if cls != OTHERS else "MSLD Others (test)"
        lines.append(f"| {label} | {int(rows['n_neg'].iloc[0])} | " + " | ".join(cells) + " |")
    noise = pd.DataFrame(results["noise"])
    lines += ["", "## (b) Noise", "",
              f"{n['noise_images']} photos (mpox test, Others test, the first {cfg['noise_per_class']} of each DermNet "
              "test class), each corrupted at every severity (seeded, deterministic). AUROC of mpox vs the pooled "
              "negatives; full table with CIs, per-negative-set AUROCs and call rates in `noise.csv`.", "",
              "| corruption | severity | " + " | ".join(f"`{m}`" for m in models) + " | gate flags |",
              "|---|---|" + "---|" * (len(models) + 1)]
    for (corruption, severity), rows in noise.groupby(["corruption", "severity"], sort=False):
        by_model = dict(zip(rows["model"], rows["auroc"]))
        desc = rows["description"].iloc[0]
        cells = ["n/a" if by_model[m] is None or pd.isna(by_model[m]) else f"{by_model[m]:.3f}" for m in models]
        lines.append(f"| {corruption if corruption != 'clean' else '**clean**'} | {severity} ({desc}) | "
                     + " | ".join(cells) + f" | {_pct(rows['gate_flagged'].iloc[0])} |")
    lines += ["", "Mean AUROC over the corruptions at each severity, and the mpox / negative photos each model "
              "calls mpox (at its threshold):", "", "| model | clean | " +
              " | ".join(f"severity {s}" for s in cfg["severities"]) + " | mpox called mpox (clean → worst) | "
              "negatives called mpox (clean → worst) |", "|---|---|" + "---|" * (len(cfg["severities"]) + 2)]
    for name in models:
        rows = noise[noise["model"] == name]
        clean = rows[rows["corruption"] == "clean"].iloc[0]
        means = [rows[rows["severity"] == s]["auroc"].astype(float).mean() for s in cfg["severities"]]
        worst = rows[rows["severity"] == max(cfg["severities"])]
        lines.append(f"| `{name}` | {clean['auroc']:.3f} | " + " | ".join(f"{v:.3f}" for v in means) +
                     f" | {_pct(clean['mpox_called_mpox'])} → {_pct(worst['mpox_called_mpox'].min())} | "
                     f"{_pct(clean['negatives_called_mpox'])} → {_pct(worst['negatives_called_mpox'].max())} |")
    abnormal = pd.DataFrame(results["abnormal"])
    lines += ["", "## (c) Abnormal inputs", "",
              f"{n['abnormal_images']} pictures that are not skin photos: generated (flat colours, noise, text, "
              "charts, patterns) and natural images bundled in installed packages "
              f"({', '.join(results['abnormal_natural_sources']) or 'none found'}). Share each model calls "
              "mpox-like at its threshold; after the gate: what remains mpox-like once MIM's gates (usable skin, "
              "acquisition limits, appearance not-skin limit) have refused what they refuse. Classifiers: share "
              "with P(mpox) ≥ 0.9 "
              "in brackets.", "",
              "| category | n | gate flags | " + " | ".join(f"`{m}` (after gate)" for m in models) + " |",
              "|---|---|---|" + "---|" * len(models)]
    for category, rows in abnormal.groupby("category", sort=False):
        by_model = {r["model"]: r for r in rows.to_dict("records")}
        cells = []
        for m in models:
            r = by_model[m]
            confident = f" [{_pct(r['confident_mpox'])}]" if r["kind"] == "classifier" else ""
            cells.append(f"{_pct(r['called_mpox'])} ({_pct(r['called_mpox_after_gate'])}){confident}")
        label = f"**{category}**" if category == "all" else category
        lines.append(f"| {label} | {int(rows['n'].iloc[0])} | {_pct(rows['gate_flagged'].iloc[0])} | "
                     + " | ".join(cells) + " |")
    lines += verdicts_markdown(results, models)
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in FILES) + "."]
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any]) -> str:
    """right / wrong / no rash / refused shares of one model on one set."""
    no_rash = f" / {_pct(row['no_rash'])}" if row["role"] == "other_rash" else ""
    return f"{_pct(row['right'])} / {_pct(row['wrong'])}{no_rash} / {_pct(row['refused'])}"


def verdicts_markdown(results: dict[str, Any], models: list[str]) -> list[str]:
    """Section (d): right / wrong / (no rash) / refused per condition and set, then the robustness targets."""
    verdicts = pd.DataFrame(results["verdicts"])
    if verdicts.empty:
        return []
    sets = list(dict.fromkeys(verdicts["set"]))
    lines = ["", "## (d) Verdicts: right, wrong, no rash, refused", "",
             "Every model behind the same gates (MIM's: usable skin, its card's acquisition limits, the appearance "
             "check's not-skin limit); photos of (b). Cells: "
             "share called **right / wrong / refused**; for other rashes **right / wrong / no rash / refused** "
             "('no rash visible' is not a mpox call but is a wrong statement about a rash). Wrong: an mpox photo "
             "not called mpox-like, another rash called mpox-like. Full table with Wilson intervals in "
             "`verdicts.csv`.", ""]
    for name in sets:
        lines += [f"**{SET_LABELS.get(name, name)}**", "",
                  "| corruption | severity | " + " | ".join(f"`{m}`" for m in models) + " |",
                  "|---|---|" + "---|" * len(models)]
        part = verdicts[verdicts["set"] == name]
        for (corruption, severity), rows in part.groupby(["corruption", "severity"], sort=False):
            by_model = {r["model"]: r for r in rows.to_dict("records")}
            lines.append(f"| {corruption} | {severity} | " + " | ".join(_cell(by_model[m]) for m in models) + " |")
        lines.append("")
    healthy = pd.DataFrame(results.get("healthy", []))
    if not healthy.empty:
        lines += ["**Healthy skin** (development photos; MIM's no-rash check was designed on `Normal`, and "
                  "`MSID_Normal` shares a collection with the MSID mpox photos): share called mpox-like / refused",
                  "", "| photos | " + " | ".join(f"`{m}`" for m in models) + " |", "|---|" + "---|" * len(models)]
        for folder, rows in healthy.groupby("description", sort=False):
            by_model = rows.set_index("model").loc[models].reset_index().to_dict("records")
            total = max(int(r["n"]) + int(r.get("trained_on") or 0) for r in by_model)
            lines.append(f"| `{Path(folder).name}` ({total}) | " + " | ".join(
                f"{_pct(r['mpox_like'])} / {_pct(r['refused'])}"
                + (f" (trained on {int(r['trained_on'])})" if r.get("trained_on") else "")
                for r in by_model) + " |")
        lines.append("")
    lines += ["**Robustness targets**", "", "| target | " + " | ".join(f"`{m}`" for m in models) + " |",
              "|---|" + "---|" * len(models)]
    targets = results["targets"]
    for i, target in enumerate(targets[models[0]]):
        cells = []
        for m in models:
            t = targets[m][i]
            mark = "" if t["met"] is None else (" ✓" if t["met"] else " ✗")
            cells.append("n/a" if t["measured"] is None else f"{t['measured']:.3f}{mark}")
        lines.append(f"| {target['target']} | " + " | ".join(cells) + " |")
    return lines


def unseen_plot(path: Path, results: dict[str, Any]) -> None:
    """Per-class AUROC of every model (dots), classes sorted by MIM's AUROC."""
    per_class = pd.DataFrame(results["unseen"]["per_class"])
    models = [m["name"] for m in results["models"]]
    order = per_class[per_class["score"] == models[0]].sort_values("auroc")["class"].tolist()
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(order) + 1.5))
    for i, name in enumerate(models):
        rows = per_class[per_class["score"] == name].set_index("class").loc[order]
        ax.scatter(rows["auroc"], np.arange(len(order)) + (i - len(models) / 2) * 0.12,
                   s=36 if i == 0 else 18, marker="D" if i == 0 else "o", label=name)
    ax.axvline(0.5, color="k", lw=0.8, ls=":")
    ax.set_yticks(np.arange(len(order)), [c.split("/")[-1] for c in order], fontsize=7)
    ax.set(xlabel="AUROC (mpox test vs class)", xlim=(0, 1), title="Unseen categories: AUROC per negative class")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def noise_plot(path: Path, results: dict[str, Any]) -> None:
    """AUROC vs severity, one panel per corruption, one line per model (severity 0 = clean)."""
    noise = pd.DataFrame(results["noise"])
    models = [m["name"] for m in results["models"]]
    corruptions = [c for c in noise["corruption"].unique() if c != "clean"]
    cols = 3
    n_rows = int(np.ceil(len(corruptions) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(12, 3.4 * n_rows), squeeze=False)
    for ax, corruption in zip(axes.flat, corruptions):
        for i, name in enumerate(models):
            rows = noise[(noise["model"] == name) & noise["corruption"].isin(["clean", corruption])]
            rows = rows.sort_values("severity")
            ax.plot(rows["severity"], rows["auroc"].astype(float), "D-" if i == 0 else "o--",
                    lw=2.2 if i == 0 else 1.2, label=name)
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set(title=corruption, xlabel="severity (0 = clean)", ylabel="AUROC", ylim=(0, 1),
               xticks=[0, *results["config"]["severities"]])
    for ax in list(axes.flat)[len(corruptions):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def abnormal_plot(path: Path, results: dict[str, Any]) -> None:
    """Share of abnormal inputs called mpox per category and model, and the gate's share."""
    abnormal = pd.DataFrame(results["abnormal"])
    models = [m["name"] for m in results["models"]]
    categories = list(dict.fromkeys(abnormal["category"]))
    width = 0.8 / (len(models) + 1)
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(categories))
    for i, name in enumerate(models):
        rows = abnormal[abnormal["model"] == name].set_index("category").loc[categories]
        ax.bar(x + i * width, rows["called_mpox"], width, label=f"{name}: called mpox")
    gate = abnormal[abnormal["model"] == models[0]].set_index("category").loc[categories]["gate_flagged"]
    ax.bar(x + len(models) * width, gate, width, color="grey", hatch="//", label="refused by the gates")
    ax.set_xticks(x + 0.4 - width / 2, categories)
    ax.set(ylabel="share of images", ylim=(0, 1.05), title="Abnormal inputs: called mpox-like at each threshold")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def verdicts_plot(path: Path, results: dict[str, Any]) -> None:
    """Stacked bars of right / wrong / no rash / refused per condition, one panel per model x photo set."""
    verdicts = pd.DataFrame(results["verdicts"])
    models = [m["name"] for m in results["models"]]
    sets = list(dict.fromkeys(verdicts["set"])) if not verdicts.empty else []
    fig, axes = plt.subplots(len(models), max(1, len(sets)), figsize=(4.2 * max(1, len(sets)), 0.9 + 2.6 * len(models)),
                             squeeze=False, sharey=True)
    colours = {"right": "#2e7d32", "wrong": "#c62828", "no_rash": "#f9a825", "refused": "#9e9e9e"}
    for r, model in enumerate(models):
        for c, name in enumerate(sets):
            ax = axes[r][c]
            rows = verdicts[(verdicts["model"] == model) & (verdicts["set"] == name)]
            labels = [f"{SHORT.get(k, k)} {s}" if k != "clean" else "clean"
                      for k, s in zip(rows["corruption"], rows["severity"])]
            bottom = np.zeros(len(rows))
            for outcome, colour in colours.items():
                values = rows[outcome].astype(float).to_numpy()
                ax.bar(np.arange(len(rows)), values, bottom=bottom, color=colour, width=0.85, label=outcome)
                bottom += values
            ax.set_xticks(np.arange(len(rows)), labels, rotation=90, fontsize=6)
            ax.set_title(f"{model}: {SET_LABELS.get(name, name)}", fontsize=8)
            ax.set_ylim(0, 1)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=len(colours), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_outputs(out_dir: Path, results: dict[str, Any], unseen_scores: pd.DataFrame, noise: pd.DataFrame,
                  abnormal: pd.DataFrame, abnormal_summary: pd.DataFrame, verdicts: pd.DataFrame) -> None:
    """Every file of :data:`FILES` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    pd.DataFrame(results["unseen"]["per_class"]).rename(columns={"score": "model"}).to_csv(
        out_dir / "unseen_per_class.csv", index=False)
    summary_table(results).to_csv(out_dir / "unseen_summary.csv", index=False)
    unseen_scores.to_csv(out_dir / "unseen_scores.csv", index=False)
    noise.to_csv(out_dir / "noise.csv", index=False)
    abnormal.to_csv(out_dir / "abnormal.csv", index=False)
    abnormal_summary.to_csv(out_dir / "abnormal_summary.csv", index=False)
    verdicts.to_csv(out_dir / "verdicts.csv", index=False)
    unseen_plot(out_dir / "unseen.png", results)
    noise_plot(out_dir / "noise.png", results)
    abnormal_plot(out_dir / "abnormal.png", results)
    verdicts_plot(out_dir / "verdicts.png", results)
    (out_dir / "benchmark.md").write_text(markdown(results))
