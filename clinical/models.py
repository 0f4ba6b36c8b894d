"""Models as cards, and scoring every case with each of them (``run-models``).

Every ``weights/*.json`` with a ``kind`` is a model card; the weights file beside it (``weights_file``,
else the card's stem + ``.pt``) is the model. The card's ``kind`` picks a scorer factory from a small
registry: ``"mim"`` and ``"classifier"`` (:class:`DetectorScorer`, through :func:`mim_core.screening.load_detector`) are built in;
other kinds add theirs with :func:`register_scorer`. A scorer returns (score, label) for one decoded RGB
photo; the card's ``score_direction`` says which way the score points, and its ``threshold.value`` is the
pre-set cut.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from PIL import Image

from mim_core.checkpoint import sha256_file
from mim_core.data import decode_image, preprocess
from mim_core.screening import KINDS, ModelEntry, find_models, load_detector
from mim_core.verdict import DirectionError
from mim_core.verdict import mpox_when as card_mpox_when

from .store import ClinicalError, Store


class Scorer(Protocol):
    """What ``run-models`` needs of a model: its card and a score + label for one photo."""

    card: dict[str, Any]

    def score(self, image: Image.Image) -> tuple[float, str]:
        """(score, label) for one upright RGB photo."""
        ...


ScorerFactory = Callable[[Path, dict[str, Any]], Scorer]
_FACTORIES: dict[str, ScorerFactory] = {}


def register_scorer(kind: str, factory: ScorerFactory) -> None:
    """Make cards of ``kind`` scoreable: ``factory(weights_path, card)`` builds their scorer."""
    _FACTORIES[kind] = factory


class DetectorScorer:
    """A model of ``mim_core`` (MIM or a classifier baseline, loaded by its card's kind, weights sha256
    verified) as a Scorer."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.card = detector.card

    @classmethod
    def load(cls, weights: Path, card: dict[str, Any]) -> "DetectorScorer":
        return cls(load_detector(weights))

    def score(self, image: Image.Image) -> tuple[float, str]:
        """The model's score and verdict. A photo the quality gate refuses keeps its refusal as the label,
        and its score is still computed (a validation study needs every case's score for the ROC)."""
        analysis = self.detector.analyze(image)
        if np.isfinite(analysis.score):
            return float(analysis.score), analysis.verdict.value
        view = preprocess(image, self.detector.config.preprocess).unsqueeze(0)
        return float(self.detector.score_views(view)[0]), analysis.verdict.value


for _kind in KINDS:
    register_scorer(_kind, DetectorScorer.load)


def mpox_when(card: dict[str, Any]) -> str:
    """'lower' when lower scores mean mpox (MIM: "higher = less mpox-like"), 'higher' otherwise."""
    try:
        return card_mpox_when(card)
    except DirectionError as err:
        raise ClinicalError(str(err)) from err


def model_version(card: dict[str, Any]) -> str:
    """A short version string: the card's ``version`` or the weights' sha256 prefix."""
    return str(card.get("version") or f"{card.get('name', 'model')}@sha256:{str(card.get('weights_sha256'))[:12]}")


def discover(weights_dir: str | Path) -> tuple[list[ModelEntry], list[str]]:
    """Cards in ``weights_dir`` that can be scored (:func:`mim_core.screening.find_models` over every kind
    with a registered scorer), and a note for each one that cannot."""
    try:
        return find_models(weights_dir, kinds=tuple(_FACTORIES))
    except FileNotFoundError as err:
        raise ClinicalError(str(err)) from err


def run_record(spec: ModelEntry, weights_sha256: str) -> dict[str, Any]:
    """The model_runs row for a card; ``run_key`` changes with the weights, config, threshold or direction."""
    card = spec.card
    threshold, direction = float(card["threshold"]["value"]), mpox_when(card)
    identity = {"name": spec.name, "kind": spec.kind, "weights": weights_sha256, "config": card.get("config"),
                "threshold": threshold, "mpox_when": direction}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return {"model_name": spec.name, "kind": spec.kind, "version": model_version({**card, "name": spec.name}),
            "weights_sha256": weights_sha256, "threshold": threshold, "mpox_when": direction, "run_key": key,
            "config": card.get("config", {}), "card": card}


def run_models(store: Store, weights_dir: str | Path, log: Callable[[str], None] = print,
               chunk: int = 16) -> list[dict[str, Any]]:
    """Score every usable case with every scoreable model; cases a run already scored are skipped.

    Predictions are saved every ``chunk`` cases, so an interrupted run resumes where it stopped.
    Returns one summary per model: name, run_id, scored now, already scored.
    """
    specs, notes = discover(weights_dir)
    for note in notes:
        log(note)
    if not specs:
        raise ClinicalError(f"No scoreable model card in {weights_dir}.")
    cases = [c["id"] for c in store.cases(usable_only=True)]
    summaries = []
    for spec in specs:
        scorer = _FACTORIES[spec.kind](spec.weights, spec.card)
        actual = sha256_file(spec.weights)
        expected = spec.card.get("weights_sha256")
        if expected and expected != actual:
            raise ClinicalError(f"{spec.weights} does not match its model card's sha256; restore the shipped file.")
        run_id = store.model_run(run_record(spec, actual))
        done = {r["case_id"] for r in store.query("SELECT case_id FROM predictions WHERE run_id = ?", [run_id])}
        todo = [case_id for case_id in cases if case_id not in done]
        batch: list[dict[str, Any]] = []
        for number, case_id in enumerate(todo, start=1):
            score, label = scorer.score(decode_image(store.case_png(case_id)))
            batch.append({"case_id": case_id, "score": score, "label": label})
            if len(batch) >= chunk:
                store.add_predictions(run_id, batch)
                batch = []
                log(f"{spec.name}: {number} of {len(todo)} case(s) scored and saved")  # progress, resumable
        if batch:
            store.add_predictions(run_id, batch)
        log(f"{spec.name}: run {run_id}, scored {len(todo)} case(s), {len(done)} already scored")
        summaries.append({"model": spec.name, "run_id": run_id, "scored": len(todo), "already": len(done)})
    return summaries
