"""The robustness benchmark: MIM against every classifier baseline card in a weights folder.

Three parts, every model on exactly the same images, each through its own view (its card's centre crop and
size; MIM's view for the gates):

(a) **Unseen categories**: mpox test photos (of every mpox source of the data roots; each figure also per
    source) vs each of the 21 DermNet *test* classes (no model trained or
    chose anything on them), their mean and the pooled set, plus MSLD Others' *test* split (the
    classifiers trained on Others' train split; MIM on no negative at all). AUROC with the group-bootstrap
    CIs of :mod:`mim_core.evaluation.report` / :mod:`mim_core.evaluation.stats`.
(b) **Noise**: mpox test, Others test and the first ``noise_per_class`` photos of each DermNet test class,
    each under every corruption of :mod:`mim_core.benchmark.corruptions` at each severity; AUROC vs severity.
(c) **Abnormal inputs** (:mod:`mim_core.benchmark.abnormal`): the fraction each model calls mpox, and the fraction
    MIM's gates (usable skin, acquisition limits of its card, the appearance check's not-skin limit) refuse.
(d) **Verdicts** (:mod:`mim_core.benchmark.verdicts`): per condition of (b), for mpox, Others and DermNet test
    photos apart, plus healthy-skin photos and the abnormal set, the share called right, wrong, "no rash"
    and refused, every model behind the same gates.

Scores are oriented so that lower = more mpox-like before any AUROC (MIM's convention in
:mod:`mim_core.evaluation.stats`); every card's ``score_direction`` says which way its raw score points.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .abnormal import abnormal_images
from ..checkpoint import WeightsError
from ..config import ONE_CLASS_ARCHS, PreprocessConfig
from ..baselines.train import classifier_split
from .corruptions import CORRUPTIONS, corrupted_view, describe, to_view, view_tensor
from ..data import decode_image, locate, root_list, scan_datasets
from ..evaluation.protocol import DEV_CLASSES, OTHERS
from ..evaluation.stats import auroc_ci
from ..gate import effective_resolution
from ..screening import find_models, load_detector
from ..verdict import MpoxWhen, Verdict, called_mpox, lower_is_mpox, mpox_when
from .verdicts import mim_judgements, targets, verdict_rows


@dataclass(frozen=True)
class BenchmarkConfig:
    """``per_class_limit``: first N photos per DermNet test class in part (a); ``noise_per_class``: first
    N per DermNet test class among part (b)'s negatives; ``limit``: at most N mpox test photos per source, N Others test
    photos everywhere and N abnormal pictures per category (quick checks only)."""

    seed: int = 0
    split_seed: int = 0
    per_class_limit: int | None = None
    noise_per_class: int = 2
    limit: int | None = None
    severities: tuple[int, ...] = (1, 2, 3)
    corruptions: tuple[str, ...] = CORRUPTIONS
    threads: int = 1
    batch_size: int = 16
    n_boot: int = 2000
    healthy_dirs: tuple[str, ...] = ()  # folders of photos of skin without rash (part (d)), one row each


@dataclass
class BenchModel:
    """A loaded model with its card; :meth:`raw` scores preprocessed views (B, 3, H, W) -> (B,)."""

    name: str
    kind: str
    card: dict[str, Any]
    detector: Any
    when: MpoxWhen  # which raw scores mean mpox, from the card
    seconds: float = 0.0
    images: int = 0

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold)

    def raw(self, views: torch.Tensor) -> np.ndarray:
        started = time.perf_counter()
        scores = np.asarray(self.detector.score_views(views), dtype=np.float64)
        self.seconds += time.perf_counter() - started
        self.images += len(views)
        return scores

    def oriented(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores turned to lower = more mpox-like, for AUROCs."""
        return lower_is_mpox(raw, self.when)

    def called_mpox(self, raw: np.ndarray) -> np.ndarray:
        """Bool per image: the model's own call at its card's threshold."""
        return called_mpox(raw, self.threshold, self.when)


def load_models(weights_dir: str | Path, threads: int) -> list[BenchModel]:
    """Every MIM and classifier card in ``weights_dir`` whose weights are present (sha256 verified)."""
    entries, notes = find_models(weights_dir)
    for note in notes:
        print(f"benchmark: {note}", file=sys.stderr)
    models = []
    for entry in entries:
        detector = load_detector(entry.weights, threads=threads)
        models.append(BenchModel(entry.name, entry.kind, detector.card, detector, mpox_when(entry.card)))
    if not [m for m in models if m.kind == "mim"] or len(models) < 2:
        raise WeightsError(f"The benchmark needs MIM and at least one classifier card in {weights_dir}.")
    return sorted(models, key=lambda m: (m.kind != "mim", m.name))


def _seen_paths(card: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(mpox paths, non-mpox paths) the model trained or calibrated on, from its card."""
    split = card.get("split", {})
    if "positives" in split:
        return (split["positives"]["train"] + split["positives"]["val"],
                split["negatives"]["train"] + split["negatives"]["val"])
    return split.get("train", []) + split.get("val", []), []


def benchmark_table(data_roots: list[str | Path], models: list[BenchModel], config: BenchmarkConfig) -> pd.DataFrame:
    """One row per image of parts (a) and (b): path, dataset, class, group, role (mpox_test / test), and
    ``in_noise`` (whether part (b) corrupts it). Refuses models that trained or calibrated on any of these
    images (a model made on fewer mpox sources is welcome: the other sources' test photos are new to it)."""
    split = classifier_split(data_roots, "others", config.split_seed)
    positives, others = split.positives["test"], split.negatives["test"]
    if config.limit:
        positives = [r for source in sorted({r.dataset for r in positives})
                     for r in [p for p in positives if p.dataset == source][: config.limit]]
        others = others[: config.limit]
    test_paths = {r.path for r in positives}
    for model in models:
        seen_mpox, seen_negatives = _seen_paths(model.card)
        if set(seen_mpox) & {r.path for r in split.positives["test"]}:
            raise ValueError(f"{model.name} trained or calibrated on mpox test photos of the protocol (split seed "
                             f"{config.split_seed}); retrain it on the protocol's split.")
        if set(seen_negatives) & {r.path for r in others}:
            raise ValueError(f"{model.name} trained on MSLD Others test photos; retrain it on the protocol's split.")
    rows = [{"path": r.path, "dataset": r.dataset, "class": f"{r.dataset}/{r.label_class}", "group": r.group,
             "role": "mpox_test", "in_noise": True} for r in positives]
    rows += [{"path": r.path, "dataset": r.dataset, "class": OTHERS, "group": r.group, "role": "test",
              "in_noise": True} for r in others]
    counts: dict[str, int] = {}
    for r in scan_datasets(data_roots):
        if r.dataset != "DermNetNZ" or r.label_class in DEV_CLASSES:
            continue
        n = counts[r.label_class] = counts.get(r.label_class, 0) + 1
        if config.per_class_limit and n > config.per_class_limit:
            continue
        rows.append({"path": r.path, "dataset": r.dataset, "class": f"{r.dataset}/{r.label_class}", "group": r.group,
                     "role": "test", "in_noise": n <= config.noise_per_class})
    assert not test_paths & {row["path"] for row in rows if row["role"] == "test"}
    return pd.DataFrame(rows)


Views = dict[PreprocessConfig, list[np.ndarray]]  # each distinct model view -> (H, W, 3) uint8 per photo, in order


def view_configs(models: list[BenchModel]) -> list[PreprocessConfig]:
    """Each distinct preprocessing of ``models``, MIM's first (models are sorted MIM first)."""
    return list(dict.fromkeys(m.detector.config.preprocess for m in models))


def make_views(models: list[BenchModel], view: Callable[[PreprocessConfig], list[np.ndarray]]) -> Views:
    """``view(config)`` for each of :func:`view_configs`."""
    return {pre: view(pre) for pre in view_configs(models)}


def _condition_views(photos: list[Any], name: str, severity: int, seed: int, pre: PreprocessConfig) -> list[np.ndarray]:
    """Each photo's view under one condition of part (b): clean, or a corruption at a severity (seeded per photo)."""
    return [to_view(p, pre) if name == "clean" else corrupted_view(p, name, severity, seed * 100_003 + i, pre)
            for i, p in enumerate(photos)]


def mim_views(models: list[BenchModel], views: Views) -> torch.Tensor:
    """(B, 3, H, W) MIM's views, the ones its gates judge."""
    return torch.stack([view_tensor(v) for v in views[models[0].detector.config.preprocess]])


def _score_views(models: list[BenchModel], views: Views, batch_size: int) -> dict[str, np.ndarray]:
    """Raw score of every model for every photo, each model on its own (H, W, 3) uint8 views."""
    out: dict[str, list[np.ndarray]] = {m.name: [] for m in models}
    for pre, own in views.items():
        for start in range(0, len(own), batch_size):
            batch = torch.stack([view_tensor(v) for v in own[start:start + batch_size]])
            for model in (m for m in models if m.detector.config.preprocess == pre):
                out[model.name].append(model.raw(batch))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _auroc(oriented: np.ndarray, table: pd.DataFrame, neg_mask: np.ndarray, n_boot: int) -> dict[str, Any]:
    pos = (table["role"] == "mpox_test").to_numpy()
    if not pos.any() or not neg_mask.any():
        return {"auroc": None, "ci_low": None, "ci_high": None, "n_pos": int(pos.sum()), "n_neg": int(neg_mask.sum())}
    return auroc_ci(oriented[pos], oriented[neg_mask], table["group"][pos], table["group"][neg_mask],
                    n_boot=n_boot).as_dict()


def unseen_part(models: list[BenchModel], table: pd.DataFrame, views: Views,
                config: BenchmarkConfig) -> tuple[dict[str, Any], pd.DataFrame]:
    """Part (a): clean scores, per-class / mean / pooled AUROC (via :func:`mim_core.report.test_results`)."""
    from ..evaluation import report

    raw = _score_views(models, views, config.batch_size)
    oriented = pd.DataFrame({m.name: m.oriented(raw[m.name]) for m in models})
    results = report.test_results(oriented, table, [m.name for m in models])
    results["per_source"] = report.per_source_results(oriented, table, [m.name for m in models])
    scores = table[["path", "class", "role"]].copy()
    for m in models:
        scores[m.name] = raw[m.name]
        scores[f"{m.name}:called_mpox"] = m.called_mpox(raw[m.name])
    at_threshold = {}
    for m in models:
        called = scores[f"{m.name}:called_mpox"].to_numpy()
        dermnet = (table["role"] == "test") & (table["dataset"] == "DermNetNZ")
        mpox = table["role"] == "mpox_test"
        at_threshold[m.name] = {
            "sensitivity_mpox_test": round(float(called[mpox].mean()), 4),
            "sensitivity_per_source": {source: round(float(called[mpox & (table["dataset"] == source)].mean()), 4)
                                       for source in sorted(table.loc[mpox, "dataset"].unique())},
            "specificity_others_test": round(float(1 - called[table["class"] == OTHERS].mean()), 4),
            "specificity_dermnet_test": round(float(1 - called[dermnet].mean()), 4) if dermnet.any() else None,
        }
    return {**results, "at_threshold": at_threshold}, scores


def _sets(sub: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Part (d)'s photo sets of a noise table (bool masks) and their roles."""
    masks = {"mpox_test": (sub["role"] == "mpox_test").to_numpy(), "others_test": (sub["class"] == OTHERS).to_numpy(),
             "dermnet_test": ((sub["role"] == "test") & (sub["dataset"] == "DermNetNZ")).to_numpy()}
    return masks, {"mpox_test": "mpox", "others_test": "other_rash", "dermnet_test": "other_rash"}


def noise_part(models: list[BenchModel], table: pd.DataFrame, photos: list[Any],
               config: BenchmarkConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parts (b) and (d): one row per model x condition (clean, then corruption x severity), and one per
    model x condition x photo set with the share called right / wrong / no rash / refused."""
    pre = models[0].detector.config.preprocess
    sub = table.reset_index(drop=True)
    resolutions = [effective_resolution(p, pre) for p in photos]
    sets, roles = _sets(sub)
    others, dermnet, positives = sets["others_test"], sets["dermnet_test"], sets["mpox_test"]
    negatives = (sub["role"] == "test").to_numpy()
    conditions = [("clean", 0)] + [(c, s) for c in config.corruptions for s in config.severities]
    rows, verdicts = [], []
    for name, severity in tqdm(conditions, desc="noise", file=sys.stderr, mininterval=30):
        views = make_views(models, partial(_condition_views, photos, name, severity, config.seed))
        raw = _score_views(models, views, config.batch_size)
        condition = {"corruption": name, "severity": severity,
                     "description": "none" if name == "clean" else describe(name, severity)}
        judgements = mim_judgements(models, mim_views(models, views), raw, resolutions)
        verdicts += verdict_rows(models, judgements, raw, sets, roles, condition)[0]
        gated = np.array([j.decision.verdict.is_refusal for j in judgements])  # the shared gates' refusals
        for m in models:
            oriented = m.oriented(raw[m.name])
            called = m.called_mpox(raw[m.name])
            pooled = _auroc(oriented, sub, negatives, config.n_boot)
            rows.append({
                "model": m.name, "kind": m.kind, **condition,
                "auroc": pooled["auroc"], "ci_low": pooled["ci_low"], "ci_high": pooled["ci_high"],
                "auroc_others": _auroc(oriented, sub, others, config.n_boot)["auroc"],
                "auroc_dermnet": _auroc(oriented, sub, dermnet, config.n_boot)["auroc"],
                "n_pos": int(positives.sum()), "n_neg": int(negatives.sum()),
                "mpox_called_mpox": round(float(called[positives].mean()), 4),
                "negatives_called_mpox": round(float(called[negatives].mean()), 4),
                "gate_flagged": round(float(gated.mean()), 4),
            })
    return pd.DataFrame(rows), pd.DataFrame(verdicts)


def healthy_part(models: list[BenchModel], folders: tuple[str, ...], config: BenchmarkConfig) -> pd.DataFrame:
    """Part (d)'s healthy-skin rows, one per folder (missing ones skipped): clean photos of skin without rash,
    every model behind the same gate."""
    rows = [row for folder in folders if Path(folder).is_dir() for row in _healthy_rows(models, folder, config)]
    return pd.DataFrame(rows)


def trained_on(card: dict[str, Any]) -> set[Path]:
    """The files (resolved) of the photos a model trained or calibrated on, from its card's split and roots."""
    roots = (card.get("data") or {}).get("roots") or []
    files = set()
    for path in (p for paths in _seen_paths(card) for p in paths):
        try:
            files.add(locate(roots, path).resolve())
        except FileNotFoundError:
            continue  # a photo under none of its roots here cannot be among this folder's either
    return files


def _healthy_rows(models: list[BenchModel], folder: str, config: BenchmarkConfig) -> list[dict[str, Any]]:
    """One row per model; a model that trained on some of these photos (the probe learns from the healthy design
    set) is judged on the others only, and the row says how many it skipped (``trained_on``)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file())
    if not paths:
        return []
    pre = models[0].detector.config.preprocess
    photos = [decode_image(p) for p in paths]
    views = make_views(models, lambda own: [to_view(p, own) for p in photos])
    raw = _score_views(models, views, config.batch_size)
    judgements = mim_judgements(models, mim_views(models, views), raw, [effective_resolution(p, pre) for p in photos])
    rows = []
    for model in models:
        seen = trained_on(model.card)
        unseen = np.array([p.resolve() not in seen for p in paths])
        rows += verdict_rows([model], judgements, raw, {"healthy": unseen}, {"healthy": "healthy"},
                             {"corruption": "clean", "severity": 0, "description": str(folder),
                              "trained_on": int((~unseen).sum())})[0]
    return rows


def abnormal_part(models: list[BenchModel], config: BenchmarkConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Part (c): per image x model rows, and a summary per model x category (plus 'all')."""
    pre = models[0].detector.config.preprocess
    images = abnormal_images(config.seed)
    if config.limit:  # quick checks: the first `limit` pictures of each category
        counts: dict[str, int] = {}
        kept = []
        for a in images:
            counts[a.category] = counts.get(a.category, 0) + 1
            if counts[a.category] <= config.limit:
                kept.append(a)
        images = kept
    photos = [decode_image(a.image) for a in images]
    views = make_views(models, lambda own: [to_view(p, own) for p in photos])
    resolutions = [effective_resolution(p, pre) for p in photos]
    raw = _score_views(models, views, config.batch_size)
    judgements = mim_judgements(models, mim_views(models, views), raw, resolutions)
    issues = [j.decision if j.decision.verdict.is_refusal else None for j in judgements]  # the shared gates
    _, verdicts = verdict_rows(models, judgements, raw, {}, {}, {})
    rows = []
    for m in models:
        called = m.called_mpox(raw[m.name])
        for a, score, call, issue, verdict in zip(images, raw[m.name], called, issues, verdicts[m.name]):
            prob = float(score) if m.kind == "classifier" else None
            rows.append({"model": m.name, "kind": m.kind, "category": a.category, "image": a.name,
                         "score": float(score), "called_mpox": bool(call), "gate_flagged": issue is not None,
                         "called_mpox_after_gate": verdict == Verdict.MPOX_LIKE.value, "verdict": verdict,
                         "judged": not Verdict(verdict).is_refusal,
                         "confident_mpox": prob is not None and prob >= 0.9,
                         "gate_reason": issue.reason if issue else ""})
    per_image = pd.DataFrame(rows)
    summary = []
    for (model, category), part in list(per_image.groupby(["model", "category"], sort=False)) + \
            [((m, "all"), per_image[per_image["model"] == m]) for m in per_image["model"].unique()]:
        summary.append({"model": model, "kind": part["kind"].iloc[0], "category": category, "n": len(part),
                        "called_mpox": round(float(part["called_mpox"].mean()), 4),
                        "called_mpox_after_gate": round(float(part["called_mpox_after_gate"].mean()), 4),
                        "gate_flagged": round(float(part["gate_flagged"].mean()), 4),
                        "judged": round(float(part["judged"].mean()), 4),
                        "confident_mpox": round(float(part["confident_mpox"].mean()), 4)
                        if part["kind"].iloc[0] == "classifier" else None})
    return per_image, pd.DataFrame(summary)


def run_benchmark(weights_dir: str | Path, data_roots: str | Path | list[str | Path], out_dir: str | Path,
                  config: BenchmarkConfig = BenchmarkConfig()) -> dict[str, Any]:
    """Run parts (a)-(c) and write benchmark.md / .json, CSVs and PNG plots into ``out_dir``."""
    from .report import write_outputs

    torch.set_num_threads(config.threads)
    started = time.time()
    models = load_models(weights_dir, config.threads)
    data_roots = root_list(data_roots)
    table = benchmark_table(data_roots, models, config)
    configs = view_configs(models)
    photos = {}
    views: Views = {pre: [] for pre in configs}
    for row in tqdm(table.itertuples(), total=len(table), desc="decode", file=sys.stderr, mininterval=30):
        photo = decode_image(locate(data_roots, row.path))
        if row.in_noise:
            photos[row.path] = photo
        for pre in configs:
            views[pre].append(to_view(photo, pre))
    timings: dict[str, float] = {}
    unseen, unseen_scores = unseen_part(models, table, views, config)
    timings["unseen_s"] = round(time.time() - started, 1)
    noise_table = table[table["in_noise"]].reset_index(drop=True)
    noise, verdicts = noise_part(models, noise_table, [photos[p] for p in noise_table["path"]], config)
    timings["noise_s"] = round(time.time() - started - timings["unseen_s"], 1)
    healthy = healthy_part(models, config.healthy_dirs, config)
    abnormal, abnormal_summary = abnormal_part(models, config)
    timings["total_s"] = round(time.time() - started, 1)
    results = {
        "data_roots": [str(r) for r in data_roots],
        "config": {**asdict(config), "severities": list(config.severities), "corruptions": list(config.corruptions),
                   "healthy_dirs": list(config.healthy_dirs)},
        "models": [{"name": m.name, "kind": m.kind, "weights_sha256": m.card.get("weights_sha256"),
                    "score_direction": m.card.get("score_direction"), "threshold": m.threshold,
                    "trained_on_negatives": _negatives_text(m.card),
                    "ms_per_image": round(1000 * m.seconds / max(1, m.images), 1)} for m in models],
        "n": {"mpox_test": int((table["role"] == "mpox_test").sum()),
              "mpox_test_per_source": table.loc[table["role"] == "mpox_test", "dataset"].value_counts().sort_index()
              .to_dict(),
              "others_test": int((table["class"] == OTHERS).sum()),
              "dermnet_test": int(((table["role"] == "test") & (table["dataset"] == "DermNetNZ")).sum()),
              "noise_images": len(noise_table), "abnormal_images": int(abnormal["image"].nunique()),
              "healthy": {d: int(n) for d, n in healthy.groupby("description")["n"].first().items()}
              if len(healthy) else {}},
        "unseen": unseen,
        "noise": noise.to_dict("records"),
        "abnormal": abnormal_summary.to_dict("records"),
        "verdicts": verdicts.to_dict("records"),
        "healthy": healthy.to_dict("records"),
        "targets": {m.name: targets(verdicts, noise, healthy, abnormal_summary, m.name) for m in models},
        "abnormal_natural_sources": sorted(abnormal.loc[abnormal["category"] == "natural", "image"].unique().tolist()),
        "timings": {**timings, "threads": config.threads},
    }
    write_outputs(Path(out_dir), results, unseen_scores, noise, abnormal, abnormal_summary, verdicts)
    return results


def _negatives_text(card: dict[str, Any]) -> str:
    if card.get("kind") == "mim" or card.get("config", {}).get("arch") in ONE_CLASS_ARCHS:
        return "none (mpox only)"
    return {"others": "MSLD Others (train split)",
            "others+dev": "MSLD Others (train split) + 10 DermNet dev classes",
            "others+dev+healthy": "MSLD Others (train split) + 10 DermNet dev classes + healthy photos (Normal, "
                                  "half of MSID_Normal)"}.get(
        card.get("config", {}).get("negatives"), "see card")

