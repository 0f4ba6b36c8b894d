"""The Model tab: the model card (the JSON file shipped beside the weights) rendered as Markdown.

Rendered from the card, never hand-copied, so new weights bring their own numbers. Every section
tolerates missing keys: a card from another training run may carry more or fewer fields.
"""

from __future__ import annotations

from typing import Any, Iterable

# A card from fewer steps than this is a smoke test, not a model; say so loudly.
PLACEHOLDER_STEPS = 100
# a detection result counts only this far (AUROC) above the best mpox-agnostic control 
CONTROL_MARGIN = 0.10


def _md(text: Any) -> str:
    """Card text safe inside Markdown table cells and lines."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _md(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    headers = list(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_num(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _auroc_row(label: str, result: Any) -> list[Any] | None:
    if not isinstance(result, dict) or "auroc" not in result:
        return None
    ci = f"{_num(result['ci_low'])} – {_num(result['ci_high'])}" if "ci_low" in result else ""
    return [label, result["auroc"], ci, result.get("n_pos", ""), result.get("n_neg", "")]


def placeholder_warning(card: dict[str, Any]) -> str | None:
    """A warning when the weights are a smoke-test placeholder, or when the card's own evaluation says
    the model does not beat the mpox-agnostic controls by ``CONTROL_MARGIN``; else None."""
    steps = card.get("training", {}).get("steps")
    if isinstance(steps, int) and steps < PLACEHOLDER_STEPS:
        return (f"These weights were trained for only {steps} steps: a placeholder for testing the software. "
                "Their scores and verdicts mean nothing.")
    margins = card.get("evaluation", {}).get("margins", {})
    worst = min((m for m in (margins.get("mean_dermnet_test"), margins.get("others")) if isinstance(m, (int, float))),
                default=None)
    if worst is not None and worst <= 0:
        return (f"On our own evaluation this model does not beat simple checks that know nothing of mpox "
                f"(margin {worst:+.2f} AUROC against the best one; see the Model tab). Treat its verdicts as a "
                "demonstration of the method, not as evidence about a rash.")
    if worst is not None and worst < CONTROL_MARGIN:
        return (f"On our own evaluation this model beats simple checks that know nothing of mpox by only "
                f"{worst:+.2f} AUROC (our bar is +{CONTROL_MARGIN:.2f}; see the Model tab). Treat its verdicts as "
                "a research signal, not as evidence about a rash.")
    return None


def _evaluation_section(evaluation: dict[str, Any]) -> list[str]:
    out = ["## Evaluation", ""]
    if not evaluation:
        return out + ["No evaluation recorded in this card.", ""]
    if "command" in evaluation:
        out += [f"Command: `{_md(evaluation['command'])}`; score: `{_md(evaluation.get('score', ''))}`; "
                f"mpox test photos: {evaluation.get('mpox_test_images', '?')}.", ""]
    headline = [("Mean AUROC over DermNet test classes", "mean_auroc_dermnet_test_classes"),
                ("AUROC, pooled DermNet test", "auroc_pooled_dermnet_test"),
                ("AUROC vs MSLD 'Others'", "auroc_vs_msld_others")]
    rows = [r for label, key in headline if (r := _auroc_row(label, evaluation.get(key)))]
    if rows:
        out += ["AUROC for telling mpox from other conditions (0.5 = chance; 95 % CI):", "",
                _table(["measure", "AUROC", "95 % CI", "mpox", "other"], rows), ""]
    at = evaluation.get("at_threshold")
    if isinstance(at, dict):
        out += ["At the calibrated threshold:", "", _table(["quantity", "value"], at.items()), ""]
    per_class = evaluation.get("per_class_auroc")
    if isinstance(per_class, dict) and per_class:
        out += ["<details><summary>AUROC per comparison class</summary>", "",
                _table(["class", "AUROC"], sorted(per_class.items())), "", "</details>", ""]
    controls = evaluation.get("controls")
    if isinstance(controls, dict) and controls:
        keys = sorted({k for v in controls.values() if isinstance(v, dict) for k in v})
        rows = [[name, *(v.get(k, "") for k in keys)] for name, v in controls.items() if isinstance(v, dict)]
        out += ["Controls (simple scores that know nothing of mpox; MIM should beat them):", "",
                _table(["control", *keys], rows), ""]
    shown = {"command", "score", "mpox_test_images", "at_threshold", "per_class_auroc", "controls",
             *(key for _, key in headline)}
    for key, value in evaluation.items():
        if key in shown:
            continue
        if isinstance(value, dict):
            out += [f"**{_md(key)}**", "", _table(["field", "value"], value.items()), ""]
        else:
            out += [f"**{_md(key)}**: {_num(value)}", ""]
    return out


def _refusals_section(card: dict[str, Any]) -> list[str]:
    """The acquisition gate's limits and the no-rash check's, each with the rule that set it."""
    gate, appearance = card.get("quality_gate") or {}, card.get("appearance") or {}
    if not gate and not appearance:
        return []
    out = ["## When the tool refuses, or says \"no rash visible\"", ""]
    if gate:
        out += ["Photos outside these limits get a refusal with a sentence on how to retake them:", "",
                _table(["limit", "value"], [(k, _num(v, 5)) for k, v in gate.get("thresholds", {}).items()]), "",
                f"Set from {_md(gate.get('n_photos', '?'))} photos ({_md(gate.get('calibration_photos', ''))}): "
                f"{_md(gate.get('rule', ''))}.", ""]
    if appearance:
        no_rash, not_skin = appearance.get("no_rash", {}), appearance.get("not_skin", {})
        out += [f"Patch distance: {_md(appearance.get('features', ''))}, to the cells of "
                f"{_md(appearance.get('n_photos', '?'))} photos ({_md(appearance.get('bank_photos', ''))}).", "",
                f"- **No rash visible** when the score says mpox-like but the distance is above "
                f"**{_num(no_rash.get('threshold'), 4)}**: {_md(no_rash.get('rule', ''))}. Design: "
                f"{_md(no_rash.get('design', ''))}.",
                f"- **Not a usable skin photo** when the distance is above **{_num(not_skin.get('limit'), 4)}**: "
                f"{_md(not_skin.get('rule', ''))}.", ""]
    return out


def card_markdown(card: dict[str, Any]) -> str:
    """The whole card as Markdown: what the model is, its data and split, how the threshold was set,
    its measured results and its known limitations."""
    out = [f"# Model card: {_md(card.get('name', 'unnamed model'))}", ""]
    if warning := placeholder_warning(card):
        out += [f"> **Warning.** {warning}", ""]
    out += [_md(card.get("description", "")), ""]
    facts = [("Score", card.get("score_direction")), ("Weights file", card.get("weights_file")),
             ("Weights sha256", card.get("weights_sha256") and f"`{card['weights_sha256']}`"),
             ("Card format", card.get("format"))]
    out += [f"- **{label}:** {_md(value)}" for label, value in facts if value] + [""]

    data, split = card.get("data", {}), card.get("split", {})
    out += ["## Data", ""]
    for key, label in (("train_uses", "Training uses"), ("split_rule", "Split"),
                       ("manifest_sha256", "Data manifest sha256")):
        if key in data:
            out.append(f"- **{label}:** {_md(data[key])}")
    if split:
        out.append("- **Split sizes:** " + ", ".join(f"{_md(k)} {len(v)}" for k, v in split.items()))
    out.append("")

    out += _evaluation_section(card.get("evaluation", {}))

    threshold = card.get("threshold", {})
    out += ["## Threshold", ""]
    if "value" in threshold:
        out += [f"**{_num(threshold['value'], 5)}**: a photo scoring at or below it is called *mpox-like*.", ""]
        if threshold.get("method"):
            out += [f"How it was set: {_md(threshold['method'])}.", ""]
        scores = threshold.get("val_scores") or []
        if scores:
            out += [f"Calibration scores ({len(scores)}): min {min(scores):.3f}, median "
                    f"{sorted(scores)[len(scores) // 2]:.3f}, max {max(scores):.3f}.", ""]
    else:
        out += ["No threshold recorded in this card.", ""]

    out += _refusals_section(card)
    limitations = card.get("limitations") or []
    out += ["## Known limitations", ""] + [f"- {_md(item)}" for item in limitations] + [""]
    training = card.get("training", {})
    if training:
        out += ["## Training", "", _table(["field", "value"], training.items()), ""]
    return "\n".join(out)
