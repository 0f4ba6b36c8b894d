"""The exported validation report: report.html (self-contained, readable on a phone), metrics.json, verdicts.csv,
predictions.csv and cases.csv (one row per case: truth, model scores, every reader's verdicts). Every CSV goes
through :func:`clinical.csv_export.write_csv` (cells neutralised against spreadsheet formula injection).

Small samples: the page lists every small-sample warning of ``metrics["warnings"]`` at the top and again under
the statistic it concerns (limits in :mod:`clinical.stats`), and a CI that collapses to a point is printed as
"not estimable (too few cases)", never as e.g. "[0.000, 0.000]"."""

from __future__ import annotations

import base64
import io
import json
import math
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from . import APP_VERSION
from .analysis import compute_metrics, current_verdicts
from .csv_export import write_csv
from .reader_study import case_table, reader_rocs
from .schema import PHASES
from .stats import LIMITS, ci_estimable, predictions_called_mpox
from .store import Store

VERDICT_COLUMNS = ["id", "case_id", "file_name", "dataset", "label_class", "reference_label", "reviewer_id",
                   "session_id", "phase", "label", "confidence", "lead_time_s", "created_at", "app_version",
                   "model_version", "comment", "supersedes", "superseded_by"]
PREDICTION_COLUMNS = ["run_id", "model_name", "kind", "version", "weights_sha256", "threshold", "mpox_when",
                      "case_id", "file_name", "dataset", "label_class", "reference_label", "group_id", "score",
                      "label", "called_mpox"]


def _clean(value: Any) -> Any:
    """NaN/inf -> None, recursively, so metrics.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plain(text: str) -> str:
    """Names as literal plot text: an unescaped ``$`` would start matplotlib mathtext (and can fail to parse)."""
    return text.replace("$", r"\$")


def roc_figure(metrics: dict[str, Any], curves: dict[str, Any], readers: dict[str, Any] | None = None) -> str | None:
    """One PNG: ROC curves of every model with its operating point and each reviewer unaided -> aided; below
    it, one panel per phase with each reader's ROC curve from the verdict-and-confidence scale."""
    readers = readers or {}
    if not any("roc" in c for c in curves.values()) and not metrics["reviewers"]:
        return None
    panels = [p for p in PHASES if readers.get(p)]
    fig, axes = plt.subplots(1 + len(panels), 1, figsize=(5.6, 5.2 * (1 + len(panels))), layout="constrained",
                             squeeze=False)
    ax = axes[0, 0]
    for name, curve in curves.items():
        if "roc" not in curve:
            continue
        model = metrics["models"][name]
        fpr, tpr = curve["roc"]
        ax.plot(fpr, tpr, lw=1.8, label=f"{_plain(name)} (AUROC {model['auroc']:.3f})")
        if model["sensitivity"] is not None and model["specificity"] is not None:
            ax.plot(1 - model["specificity"], model["sensitivity"], "o", ms=7, color=ax.lines[-1].get_color())
    for reviewer, phases in metrics["reviewers"].items():
        points = [(1 - phases[p]["specificity"], phases[p]["sensitivity"]) for p in PHASES
                  if phases[p]["sensitivity"] is not None and phases[p]["specificity"] is not None]
        if len(points) == 2:
            ax.annotate("", xy=points[1], xytext=points[0], arrowprops={"arrowstyle": "->", "color": "0.35"})
        for (x, y), phase in zip(points, PHASES):
            ax.plot(x, y, "s", mfc="white" if phase == "unaided" else "0.2", mec="0.2", ms=6)
        if points:
            ax.text(points[-1][0] + 0.01, points[-1][1] - 0.03, _plain(reviewer), fontsize=7)
    ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="1 - specificity", ylabel="sensitivity",
           title="Detecting mpox: models (curves, ● threshold)\nreviewers (□ unaided → ■ aided)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    for ax, phase in zip(axes[1:, 0], panels):
        for reader, curve in readers[phase].items():
            ax.plot(curve["fpr"], curve["tpr"], lw=1.5, marker=".", ms=4,
                    label=f"{_plain(reader)} (AUROC {curve['auroc']:.3f}, n {curve['n']})")
        ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="1 - specificity", ylabel="sensitivity",
               title=f"Readers {phase}: ROC from verdict and confidence")
        ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


NOT_ESTIMABLE = "not estimable (too few cases)"


def _interval(low: Any, high: Any, digits: int) -> str:
    """``[low, high]``, or :data:`NOT_ESTIMABLE` when the CI collapses to a point (see ``ci_estimable``)."""
    if not ci_estimable(low, high) or f"{low:.{digits}f}" == f"{high:.{digits}f}":
        return f"[{NOT_ESTIMABLE}]"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _fmt(value: Any, ci: Any = None) -> str:
    if value is None:
        return "–"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return f"{text} {_interval(ci[0], ci[1], 3)}" if ci else text


def _warnings_in(value: Any) -> list[str]:
    """The small-sample and collapsed-CI warnings inside one part of the metrics, without repeats."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [item] if key in ("small_sample_warning", "ci_warning") and item else _warnings_in(item)
    return list(dict.fromkeys(found))


def _warn(warnings: list[str]) -> list[str]:
    return [f"<p class=warn><b>Small sample.</b> {escape(w)}</p>" for w in warnings]


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _table(headers: list[str], rows: list[list[Any]], css_class: str | None = None) -> str:
    """An HTML table (every cell escaped); on a narrow screen it scrolls sideways (see the page style)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{f' class={css_class}' if css_class else ''}><tr>{head}</tr>{body}</table>"


def _ci(entry: dict[str, Any]) -> str:
    return f"{entry['estimate'] if 'estimate' in entry else entry['difference']:.4f} " \
           f"{_interval(entry['ci'][0], entry['ci'][1], 4)}"


def mrmc_html(mrmc: dict[str, Any]) -> list[str]:
    """Section 5: OR/Hillis MRMC, aided minus unaided, with the case-set warning and the score scale."""
    parts = ["<h2>5. Multi-reader multi-case analysis: aided vs unaided</h2>"]
    if mrmc.get("warning"):
        parts.append(f"<p class=warn><b>Different case sets.</b> {escape(mrmc['warning'])}</p>")
    parts += _warn(_warnings_in(mrmc))
    if not mrmc["available"]:
        return parts + [f"<p>{escape(mrmc['reason'] or 'MRMC not computed.')}</p>"]
    rows = []
    for key, name in (("auroc", "AUROC (verdict-and-confidence scale)"), ("sensitivity", "sensitivity"),
                      ("specificity", "specificity")):
        r = mrmc[key]
        own, diff = r["rrrc"]["modalities"], r["rrrc"]["differences"][0]
        rows.append([name, _ci(own["unaided"]), _ci(own["aided"]), _ci(diff), _num(r["f"]), _num(r["ddf"]),
                     _num(r["p_value"]), f"{_ci(r['frrc']['differences'][0])}, p {_num(r['frrc']['p_value'])}"])
    parts.append(f"<p>{mrmc['n_cases']} cases ({mrmc['auroc']['n_diseased']} mpox, "
                 f"{mrmc['auroc']['n_nondiseased']} not) read by all {len(mrmc['readers'])} readers in both "
                 "phases. Reader-averaged figures with 95 % CIs; difference = aided − unaided; readers and cases "
                 "random (Obuchowski–Rockette, jackknife covariances, Hillis denominator degrees of freedom).</p>")
    parts.append(_table(["figure", "unaided [95% CI]", "aided [95% CI]", "difference [95% CI]", "F", "ddf (Hillis)",
                         "p", "readers fixed: difference [95% CI], p"], rows))
    auc = mrmc["auroc"]
    parts.append(_table(["reader", "AUROC unaided", "AUROC aided", "difference"],
                        [[r, _fmt(auc["reader_auc"]["unaided"][r]), _fmt(auc["reader_auc"]["aided"][r]),
                          _fmt(auc["reader_auc"]["aided"][r] - auc["reader_auc"]["unaided"][r])]
                         for r in mrmc["readers"]]))
    vc = auc["variance_components"]
    parts.append("<p>AUROC variance components: " + ", ".join(
        f"{k} {_num(vc[k])}" for k in ("var_R", "var_TR", "var_error", "cov1", "cov2", "cov3")) + ".</p>")
    parts.append(f"<p>Score scale: {escape(mrmc['score_scale'])}. Sensitivity and specificity: "
                 f"{escape(mrmc['binary_call'])}.</p>")
    return parts


def reading_time_html(reading: dict[str, Any]) -> list[str]:
    """Section 6: median reading time [IQR] per reader and phase."""
    def cell(e: dict[str, Any]) -> str:
        if not e["n"]:
            return f"– (no time; {e['without_time']} reads)" if e["without_time"] else "–"
        extra = f", {e['without_time']} without time" if e["without_time"] else ""
        return f"{e['median_s']:.1f} [{e['q1_s']:.1f}, {e['q3_s']:.1f}] (n {e['n']}{extra})"
    rows = [[r, *[cell(phases[p]) for p in PHASES]] for r, phases in reading["readers"].items()]
    rows.append(["all readers", *[cell(reading["all_readers"][p]) for p in PHASES]])
    return ["<h2>6. Reading time (seconds, median [IQR])</h2>", _table(["reader", *PHASES], rows),
            f"<p>{escape(reading['source'])}.</p>"]


def design_html(design: dict[str, Any]) -> list[str]:
    """Section 7: randomisation and washout as recorded."""
    gap = design["unaided_to_aided_interval_s"]
    items = [f"<li><b>Randomisation</b>: {escape(design['randomisation'])}.</li>",
             f"<li><b>Washout</b>: {escape(design['washout'])}.</li>",
             "<li><b>Observed interval from the unaided to the aided verdict of a case</b>: " +
             (f"median {gap['median_s']:.1f} s [IQR {gap['q1_s']:.1f}, {gap['q3_s']:.1f}] over {gap['n']} cases"
              if gap["n"] else "no case read in both phases in the app") + ".</li>"]
    if design["imported_verdicts"]:
        items.append(f"<li>{design['imported_verdicts']} verdicts were imported from CSV files: their reading "
                     "order and timing are not known.</li>")
    if design["settings"]:
        items.append("<li><b>Stored study settings</b>: " + escape(
            "; ".join(f"{k} = {v}" for k, v in design["settings"].items())) + "</li>")
    return ["<h2>7. Study design</h2><ul>" + "".join(items) + "</ul>"]


def cases_html(columns: list[str], rows: list[dict[str, Any]], readers: list[str], models: list[str]) -> list[str]:
    """Section 8: one row per usable case (the same as cases.csv, verdicts as 'unaided → aided')."""
    def verdict(row: dict[str, Any], reader: str) -> str:
        shown = [f"{row[f'{reader} {p} label']} {row[f'{reader} {p} confidence']}" if row[f"{reader} {p} label"]
                 else "–" for p in PHASES]
        return " → ".join(shown)
    body = [[r["case_id"][:12], r["file_name"], r["reference_label"],
             *[_num(r[f"score {m}"]) for m in models], *[verdict(r, x) for x in readers]] for r in rows]
    return ["<h2>8. Cases</h2><p>Verdict (confidence) unaided → aided; all columns in cases.csv.</p>",
            _table(["case", "file", "reference", *[f"score {m}" for m in models], *readers], body, "nowrap")]


def render_html(metrics: dict[str, Any], roc_png: str | None, db_path: str,
                cases: tuple[list[str], list[dict[str, Any]], list[str]] | None = None) -> str:
    """The report page; every figure is an embedded PNG, so the file stands alone. ``cases``: case_table()."""
    flow, models, rules = metrics["flow"], metrics["models"], metrics["rules"]
    parts = [(f"<h1>MIM clinical validation report</h1><p class=meta>{escape(APP_VERSION)} · database "
             f"{escape(db_path)} · generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}</p>"),
             ("<p class=warn>Research and screening aid only. The reference standard is the class folder each image "
             "came from (web-collected data sets with known label noise), not a laboratory test.</p>"),
             *([f"<div class=warn><b>Small-sample warnings ({len(metrics['warnings'])}).</b> Some statistics below "
                f"rest on too few cases or readers ({escape(LIMITS)}); they are marked where they appear, and a CI "
                f"that collapses to a point is shown as “{NOT_ESTIMABLE}”.<ul>" +
                "".join(f"<li>{escape(w)}</li>" for w in metrics["warnings"]) + "</ul></div>"]
               if metrics.get("warnings") else []),
             "<h2>1. Flow of cases</h2>",
             _table(["step", "count"], [
                 ["images imported", flow["cases_imported"]],
                 ["excluded (unreadable)", flow["excluded"]],
                 *[[f"  – {reason}", n] for reason, n in flow["excluded_reasons"].items()],
                 ["usable cases", flow["usable"]],
                 *[[f"  – reference {label}", n] for label, n in sorted(flow["reference"].items())],
                 ["reviewers with verdicts", flow["reviewers"]],
                 *[[f"{phase}: cases read / verdicts / cases called ungradable",
                    f"{flow[phase]['cases_read']} / {flow[phase]['verdicts']} / {flow[phase]['ungradable_cases']}"]
                   for phase in PHASES],
                 ["corrections (new verdicts superseding earlier ones)", flow["corrections"]]])]
    parts.append("<h2>2. Models at their pre-set thresholds</h2>")
    if models:
        parts.append(_table(
            ["model", "kind", "version", "n (mpox / not)", "AUROC [95% CI]", "threshold", "sensitivity",
             "specificity", "PPV", "NPV", "'not a usable photo'"],
            [[name, m["kind"], m["version"], f"{m['n']} ({m['n_mpox']} / {m['n_not_mpox']})",
              _fmt(m["auroc"], m["auroc_ci"]), f"{m['threshold']:.4g} ({m['mpox_when']} = mpox)",
              _fmt(m["sensitivity"], m["sensitivity_ci"]), _fmt(m["specificity"], m["specificity_ci"]),
              _fmt(m["ppv"], m["ppv_ci"]), _fmt(m["npv"], m["npv_ci"]), m["unusable_photo_verdicts"]]
             for name, m in models.items()]))
        parts += _warn(_warnings_in(models))
    else:
        parts.append("<p>No model has been run yet (<code>python -m clinical run-models</code>).</p>")
    if roc_png:
        parts.append(f"<img alt='ROC curves and reviewer operating points' src='data:image/png;base64,{roc_png}'>")
    parts.append("<h2>3. DeLong test: MIM vs each baseline (paired AUROCs)</h2>")
    if metrics["delong"]:
        parts.append(_table(["baseline", "vs", "AUROC MIM", "AUROC baseline", "difference [95% CI]", "z", "p"],
                            [[b, d["vs"], _fmt(d.get("auc_a")), _fmt(d.get("auc_b")),
                              _fmt(d.get("difference"), [d["ci_low"], d["ci_high"]] if d.get("ci_low") is not None
                                   else None), _fmt(d.get("z")), _fmt(d.get("p_value")) + (
                                  f" ({d['note']})" if d.get("note") else "") + (
                                  " (not informative: the CI collapsed)" if d.get("ci_estimable") is False else "")]
                             for b, d in metrics["delong"].items()]))
        parts += _warn(_warnings_in(metrics["delong"]))
    for note in metrics["notes"]:
        parts.append(f"<p>{escape(note)}</p>")
    parts.append("<h2>4. Reviewers: unaided vs aided</h2>")
    if metrics["reviewers"]:
        parts.append(_table(["reviewer", "phase", "read", "sensitivity", "specificity", "labels", "mean confidence"],
                            [[r, p, e["n_read"], _fmt(e["sensitivity"], e["sensitivity_ci"]),
                              _fmt(e["specificity"], e["specificity_ci"]),
                              ", ".join(f"{k}: {v}" for k, v in sorted(e["labels"].items())),
                              _fmt(e["mean_confidence"])]
                             for r, phases in metrics["reviewers"].items() for p, e in phases.items()]))
        parts += _warn(_warnings_in(metrics["reviewers"]))
        kappa = metrics["kappa"]
        parts.append("<h3>Agreement between reviewers (four labels)</h3>")
        parts.append(_table(["pair", *[f"Cohen's κ {p} (n)" for p in PHASES]],
                            [[pair.replace("__", " vs "),
                              *[f"{_fmt(v[p])} ({kappa['cohen_n'][pair][p]})" for p in PHASES]]
                             for pair, v in kappa["cohen"].items()] +
                            [["all reviewers (Fleiss' κ)", *[f"{_fmt(kappa['fleiss'][p])} ({kappa['fleiss_n'][p]})"
                                                              for p in PHASES]]]))
        parts += _warn(_warnings_in(kappa))
        majority = metrics["mim_vs_reviewer_majority"]
        if majority:
            parts.append(f"<h3>{escape(majority['model'])} vs the reviewers' majority call</h3>")
            parts.append(_table(["phase", "cases", "agreement [95% CI]", "Cohen's κ", "ties left out"],
                                [[p, majority[p]["n"], _fmt(majority[p]["agreement"], majority[p]["agreement_ci"]),
                                  _fmt(majority[p]["kappa"]), majority[p]["ties"]] for p in PHASES]))
            parts += _warn(_warnings_in(majority))
    else:
        parts.append("<p>No clinician verdicts recorded yet.</p>")
    parts += mrmc_html(metrics["mrmc"]) + reading_time_html(metrics["reading_time"]) + design_html(metrics["design"])
    if cases:
        parts += cases_html(*cases, sorted(models))
    parts.append("<h2>9. Methods and rules</h2><ul>" + "".join(
        f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>" for k, v in rules.items()) +
        "<li>Sensitivity, specificity, PPV and NPV use the model card's pre-set threshold; PPV and NPV depend on "
        "this sample's prevalence.</li><li>Files: metrics.json (all numbers), verdicts.csv (every verdict, "
        "corrections included), predictions.csv (every model score).</li></ul>")
    style = ("body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.6em 0;display:block;max-width:100%;overflow-x:auto}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
             "th{background:#f3f3f3}.nowrap td{white-space:nowrap}.meta{color:#666;overflow-wrap:anywhere}"
             ".warn{background:#fff4e0;padding:.5em;border-left:4px solid #e90;margin:.6em 0}"
             "img{max-width:100%;height:auto}h1{font-size:1.5em}"
             "@media (max-width:600px){body{margin:.5em auto;padding:0 .5em;font-size:13px}td,th{padding:2px 4px}}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>MIM clinical validation</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_report(store: Store, out_dir: str | Path, uncertain: str = "positive", n_boot: int = 2000) -> dict[str, Any]:
    """Write the five report files into ``out_dir``; returns the metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, curves = compute_metrics(store, uncertain=uncertain, n_boot=n_boot)
    metrics = _clean(metrics)
    cases, verdicts = store.cases(), store.all_verdicts()
    current = current_verdicts(verdicts)
    usable = {c["id"] for c in cases if not c["excluded_reason"]}
    readers = reader_rocs(current, usable, {c["id"]: c["reference_label"] for c in cases})
    table = case_table(cases, current, metrics["models"], curves)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    (out / "report.html").write_text(render_html(metrics, roc_figure(metrics, curves, readers), str(store.path),
                                                 table), encoding="utf-8")
    write_csv(out / "verdicts.csv", VERDICT_COLUMNS, verdicts)
    predictions = store.predictions()
    for p, called in zip(predictions, predictions_called_mpox(predictions)):
        p["called_mpox"] = bool(called)
    write_csv(out / "predictions.csv", PREDICTION_COLUMNS, predictions)
    write_csv(out / "cases.csv", table[0], table[1])
    return metrics
