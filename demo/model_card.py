"""The Model tab: the model card (the JSON file shipped beside the weights) and the code's own facts,
rendered as Markdown.

Nothing here is hand-copied: every number comes from the card, and the list of answers and refusals from
the code (:class:`mim_core.Verdict`, :class:`mim_core.gate.GateThresholds`), so new weights or a new gate
bring their own lines. Every section tolerates missing keys: a card from another training run may carry
more or fewer fields.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from mim_core import Verdict
from mim_core.gate import GateThresholds

# A card from fewer steps than this is a smoke test, not a model; say so loudly.
PLACEHOLDER_STEPS = 100
# a detection result counts only this far (AUROC) above the best mpox-agnostic control
CONTROL_MARGIN = 0.10

# Which acquisition limits refuse a photo with which answer (mim_core.gate.acquisition_refusal, in its
# order). tests/test_demo_model_tab.py checks that every limit of GateThresholds and every refusal is here.
GATE_LIMITS: dict[Verdict, tuple[str, ...]] = {
    Verdict.TOO_NOISY: ("max_noise",),
    Verdict.BADLY_EXPOSED: ("min_mean_luma", "max_mean_luma", "max_clipped"),
    Verdict.TOO_LOW_RESOLUTION: ("min_resolution",),
    Verdict.TOO_COMPRESSED: ("max_blockiness", "max_photo_blockiness"),
    Verdict.TOO_BLURRY: ("min_sharpness", "min_coarse_sharpness"),
    Verdict.UNUSABLE: ("min_detail",),
}
NOT_LIMITS = ("clean_noise", "rule")  # GateThresholds fields that refuse nothing (denoising level, provenance)


def _md(text: Any) -> str:
    """Card text safe inside Markdown table cells and lines."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _md(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _label(key: Any) -> str:
    """A card key as words ("specificity_others" -> "specificity others")."""
    return _md(key).replace("_", " ")


def _table(headers: Sequence[str], rows: Iterable[Iterable[Any]], numeric: Sequence[bool] = ()) -> str:
    """A Markdown table; columns flagged in ``numeric`` are right-aligned (the page keeps them on one line)."""
    rule = "|" + "".join("---:|" if i < len(numeric) and numeric[i] else "---|" for i in range(len(headers)))
    lines = ["| " + " | ".join(headers) + " |", rule]
    lines += ["| " + " | ".join(_num(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def steps_run(card: Mapping[str, Any]) -> int | None:
    """The training steps actually run (a run stopped by a time limit ends before its config's steps)."""
    training = card.get("training") or {}
    steps = training.get("steps_done", training.get("steps"))
    return steps if isinstance(steps, int) else None


def placeholder_warning(card: dict[str, Any], pointer: str = "see the Model tab") -> str | None:
    """A warning when the weights are a smoke-test placeholder, or when the card's own evaluation says
    the model does not beat the mpox-agnostic controls by ``CONTROL_MARGIN``; else None. ``pointer``
    says where the evidence is shown (empty: nowhere, for a banner above every tab)."""
    pointer = f"; {pointer}" if pointer else ""
    steps = steps_run(card)
    if steps is not None and steps < PLACEHOLDER_STEPS:
        return (f"These weights were trained for only {steps} steps: a placeholder for testing the software. "
                "Their scores and verdicts mean nothing.")
    margins = card.get("evaluation", {}).get("margins", {})
    worst = min((m for m in (margins.get("mean_dermnet_test"), margins.get("others")) if isinstance(m, (int, float))),
                default=None)
    if worst is not None and worst <= 0:
        return (f"On our own evaluation this model does not beat simple checks that know nothing of mpox "
                f"(margin {worst:+.2f} AUROC against the best one{pointer}). Treat its verdicts as a "
                "demonstration of the method, not as evidence about a rash.")
    elsewhere = _cross_source_words(card)
    if worst is not None and worst < CONTROL_MARGIN:
        return (f"On our own evaluation this model beats simple checks that know nothing of mpox by only "
                f"{worst:+.2f} AUROC (our bar is +{CONTROL_MARGIN:.2f}{pointer}).{elsewhere} Treat its verdicts as "
                "a research signal, not as evidence about a rash.")
    if elsewhere:
        return f"{elsewhere.strip()} Treat its verdicts as a research signal, not as evidence about a rash."
    return None


METHOD_NAMES = {"mim": "MIM (inpainting)", "probe": "linear probe on ImageNet features",
                "control:complexity": "control: image complexity", "one-class:knn": "one-class: nearest neighbour",
                "one-class:mahalanobis": "one-class: Mahalanobis", "one-class:patchcore": "one-class: PatchCore statistic"}


def _test_figures(section: Mapping[str, Any], method: str) -> list[tuple[float, float]]:
    """(diseases, healthy) test-side AUROCs of ``method``, one pair per direction of the card's ``cross_source``."""
    pairs = []
    for direction in (section.get("directions") or {}).values():
        try:
            r = direction["test"][method]
            pairs.append((float(r["dermnet_mean"]["auroc"]), float(r["healthy"]["auroc"])))
        except (KeyError, TypeError, ValueError):
            continue
    return pairs


def _span(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}"


def _cross_source_words(card: Mapping[str, Any]) -> str:
    """One sentence on photos from a source the model never saw (the card's own method, test side), or ''."""
    section = card.get("cross_source") or {}
    pairs = _test_figures(section, str(section.get("this", "")))
    if not pairs:
        return ""
    return (f" On photos from a source it never saw, its AUROC is {_span([p[0] for p in pairs])} against other skin "
            f"diseases and {_span([p[1] for p in pairs])} against healthy skin (0.50 = chance).")


def _loss_words(section: Mapping[str, Any], winner: str) -> str:
    """How far MIM falls behind the winner on the test side (mean over directions), or '' if MIM won."""
    mim, best = _test_figures(section, "mim"), _test_figures(section, winner)
    if winner == "mim" or not mim or len(mim) != len(best):
        return ""
    gap = [sum(b[k] - m[k] for m, b in zip(mim, best)) / len(mim) for k in (0, 1)]
    return (f" MIM loses to it by {gap[0]:.2f} AUROC against other diseases and {gap[1]:.2f} against healthy skin "
            "on the test side (mean over both directions).")


def _cross_source_section(section: Mapping[str, Any]) -> list[str]:
    """Both directions' test side: every method fitted on the same photos, and the dev winner."""
    directions = section.get("directions") if isinstance(section, Mapping) else None
    if not isinstance(directions, Mapping) or not directions:
        return []
    auroc = lambda r, key: (r.get(key) or {}).get("auroc", "")  # noqa: E731
    out = ["## Photos from a source it never saw", "",
           "Each method fitted on one mpox source and judged on the other: AUROC against other diseases (mean over "
           "the DermNet test classes), healthy skin and MSLD Others, and the share of healthy photos called "
           "mpox-like. Confidence intervals: docs/cross_source.md.", ""]
    winner = section.get("winner") or {}
    if winner.get("method"):
        figures = ", ".join(f"{METHOD_NAMES.get(m, m)} {_num(v, 3)}" for m, v in
                            sorted((winner.get("dev_figure") or {}).items(), key=lambda kv: -kv[1]))
        out += [f"**The verdict model is the {METHOD_NAMES.get(winner['method'], winner['method'])}**: it won on the "
                f"dev side ({_md(winner.get('rule', ''))}: {figures}).{_loss_words(section, winner['method'])}", ""]
    for name, sides in directions.items():
        test = (sides or {}).get("test") or {}
        rows = [[METHOD_NAMES.get(m, m), *(auroc(r, key) for key in ("dermnet_mean", "healthy", "others")),
                 (r.get("called_mpox_like") or {}).get("healthy", "")] for m, r in test.items() if isinstance(r, Mapping)]
        out += [f"**{_md(name)}**, test side:", "",
                _table(["method", "diseases", "healthy", "Others", "healthy called"], rows,
                       (False, True, True, True, True)), ""]
    return out + [_md(section.get("note", "")), ""]


def _summary_section(card: dict[str, Any], scales: Sequence[int] | None) -> list[str]:
    data, split, training = card.get("data", {}), card.get("split", {}), card.get("training", {})
    threshold = card.get("threshold", {})
    answers = [v.value for v in Verdict if not v.is_refusal]
    refusals = [v.value for v in Verdict if v.is_refusal]
    out = ["## In short", "",
           f"- **Answers:** {', '.join(answers)}; or a refusal ({', '.join(refusals)})."]
    if card.get("score_direction"):
        score = card.get("evaluation", {}).get("score")
        out.append(f"- **Score:** {_md(card['score_direction'])}" + (f"; measure `{_md(score)}`" if score else "")
                   + (f"; mask scales analysed: {', '.join(f'{s} px' for s in scales)}." if scales else "."))
    if "value" in threshold:
        out.append(f"- **Threshold:** **{_num(threshold['value'], 5)}**, a photo scoring at or below it is called "
                   f"*mpox-like*" + (f"; set as the {_md(threshold['method'])}." if threshold.get("method") else "."))
    if "train" in split or "train_uses" in data:
        trained = f"{len(split['train'])} photos, " if "train" in split else ""
        roots = ", ".join(f"`{_md(r)}`" for r in data.get("roots", []))
        out.append(f"- **Trained on:** {trained}{_md(data.get('train_uses', ''))}" + (f" (from {roots})." if roots else "."))
    if split:
        sizes = ", ".join(f"{_md(k)} {len(v)}" for k, v in split.items())
        seed = f"; split seed {training['split_seed']}" if "split_seed" in training else ""
        rule = f": {_md(data['split_rule'])}" if "split_rule" in data else ""
        out.append(f"- **Split sizes:** {sizes}{rule}{seed}.")
    steps = steps_run(card)
    if steps is not None:
        run = training.get("run_settings", {})
        parts = [f"{steps} steps run"]
        if "seed" in training:
            parts.append(f"seed {training['seed']}")
        if "best_step_by_val_masked_l1" in training:
            parts.append(f"best step by validation masked L1: {training['best_step_by_val_masked_l1']}")
        if "train_seconds" in training:
            where = ", ".join(str(run[k]) for k in ("device", "precision") if k in run)
            parts.append(f"{_num(training['train_seconds'])} s" + (f" ({where})" if where else ""))
        out.append(f"- **Training:** {'; '.join(parts)}.")
    return out + [""]


def _auroc_row(label: str, result: Any) -> list[Any] | None:
    if not isinstance(result, dict) or "auroc" not in result:
        return None
    ci = f"{_num(result['ci_low'])}–{_num(result['ci_high'])}" if "ci_low" in result else ""
    photos = f"{result['n_pos']} / {result['n_neg']}" if "n_pos" in result and "n_neg" in result else ""
    return [label, result["auroc"], ci, photos]


def _evaluation_section(evaluation: dict[str, Any]) -> list[str]:
    out = ["## Evaluation", ""]
    if not evaluation:
        return out + ["No evaluation recorded in this card.", ""]
    headline = [("DermNet test classes, mean", "mean_auroc_dermnet_test_classes"),
                ("DermNet test, pooled", "auroc_pooled_dermnet_test"),
                ("MSLD 'Others'", "auroc_vs_msld_others")]
    rows = [r for label, key in headline if (r := _auroc_row(label, evaluation.get(key)))]
    per_source = evaluation.get("per_source")
    for source, figures in (per_source.items() if isinstance(per_source, dict) else []):
        for label, key in (("DermNet test classes, mean", "mean_dermnet_test"), ("MSLD 'Others'", "others")):
            if row := _auroc_row(f"{label}: {source} mpox only", (figures or {}).get(key)):
                rows.append(row)
    if rows:
        out += ["How well the score tells mpox test photos from other conditions (AUROC: 0.5 = chance, "
                "1 = perfect):", "",
                _table(["against", "AUROC", "95 % CI", "photos (mpox / other)"], rows, (False, True, True, True)), ""]
    at = evaluation.get("at_threshold")
    if isinstance(at, dict):
        out += ["At the threshold:", "", _table(["quantity", "value"], [(_label(k), v) for k, v in at.items()],
                                                  (False, True)), ""]
    controls = evaluation.get("controls")
    if isinstance(controls, dict) and controls:
        keys = sorted({k for v in controls.values() if isinstance(v, dict) for k in v})
        rows = [[name.removeprefix("control:"), *(v.get(k, "") for k in keys)]
                for name, v in controls.items() if isinstance(v, dict)]
        out += ["Controls: simple scores that know nothing of mpox (AUROC; the model should beat them):", "",
                _table(["control", *map(_label, keys)], rows, (False, *[True] * len(keys))), ""]
    margins = evaluation.get("margins")
    if isinstance(margins, dict) and margins:  # {"others": 0.148, "best_control_others": "control:...", ...}
        rows = [[_label(k), f"{v:+.4g}", str(margins.get(f"best_control_{k}", "")).removeprefix("control:")]
                for k, v in margins.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out += ["AUROC margin of the model over the best control:", "",
                _table(["compared on", "margin", "best control"], rows, (False, True, False)), ""]
    per_class = evaluation.get("per_class_auroc")
    if isinstance(per_class, dict) and per_class:
        out += ["<details><summary>AUROC per comparison class</summary>", "",
                _table(["class", "AUROC"], sorted(per_class.items()), (False, True)), "", "</details>", ""]
    shown = {"at_threshold", "per_class_auroc", "controls", "margins", "per_source", *(key for _, key in headline)}
    rest = [(k, v) for k, v in evaluation.items() if k not in shown]
    if rest:
        out += ["<details><summary>Everything else the evaluation recorded</summary>", ""]
        for key, value in rest:
            if isinstance(value, dict):
                out += [f"**{_label(key)}**", "", _table(["field", "value"], value.items(), (False, True)), ""]
            else:
                out += [f"**{_label(key)}**: {_num(value)}", ""]
        out += ["</details>", ""]
    return out


def _limit_words(name: str, value: float) -> str:
    measured = name.split("_", 1)[1].replace("_", " ")
    return f"{measured} {'above' if name.startswith('max_') else 'below'} {_num(value, 5)}"


def _refusals_section(card: dict[str, Any], gate: GateThresholds) -> list[str]:
    """Every refusal the code can give, with the limits that trigger it, and the no-rash check."""
    section, appearance = card.get("quality_gate") or {}, card.get("appearance") or {}
    no_rash, not_skin = appearance.get("no_rash", {}), appearance.get("not_skin", {})
    whole = appearance.get("not_skin_photo", {})
    rows = []
    for verdict in (v for v in Verdict if v.is_refusal):
        limits = [_limit_words(name, getattr(gate, name)) for name in GATE_LIMITS.get(verdict, ())]
        if verdict is Verdict.UNUSABLE:
            limits = ["not an image, or a flat, grayscale or skin-less picture", *limits]
            if "limit" in whole:
                limits.append(f"whole-picture distance above {_num(whole['limit'], 5)} (unlike every skin reference "
                              "photo, checked before noise, light, blur and compression)")
            if "limit" in not_skin:
                limits.append(f"patch distance above {_num(not_skin['limit'], 5)} (unlike any skin photo)")
        rows.append([verdict.value, "; or ".join(limits)])
    if "threshold" in no_rash:
        rows.append([f"{Verdict.NO_RASH.value} (an answer)",
                     f"an mpox-like score, but patch distance above {_num(no_rash['threshold'], 5)}"])
    out = ["## When it refuses, or says \"no rash visible\"", "",
           "A refused photo gets no score, only the reason and how to retake it.", "",
           _table(["answer", "given when"], rows), "", "<details><summary>How these limits were set</summary>", ""]
    if section:
        out += [f"Limits set from {_md(section.get('n_photos', '?'))} photos "
                f"({_md(section.get('calibration_photos', ''))}): {_md(section.get('rule', ''))}.", ""]
    else:
        out += [f"Limits: {_md(gate.rule)}.", ""]
    if appearance:
        out += [f"Patch distance: {_md(appearance.get('features', ''))}, to the cells of "
                f"{_md(appearance.get('n_photos', '?'))} photos ({_md(appearance.get('bank_photos', ''))}). "
                f"No rash visible: {_md(no_rash.get('rule', ''))}. Unlike any skin photo: "
                f"{_md(not_skin.get('rule', ''))}.", ""]
    measurements = section.get("measurements") or {}
    out += [*(f"- **{_md(k.replace('_', ' '))}:** {_md(v)}" for k, v in measurements.items()), "", "</details>", ""]
    return out


def _verdict_model_section(card: Mapping[str, Any]) -> list[str]:
    """Which model gives the verdict when it is not MIM (a :class:`mim_core.Screening`), from its own card."""
    threshold, data = card.get("threshold") or {}, card.get("data") or {}
    roots = ", ".join(f"`{_md(r)}`" for r in data.get("roots", []))
    lines = [f"- **Model:** `{_md(card.get('name', 'unnamed'))}`: {_md(card.get('description', ''))}",
             f"- **Score:** {_md(card.get('score_direction', ''))}."]
    if "value" in threshold:
        lines.append(f"- **Threshold:** **{_num(threshold['value'], 5)}**"
                     + (f"; set as the {_md(threshold['method'])}." if threshold.get("method") else "."))
    if data.get("train_uses"):
        lines.append(f"- **Trained on:** {_md(data['train_uses'])}" + (f" (from {roots})." if roots else "."))
    if card.get("weights_sha256"):
        lines.append(f"- **Weights sha256:** `{_md(card['weights_sha256'])}`")
    return ["## Who gives the verdict", "",
            "The score, threshold and verdict come from this model, because it transfers to photo sources it never "
            "saw better than MIM (see *Photos from a source it never saw* below). Everything else on the page comes "
            "from MIM: the masked, inpainted and score-map panels, every refusal and the no-rash check. MIM's own "
            "score and threshold below are shown for reference; they do not give the verdict.", "", *lines, ""]


def _identity_section(card: dict[str, Any]) -> list[str]:
    training, recipe, data = card.get("training", {}), card.get("recipe", {}), card.get("data", {})
    facts = [("Weights file", card.get("weights_file")),
             ("Weights sha256", card.get("weights_sha256") and f"`{card['weights_sha256']}`"),
             ("Card format", card.get("format")),
             ("Recipe", recipe.get("file") and f"`{recipe['file']}` (sha256 `{recipe.get('sha256', '?')}`)"),
             ("Data manifest sha256", data.get("manifest_sha256") and f"`{data['manifest_sha256']}`"),
             ("Training command", training.get("command") and f"`{training['command']}`"),
             ("Training note", training.get("note"))]
    lines = [f"- **{label}:** {_md(value)}" for label, value in facts if value]
    return ["## Provenance", "", *lines, ""] if lines else []


def card_markdown(card: dict[str, Any], gate: GateThresholds | None = None,
                  scales: Sequence[int] | None = None, warning: bool = True,
                  verdict_card: Mapping[str, Any] | None = None) -> str:
    """The whole card as Markdown: what the model answers, its data, split and training run, its
    threshold and measured results, when it refuses, and its known limitations.

    Args:
        gate: the loaded detector's acquisition limits (default: the card's own, as the detector reads them).
        scales: the mask scales the loaded detector analyses (not shown when None).
        warning: include :func:`placeholder_warning` (off where the page already shows it in a banner).
        verdict_card: the card of the model that gives the verdict when it is not MIM (a Screening's).
    """
    gate = gate or GateThresholds.from_card(card)
    out = [f"# Model card: {_md(card.get('name', 'unnamed model'))}", ""]
    if warning and (text := placeholder_warning(card, pointer="see Evaluation below")):
        out += [f"> **Warning.** {text}", ""]
    out += [_md(card.get("description", "")), ""]
    if verdict_card is not None:
        out += _verdict_model_section(verdict_card)
    out += _summary_section(card, scales)
    out += _evaluation_section(card.get("evaluation", {}))
    out += _cross_source_section(card.get("cross_source") or {})
    out += _refusals_section(card, gate)
    limitations = card.get("limitations") or []
    out += ["## Known limitations", ""] + [f"- {_md(item)}" for item in limitations] + [""]
    out += _identity_section(card)
    return "\n".join(out)
