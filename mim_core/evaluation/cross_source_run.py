"""``python -m mim_core cross-source``: MIM beside the strongest baselines and a control, across photo sources.

Every photo of the protocol (:mod:`mim_core.evaluation.cross_source`) is decoded once into MIM's view (the
128 px centre crop the one-class baselines see too) and the probe's (the same crop at 224 px) and measured once:
PNG complexity, pooled and per-cell ImageNet features (EfficientNet-Lite0 from its wheel) of MIM's view, pooled
ones of the probe's view, of its two flips and of its JPEG copy, and the score of each MIM card given for a train
source. Then, per direction, each method is fitted on the train source's train split, its threshold set on that
source's val split (the rule of every card: all val mpox photos called mpox-like), and reported on the other source:

- ``control:complexity``: PNG bits per pixel, pointing the way that scores higher on the dev side;
- ``one-class:knn``: cosine distance to the nearest train mpox photo (pooled features; shipped as a card by
  ``recipes/effnet_knn.toml``, and the patch statistic by ``recipes/effnet_patchcore.toml``: both in
  :mod:`mim_core.baselines.one_class`);
- ``one-class:mahalanobis``: Mahalanobis distance (32 principal components, Ledoit-Wolf covariance);
- ``one-class:patchcore``: largest over the 7x7 cells of the distance to the nearest train mpox cell (the
  PatchCore statistic, without its coreset: the bank is small);
- ``probe``: the linear probe of :mod:`mim_core.baselines.probe` on its own view against the supervised negatives (as
  its recipe, less MSID_Normal: MSLD Others train, the DermNet dev classes, the healthy design photos; each photo with
  its two flips and its JPEG copy). On the dev side each DermNet dev class is
  scored by a probe fitted without that class, each healthy design or Others dev photo by one fitted without its fold,
  so no dev figure is seen in fit;
- ``mim``: the given MIM card's score (no gates: the same bare score for every method).

With ``--dev-seeds N`` the dev side is evaluated again under split seeds 0..N-1 (each redraws every mpox source's
split and the halves of MSLD Others; the same photos, measured once): one split's 22-37 dev mpox photos move these
AUROCs by several hundredths, enough to mislead a design decision (docs/ablations.md). MIM is among them: its
per-source models were trained on seed 0's split of their own source, but the dev side holds only photos of the other
source and negatives, which no MIM model saw, so its dev AUROCs hold under any seed (its threshold, tied to seed 0's
split, is not used there).

PaDiM is left out: it models each pixel position separately and so assumes aligned objects, which skin
photos at any framing are not.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from ..appearance import PatchFeatures
from ..baselines.one_class import nearest_distance, worst_cell_distance
from ..baselines.probe import TRAINING_FLIPS, VIEW, fit_probe, negative_kind, training_views
from ..checkpoint import card_path, load_card, save_json
from ..config import PreprocessConfig
from ..data import decode_image, preprocess, to_uint8
from ..detector import MIMDetector
from ..evaluation.evaluate import png_bits_per_pixel
from .cross_source import Direction, Photo, directions, side_report
from .stats import auroc_ci
from .protocol import DEV_CLASSES

PROBE_C = 1.0  # chosen on the dev side (docs/ablations.md)
HEALTHY_FOLDS = 5  # the healthy design photos the probe learns from are scored by probes fitted without their fold
SOURCE_PHOTO_FOLDS = 5  # so are the MSLD Others it learns from, folded by source photo (its crops share one)
SEED_FIGURES = {"dermnet_mean": "DermNet mean", "healthy": "healthy", "others": "Others"}  # --dev-seeds reports


@dataclass
class Measurements:
    """Per photo (row order of ``index``): of MIM's view, complexity (N,), pooled features (N, 1280), cells
    (N, 49, 80) and each MIM card's score (N,) by train source; pooled features of the probe's view (N, 1280), of
    its :data:`~mim_core.baselines.probe.TRAINING_FLIPS` (F, N, 1280) and of its JPEG copy's view (N, 1280; the flips
    and the copy are what the probe also learns from)."""

    index: dict[Path, int]
    complexity: np.ndarray
    pooled: np.ndarray
    cells: np.ndarray
    mim: dict[str, np.ndarray]
    probe: np.ndarray
    probe_flipped: np.ndarray
    probe_jpeg: np.ndarray

    def rows(self, photos: Sequence[Photo]) -> np.ndarray:
        return np.array([self.index[p.location] for p in photos], dtype=int)

    def training_features(self, rows: np.ndarray) -> np.ndarray:
        """((2 + F) n, 1280): the probe's features of ``rows``, then of their flips, then of their JPEG copies (the
        order of :func:`mim_core.baselines.probe.training_features`)."""
        return np.concatenate([self.probe[rows], *self.probe_flipped[:, rows], self.probe_jpeg[rows]])


def measure(photos: Sequence[Path], mim: dict[str, MIMDetector], batch_size: int = 32) -> Measurements:
    """Decode each photo once and measure everything the methods need (see module doc)."""
    features = PatchFeatures()
    config = PreprocessConfig()
    for source, detector in mim.items():
        if detector.config.preprocess != config:
            raise ValueError(f"The MIM card for {source} sees another view ({detector.config.preprocess}); every "
                             f"method here uses {config}.")
    parts: dict[str, list] = {"complexity": [], "pooled": [], "cells": [], "probe": [], "probe_flipped": [],
                              "probe_jpeg": [], **{s: [] for s in mim}}
    for start in tqdm(range(0, len(photos), batch_size), desc="measure", unit="batch"):
        decoded = [decode_image(p) for p in photos[start:start + batch_size]]
        views = torch.stack([preprocess(p, config) for p in decoded])
        parts["complexity"] += [png_bits_per_pixel(to_uint8(v)) for v in views]
        cells, pooled = features.both(views)
        parts["pooled"].append(pooled.double().numpy())
        parts["cells"].append(cells.numpy())
        probe_views, jpeg_views = (torch.stack(v) for v in zip(*(training_views(p, VIEW) for p in decoded)))
        parts["probe_jpeg"].append(features.both(jpeg_views)[1].double().numpy())
        parts["probe"].append(features.both(probe_views)[1].double().numpy())
        parts["probe_flipped"].append(np.stack([features.both(probe_views.flip(axis))[1].double().numpy()
                                                for axis in TRAINING_FLIPS]))
        for source, detector in mim.items():
            parts[source].append(detector.score_views(views))
    return Measurements({Path(p): i for i, p in enumerate(photos)}, np.asarray(parts["complexity"]),
                        np.concatenate(parts["pooled"]), np.concatenate(parts["cells"]),
                        {s: np.concatenate(parts[s]) for s in mim}, np.concatenate(parts["probe"]),
                        np.concatenate(parts["probe_flipped"], axis=1), np.concatenate(parts["probe_jpeg"]))


def one_class_scores(m: Measurements, fit: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of every photo (lower = more like the fit photos) of the one-class baselines."""
    pooled = m.pooled[fit]
    nearest = nearest_distance(torch.from_numpy(m.pooled), torch.from_numpy(pooled)).double().numpy()
    pca = PCA(min(32, len(fit) - 1), random_state=0).fit(pooled)
    mahalanobis = LedoitWolf().fit(pca.transform(pooled)).mahalanobis(pca.transform(m.pooled))
    bank = torch.from_numpy(m.cells[fit]).flatten(0, 1)  # (fit * cells, C)
    patch = worst_cell_distance(torch.from_numpy(m.cells), bank).double().numpy()
    return {"one-class:knn": nearest, "one-class:mahalanobis": mahalanobis, "one-class:patchcore": patch}


def source_photo_folds(photos: Sequence[Photo]) -> list[list[Photo]]:
    """:data:`SOURCE_PHOTO_FOLDS` folds of photos by source photo (sorted groups dealt in turn): no source photo's
    crops on both sides of a fold."""
    groups = sorted({p.group for p in photos})
    fold_of = {g: i % SOURCE_PHOTO_FOLDS for i, g in enumerate(groups)}
    return [f for f in ([p for p in photos if fold_of[p.group] == i] for i in range(SOURCE_PHOTO_FOLDS)) if f]


def probe_scores(m: Measurements, d: Direction, fit: np.ndarray) -> tuple[np.ndarray, dict[Path, float]]:
    """The probe's scores (-logit: lower = more mpox-like) of every photo, and held-out scores of the dev negatives
    it learns from: each DermNet dev class from a probe fitted without that class, each healthy design photo from
    one fitted without its fold (:data:`HEALTHY_FOLDS`, by photo), each Others dev photo likewise
    (:func:`source_photo_folds`)."""
    def scores(negatives: Sequence[Photo]) -> np.ndarray:
        kinds = [negative_kind(p.location) for p in negatives]
        weight, bias = fit_probe(m.training_features(fit), m.training_features(m.rows(negatives)), kinds, PROBE_C)
        return -(m.probe @ weight + bias)

    healthy = d.dev_negatives["healthy"]
    held_out_sets = [d.dev_negatives[c] for c in DEV_CLASSES] + [healthy[i::HEALTHY_FOLDS] for i in range(HEALTHY_FOLDS)]
    held_out_sets += source_photo_folds(d.dev_negatives["others"])
    held_out: dict[Path, float] = {}
    for photos in held_out_sets:
        left_out = {p.location for p in photos}
        without = scores([p for p in d.supervised_negatives if p.location not in left_out])
        held_out.update({p.location: float(without[m.index[p.location]]) for p in photos})
    return scores(d.supervised_negatives), held_out


def collection_probe(m: Measurements, found: Sequence[Direction]) -> dict:
    """How well the probe's features tell the two mpox collections apart: AUROC (95 % CI over source photos) of a
    logistic regression (C = :data:`PROBE_C`) for the second train source against the first, on the mpox train + val
    photos of both, each scored by a fit without its fold (:func:`source_photo_folds`). The dev side cannot see a
    collection shortcut, since its healthy photos belong to neither collection: features that raise this figure let a
    verdict follow the collection a photo comes from (docs/ablations.md: mid-level features raised it
    from 0.750 to 0.867, and their AUROC against healthy photos of the training collection fell from 0.662 to 0.274)."""
    first, second = found[0].train_source, found[1].train_source
    photos = [p for d in found for p in d.fit + d.calibration]
    is_second = np.array([d.train_source == second for d in found for _ in d.fit + d.calibration])
    fold_of = {p.location: k for k, fold in enumerate(source_photo_folds(photos)) for p in fold}
    fold = np.array([fold_of[p.location] for p in photos])
    features, scores = m.probe[m.rows(photos)], np.empty(len(photos))
    for k in np.unique(fold):
        model = LogisticRegression(C=PROBE_C, max_iter=5000).fit(features[fold != k], is_second[fold != k])
        scores[fold == k] = -model.decision_function(features[fold == k])  # lower = the second collection
    group = np.array([p.group for p in photos])
    return {"first": first, "second": second, **auroc_ci(scores[is_second], scores[~is_second], group[is_second],
                                                        group[~is_second]).as_dict()}


def evaluate_direction(m: Measurements, d: Direction, sides: Sequence[str]) -> dict:
    """Every method's report (:func:`side_report`) on the requested sides of one direction."""
    fit, calibration = m.rows(d.fit), m.rows(d.calibration)
    probe, probe_dev = probe_scores(m, d, fit)
    methods = {"control:complexity": m.complexity, **one_class_scores(m, fit), "probe": probe}
    if d.train_source in m.mim:
        methods["mim"] = m.mim[d.train_source]
    by_photo = lambda s: {p: float(s[i]) for p, i in m.index.items()}  # noqa: E731
    # The control points whichever way separates better on the dev side (it is given every advantage).
    complexity_dev = side_report(d.dev_mpox, d.dev_negatives, by_photo(m.complexity), None)
    if complexity_dev["dermnet_mean"]["auroc"] < 0.5:
        methods["control:complexity"] = -m.complexity
    out: dict = {}
    for name, values in methods.items():
        score = by_photo(values)
        threshold = float(values[calibration].max())
        out[name] = {"threshold": threshold}
        for side in sides:
            if side == "dev":
                held = {**score, **probe_dev} if name == "probe" else score
                out[name]["dev"] = side_report(d.dev_mpox, d.dev_negatives, held, threshold)
            else:
                out[name]["test"] = side_report(d.test_mpox, d.test_negatives, score, threshold)
    return out


def dev_over_seeds(evaluated: Mapping[int, Mapping[str, dict]]) -> dict:
    """Dev-side AUROCs of every method under each split seed, from ``{seed: {direction name: evaluate_direction(...)
    with the dev side}}``: ``{"seeds": [...], "directions": {direction: {method: {"dermnet_mean" | "healthy" |
    "others": [per seed]}}}}`` (MIM's too: see the module doc)."""
    out: dict = {}
    for by_direction in evaluated.values():
        for name, methods in by_direction.items():
            for method, r in methods.items():
                figures = out.setdefault(name, {}).setdefault(method, {k: [] for k in SEED_FIGURES})
                for key in figures:
                    figures[key].append(r["dev"][key]["auroc"])
    return {"seeds": list(evaluated), "directions": out}


def _spread(values: Sequence[float]) -> str:
    return f"{np.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def seeds_markdown(over: dict) -> list[str]:
    """The table of :func:`dev_over_seeds`: per method, each direction's dev AUROCs as mean [min, max] over the
    seeds, and the mean over seeds of the lowest DermNet or healthy figure (the winner rule's four; "—" where a
    method, such as MIM given for one train source only, misses a direction)."""
    names = list(over["directions"])
    methods = list(dict.fromkeys(m for n in names for m in over["directions"][n]))
    head = " | ".join(f"{n}: {SEED_FIGURES[key]}" for n in names for key in SEED_FIGURES)
    lines = [f"## Dev side over split seeds {', '.join(map(str, over['seeds']))}", "",
             "AUROC, mean [min, max] over the seeds; the last column is the mean over the seeds of the lowest of the "
             "four DermNet and healthy figures (a design decision should hold on it, not on one split).", "",
             f"| method | {head} | lowest of the four |", "|---|" + "---|" * (len(SEED_FIGURES) * len(names) + 1)]
    for method in methods:
        figures = [over["directions"][n].get(method) for n in names]
        columns = [_spread(f[key]) if f else "—" for f in figures for key in SEED_FIGURES]
        lowest = "—" if None in figures else \
            f"{np.min([f[key] for f in figures for key in ('dermnet_mean', 'healthy')], axis=0).mean():.3f}"
        lines.append(f"| {method} | " + " | ".join(columns) + f" | {lowest} |")
    return lines + [""]


def _cell(r: dict | None) -> str:
    return "—" if r is None else f"{r['auroc']:.3f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def markdown(results: dict) -> str:
    """The tables of a run: one per direction and side, with the margin over the complexity control."""
    lines = [f"# Cross-source results ({', '.join(results['sides'])} side)", "",
             f"Command: `{results['command']}`", "",
             "AUROC for detecting mpox (95 % bootstrap CI over source photos). *called*: share of each set called "
             "mpox-like at the threshold set on the train source's val split. Margin: DermNet mean minus the "
             "complexity control's.", ""]
    for name, direction in results["directions"].items():
        for side in results["sides"]:
            control = direction["control:complexity"][side]["dermnet_mean"]["auroc"]
            lines += [f"## {name}, {side} side", "",
                      "| method | DermNet mean | healthy | MSLD Others | margin | called: mpox | healthy | DermNet |",
                      "|---|---|---|---|---|---|---|---|"]
            for method, result in direction.items():
                r = result[side]
                called = r["called_mpox_like"]
                lines.append(f"| {method} | {_cell(r['dermnet_mean'])} | {_cell(r.get('healthy'))} | "
                             f"{_cell(r.get('others'))} | {r['dermnet_mean']['auroc'] - control:+.3f} | "
                             f"{called['mpox']:.2f} | {called['healthy']:.2f} | {called['dermnet']:.2f} |")
            lines.append("")
    if "winner" in results:
        w = results["winner"]
        lines += [f"**Winner on the dev side: `{w['method']}`** ({w['rule']}): "
                  + ", ".join(f"`{m}` {v:.3f}" for m, v in sorted(w["dev_figure"].items(), key=lambda kv: -kv[1])) + ".", ""]
    if "collection_probe" in results:
        c = results["collection_probe"]
        lines += [f"**Collection probe** (the dev side cannot see a collection shortcut): the probe's features tell "
                  f"{c['second']} from {c['first']} mpox photos with AUROC {_cell(c)} (train + val photos, 5 folds by "
                  "source photo). A design change that raises it lets the verdict follow the collection a photo "
                  "comes from.", ""]
    if "dev_over_seeds" in results:
        lines += seeds_markdown(results["dev_over_seeds"])
    return "\n".join(lines)


WINNER_RULE = ("the highest mean, over both directions, of the dev-side AUROC against the DermNet dev classes and "
               "against healthy skin (healthy_skin_dev/Normal); controls excluded")
CARD_FIELDS = ("n_mpox", "dermnet_mean", "healthy", "others", "called_mpox_like")


def dev_winner(results: dict) -> dict:
    """The method that wins the dev side by :data:`WINNER_RULE`, with every method's figure."""
    if "dev" not in results["sides"]:
        raise ValueError("The winner is chosen on the dev side: run with --side dev or --side both.")
    methods = [m for m in next(iter(results["directions"].values())) if not m.startswith("control:")]
    found = [d for d in results["directions"].values() if all(m in d for m in methods)]
    figure = {m: round(float(np.mean([(d[m]["dev"]["dermnet_mean"]["auroc"] + d[m]["dev"]["healthy"]["auroc"]) / 2
                                      for d in found])), 4) for m in methods}
    return {"method": max(figure, key=figure.get), "rule": WINNER_RULE, "dev_figure": figure}


def record_in_cards(results: dict, cards: dict[str, str]) -> None:
    """Write both directions' figures (dev and test side, every method) and the dev winner into the
    ``cross_source`` section of each card in ``cards`` (method name -> weights: the card's own method)."""
    if set(results["sides"]) != {"dev", "test"}:
        raise ValueError("A card records both sides: run with --side both.")
    directions = {name: {side: {method: {k: r[side][k] for k in CARD_FIELDS if k in r[side]}
                                for method, r in direction.items()} for side in ("dev", "test")}
                  for name, direction in results["directions"].items()}
    for method, weights in cards.items():
        card = load_card(weights)
        card["cross_source"] = {
            "command": results["command"], "this": method, "winner": dev_winner(results), "directions": directions,
            "note": "Each method fitted on one mpox source (MIM: the same recipe trained on that source alone) and "
                    "judged on the other source's photos it never saw (docs/cross_source.md); bare scores, no gates.",
        }
        save_json(card_path(weights), card)


def run_cross_source(data_roots: Sequence[str], healthy_root: str, mim_weights: dict[str, str], out: str | Path,
                     sides: Sequence[str] = ("dev",), command: str = "", record_in: dict[str, str] | None = None,
                     dev_seeds: int = 1) -> dict:
    """Measure, evaluate both directions, write ``out/cross_source.json`` and ``.md`` (and the ``cross_source``
    section of each card in ``record_in``, method name -> weights); returns the results. ``dev_seeds`` > 1 adds the
    dev side under split seeds 0..dev_seeds-1 (:func:`dev_over_seeds`)."""
    if record_in and set(sides) != {"dev", "test"}:
        raise ValueError("A card records both sides: run with --side both.")
    if dev_seeds < 1 or (dev_seeds > 1 and "dev" not in sides):
        raise ValueError("--dev-seeds takes a count of at least 1, and more than 1 needs the dev side (--side dev or "
                         "both).")
    by_seed = {seed: directions(data_roots, healthy_root, seed) for seed in range(dev_seeds)}
    found = by_seed[0]
    unknown = set(mim_weights) - {d.train_source for d in found}
    if unknown:
        raise ValueError(f"--mim names the source {', '.join(sorted(unknown))}; the sources are "
                         f"{', '.join(d.train_source for d in found)}.")
    photos = sorted({p.location for f in by_seed.values() for d in f for p in d.photos()})
    print(f"{len(photos)} photos", file=sys.stderr)
    m = measure(photos, {s: MIMDetector.load(w) for s, w in mim_weights.items()})
    # seed 0 on the requested sides, every other seed on the dev side only
    evaluated = {seed: {d.name: evaluate_direction(m, d, sides if seed == 0 else ["dev"]) for d in f}
                 for seed, f in by_seed.items()}
    results = {"command": command, "sides": list(sides), "mim_weights": mim_weights, "directions": evaluated[0]}
    if "dev" in sides:
        results["winner"] = dev_winner(results)
        results["collection_probe"] = collection_probe(m, found)
    if dev_seeds > 1:
        results["dev_over_seeds"] = dev_over_seeds(evaluated)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "cross_source.json", results)
    (out / "cross_source.md").write_text(markdown(results))
    if record_in:
        record_in_cards(results, record_in)
    return results
