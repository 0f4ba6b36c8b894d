"""The Model tab states only what the card and the code say: every number shown is one of the card's,
the steps shown are the steps run, and every gate the code has is listed with the card's limits."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, Iterator

import numpy as np

from demo.model_card import CONTROL_MARGIN, GATE_LIMITS, NOT_LIMITS, card_markdown, placeholder_warning, steps_run
from mim_core import Verdict
from mim_core.gate import GateThresholds

NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w])")
# "AUROC 0.5 = chance, 1 = perfect", "95 % CI", "our bar is +0.10": meanings and targets, not measurements
DEFINITIONS = {0.5, 1.0, 95.0, CONTROL_MARGIN}


def _card_numbers(value: Any) -> Iterator[float]:
    """Every number the card holds: numeric fields, numbers inside its texts, and the sizes of its lists."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, str):
        yield from (float(m) for m in NUMBER.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _card_numbers(key)
            yield from _card_numbers(item)
    elif isinstance(value, list):
        yield float(len(value))
        for item in value:
            yield from _card_numbers(item)


def _unsourced(text: str, allowed: set[float]) -> list[str]:
    """The numbers in ``text`` that are no rounding of any allowed value."""
    def sourced(token: str) -> bool:
        decimals = len(token.split(".")[1]) if "." in token else 0
        return any(abs(float(token) - v) <= 0.5 * 10 ** -decimals + 1e-9 for v in allowed)
    return [t for t in NUMBER.findall(text) if not sourced(t)]


def _mim_gaps(card: dict) -> set[float]:
    """The tab's derived figures: how far MIM falls behind the dev winner on the test side (mean over directions)."""
    section = card.get("cross_source") or {}
    winner = (section.get("winner") or {}).get("method")
    tests = [d["test"] for d in (section.get("directions") or {}).values() if winner in d["test"]]
    return {float(np.mean([t[winner][k]["auroc"] - t["mim"][k]["auroc"] for t in tests]))
            for k in ("dermnet_mean", "healthy")} if tests else set()


def test_every_number_on_the_model_tab_comes_from_the_card(detector):
    card = detector.card
    text = card_markdown(card, detector.gate, detector.scales)
    allowed = set(_card_numbers(card)) | _mim_gaps(card) | {float(s) for s in detector.scales} | DEFINITIONS
    assert len(NUMBER.findall(text)) > 100
    assert _unsourced(text, allowed) == []
    assert _unsourced("made up 0.123 and 4200", allowed) == ["0.123", "4200"]  # the check itself bites


def test_the_steps_shown_are_the_steps_run_not_the_configured_ones(detector):
    assert steps_run(detector.card) == detector.card["training"]["steps"]
    assert f"{steps_run(detector.card)} steps run" in card_markdown(detector.card)
    stopped = copy.deepcopy(detector.card)  # a run its time limit stopped before its config's steps
    stopped["config"]["train"]["steps"] = 30000
    stopped["training"].update(steps=30000, steps_done=6500)
    text = card_markdown(stopped)
    assert "6500 steps run" in text and "30000" not in text


def test_every_gate_of_the_code_is_listed_with_the_cards_limits(detector):
    limits = {f.name for f in dataclasses.fields(GateThresholds)} - set(NOT_LIMITS)
    assert limits == {name for names in GATE_LIMITS.values() for name in names}  # a new limit must be shown
    card = detector.card
    text = card_markdown(card, detector.gate, detector.scales)
    for verdict in Verdict:
        assert verdict.value in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    gate = card["quality_gate"]["thresholds"]
    compressed = rows[Verdict.TOO_COMPRESSED.value]
    assert f"blockiness above {gate['max_blockiness']:.5g}" in compressed
    assert f"photo blockiness above {gate['max_photo_blockiness']:.5g}" in compressed
    assert f"noise above {gate['max_noise']:.5g}" in rows[Verdict.TOO_NOISY.value]
    assert f"{card['appearance']['no_rash']['threshold']:.5g}" in rows[f"{Verdict.NO_RASH.value} (an answer)"]


def test_the_tab_shows_the_cards_data_evaluation_and_limitations_and_never_points_to_itself(detector):
    card = detector.card
    text = card_markdown(card, detector.gate, detector.scales, warning=False)
    evaluation = card["evaluation"]["mean_auroc_dermnet_test_classes"]
    assert f"| {evaluation['auroc']:.4g} | {evaluation['ci_low']:.4g}–{evaluation['ci_high']:.4g} |" in text
    assert card["data"]["train_uses"] in text and f"split seed {card['training']['split_seed']}" in text
    assert "mask scales analysed: " + ", ".join(f"{s} px" for s in detector.scales) in text
    assert all(item.replace("|", "\\|") in text for item in card["limitations"])
    assert "Model tab" not in card_markdown(card) and "Warning" not in text
    banner = placeholder_warning(card, pointer="")
    assert banner is None or "Model tab" not in banner


def test_figures_from_an_unseen_source_are_shown_and_warned_about(detector):
    """The card's cross-source section (written by ``cross-source --record-in``) appears in the Model tab with the
    card's own numbers, each direction, the dev winner and MIM's loss to it; the banner gives the card's own
    method's test figures; a card without the section shows neither."""
    card = detector.card
    assert "cross_source" in card, "the shipped card records its cross-source figures"
    section = card["cross_source"]
    text = card_markdown(card)
    assert "Photos from a source it never saw" in text
    tested = [d["test"][section["this"]] for d in section["directions"].values()]
    for name, direction in section["directions"].items():
        assert name in text
        for r in direction["test"].values():
            assert f"{r['dermnet_mean']['auroc']:.4g}" in text and f"{r['healthy']['auroc']:.4g}" in text
    winner = section["winner"]["method"]
    assert "The verdict model is the" in text
    if winner != "mim":
        gap = np.mean([d["test"][winner]["dermnet_mean"]["auroc"] - d["test"]["mim"]["dermnet_mean"]["auroc"]
                       for d in section["directions"].values()])
        assert f"MIM loses to it by {gap:.2f} AUROC against other diseases" in text
    warning = placeholder_warning(card)
    diseases = sorted(f"{r['dermnet_mean']['auroc']:.2f}" for r in tested)
    assert f"its AUROC is {diseases[0]}" in warning and "against other skin diseases" in warning
    without = {k: v for k, v in card.items() if k != "cross_source"}
    assert "Photos from a source it never saw" not in card_markdown(without)
    assert "source it never saw" not in (placeholder_warning(without) or "")


