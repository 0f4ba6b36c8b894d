"""Measure every image once, derive MIM's score variants and every mpox-agnostic control from the
same numbers, choose on dev classes, report on test classes.

The raw numbers are the detector's own (:meth:`MIMDetector.measure_fills` reduced by
:func:`mim_core.detector.mean_errors`), and every ``mim:*`` variant is :func:`mim_core.measure.mim_score`
of them: the very rule :meth:`MIMDetector.score_tensors` applies, so a card's evaluated score is the score
the detector gives (``tests/test_scoring_parity.py``).

Positives are mpox photos of the card's split (val for dev decisions, test for reporting). Negatives:
10 DermNet *dev* classes for design decisions; ``MSLD_v1/Others`` and the 21 other DermNet classes for
reporting only.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import kornia
import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw
from sklearn.covariance import LedoitWolf
from tqdm import tqdm

from ..checkpoint import card_path, save_json
from ..data import decode_image, locate, preprocess, root_list, scan_datasets, to_uint8
from ..detector import MIMDetector, mean_errors
from ..measure import MAP_KINDS, REFERENCES, mim_score
from ..verdict import lower_is_mpox, mpox_when
from .protocol import WATERMARK_BOXES, assign_roles

# Controls that know nothing of mpox lesions, on the same crops as MIM: image complexity, generic fills
# (the Gaussian and mean-colour fills of mim_core.measure in place of the GAN) and colour statistics.
def png_bits_per_pixel(crop: np.ndarray) -> float:
    """Lossless PNG size of an (H,W,3) uint8 image in bits per pixel: a generic complexity measure."""
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.tell() * 8 / (crop.shape[0] * crop.shape[1])


def colour_texture_features(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [0,1] -> (B, 20) features: mean and std of RGB and HSV channels, mean and std of
    gradient magnitude at two scales, and Laplacian energy at two scales."""
    hsv = kornia.color.rgb_to_hsv(images)
    hsv[:, 0] = hsv[:, 0] / (2 * np.pi)
    gray = images.mean(1, keepdim=True)
    parts = [images.mean((2, 3)), images.std((2, 3)), hsv.mean((2, 3)), hsv.std((2, 3))]
    for level in range(2):
        g = gray if level == 0 else torch.nn.functional.avg_pool2d(gray, 2)
        grad = kornia.filters.sobel(g)
        lap = kornia.filters.laplacian(g, 3)
        parts += [grad.mean((1, 2, 3))[:, None], grad.std((1, 2, 3))[:, None], (lap**2).mean((1, 2, 3))[:, None].sqrt()]
    return torch.cat(parts, dim=1).numpy().astype(np.float64)


class ColourStatsDetector:
    """One-class Gaussian on :func:`colour_texture_features`; score = Mahalanobis distance (higher =
    less like the training photos)."""

    def __init__(self, train_features: np.ndarray) -> None:
        self.mean = train_features.mean(0)
        self.scale = train_features.std(0) + 1e-8
        self.model = LedoitWolf().fit((train_features - self.mean) / self.scale)

    def score(self, features: np.ndarray) -> np.ndarray:
        return np.sqrt(self.model.mahalanobis((features - self.mean) / self.scale))


def blank_watermark(image: Image.Image) -> Image.Image:
    """Copy of a DermNet photo with its bottom-left watermark area painted black."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for left, top, right, bottom in WATERMARK_BOXES:
        draw.rectangle([left * w, top * h, right * w, bottom * h], fill=(0, 0, 0))
    return out


@torch.inference_mode()
def measure_tensor(detector: MIMDetector, image: torch.Tensor) -> dict[str, float]:
    """All raw numbers for one preprocessed (3,H,W) image: errors of every fill the detector has (GAN,
    Gaussian, mean colour) under every map kind, averaged over the mask bank; PNG complexity."""
    _, maps = detector.measure_fills(image.unsqueeze(0), ["gan", "gauss", "mean"], MAP_KINDS)
    row = {"png_bpp": png_bits_per_pixel(to_uint8(image))}
    for (fill, kind), fill_maps in maps.items():
        row[error_column(fill, kind)] = float(mean_errors(fill_maps)[0])
        for i, cell in enumerate(detector.scales):  # each scale alone, as a detector analysing only it
            row[error_column(fill, kind, (cell,))] = float(mean_errors(fill_maps[:, [i]])[0])
    return row


def error_column(fill: str, kind: str, scales: tuple[int, ...] = ()) -> str:
    """``err_gan_ssim`` (every scale of the bank) or ``err_gan_ssim@8`` (the 8 px scale alone)."""
    return f"err_{fill}_{kind}" + "".join(f"@{s}" for s in scales)


def measure_all(detector: MIMDetector, data_roots: Sequence[str | Path], table: pd.DataFrame,
                dermnet_short_side: int | None = None) -> pd.DataFrame:
    """Measure every image (and, for DermNet, its watermark-blanked copy). Adds columns
    ``<raw>`` / ``blank_<raw>`` and ``feat_<i>`` (colour/texture statistics).

    ``dermnet_short_side`` first shrinks each DermNet photo to that short side (area resampling): with
    224, DermNet reaches the model at MSLD's scale, so a score cannot ride on the resampling difference.
    """
    pre = detector.config.preprocess
    rows = []
    for record in tqdm(table.itertuples(), total=len(table), desc="measure", file=sys.stderr, mininterval=10):
        image = decode_image(locate(data_roots, record.path))
        if dermnet_short_side and record.dataset == "DermNetNZ":
            factor = dermnet_short_side / min(image.size)
            image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BOX)
        tensor = preprocess(image, pre)
        row = measure_tensor(detector, tensor)
        features = colour_texture_features(tensor.unsqueeze(0))[0]
        row.update({f"feat_{i}": v for i, v in enumerate(features)})
        if record.dataset == "DermNetNZ":
            blanked = preprocess(blank_watermark(image), pre)
            same = torch.equal(blanked, tensor)
            blank_row = row if same else measure_tensor(detector, blanked)
            row.update({f"blank_{k}": v for k, v in blank_row.items() if not k.startswith("feat_")})
            row["blank_identical_crop"] = same
        rows.append(row)
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


@dataclass(frozen=True)
class ScoreDef:
    name: str
    description: str


def score_definitions() -> list[ScoreDef]:
    defs = []
    for kind in MAP_KINDS:
        defs.append(ScoreDef(f"mim:{kind}", f"GAN inpainting error, {kind} map"))
        defs.append(ScoreDef(f"mim:{kind}/gauss",
                             f"GAN {kind} error / Gaussian-fill {kind} error on the same masks, minus 1"))
    for kind in MAP_KINDS:
        defs.append(ScoreDef(f"control:gauss-fill:{kind}",
                             f"Gaussian (classical) fill in place of the GAN, {kind} error"))
        defs.append(ScoreDef(f"control:fill-ratio:{kind}",
                             f"log(Gaussian-fill {kind} error / mean-colour-fill {kind} error)"))
    defs.append(ScoreDef("control:complexity", "PNG bits per pixel of the crop (image complexity)"))
    defs.append(ScoreDef("control:colour-stats",
                         "Mahalanobis distance of colour/texture statistics to mpox train crops"))
    return defs


def definitions(names: Sequence[str]) -> dict[str, str]:
    """What each score column is (a single-scale variant: its whole-bank definition, on that scale)."""
    known = {d.name: d.description for d in score_definitions()}
    out = {}
    for name in names:
        base, _, cell = name.partition("@")
        if base in known:
            out[name] = known[base] + (f"; the {cell} px scale of the mask bank alone" if cell else "")
    return out


def compute_scores(measured: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Score columns (named as :func:`score_definitions`) from raw measurements; ``prefix='blank_'``
    uses the watermark-blanked measurements where present."""
    def col(name: str) -> pd.Series:
        blanked = f"{prefix}{name}"
        return measured[blanked].fillna(measured[name]) if prefix and blanked in measured else measured[name]

    log = lambda s: np.log(np.clip(s.astype(float), 1e-6, None))
    scores = pd.DataFrame(index=measured.index)
    for name in mim_variants(measured):
        kind, reference, scales = parse_variant(name)
        scores[name] = mim_score(col(error_column("gan", kind, scales)),
                                 None if reference == "none" else col(error_column(reference, kind, scales)))
    for kind in MAP_KINDS:
        scores[f"control:gauss-fill:{kind}"] = col(f"err_gauss_{kind}")
        scores[f"control:fill-ratio:{kind}"] = log(col(f"err_gauss_{kind}")) - log(col(f"err_mean_{kind}"))
    scores["control:complexity"] = col("png_bpp")
    features = measured[[c for c in measured if c.startswith("feat_")]].to_numpy()
    train = (measured["role"] == "mpox_train").to_numpy()
    scores["control:colour-stats"] = ColourStatsDetector(features[train]).score(features)
    return scores


def mim_variants(measured: pd.DataFrame) -> list[str]:
    """Every ``mim:*`` score the measurements support: each map kind and reference, over the whole mask
    bank and over each single scale (``@8``)."""
    scales = [()] + [(int(c.rpartition("@")[2]),) for c in measured if c.startswith(f"err_gan_{MAP_KINDS[0]}@")]
    return [variant_name({"map": kind, "reference": ref, "scales": s})
            for s in scales for kind in MAP_KINDS for ref in REFERENCES]


def parse_variant(score_name: str) -> tuple[str, str, tuple[int, ...]]:
    """``mim:ssim/gauss@8`` -> (``ssim``, ``gauss``, (8,)); ``mim:l1`` -> (``l1``, ``none``, ())."""
    name, *cells = score_name.removeprefix("mim:").split("@")
    kind, _, reference = name.partition("/")
    return kind, reference or "none", tuple(int(c) for c in cells)


def measure_config_for(score_name: str) -> dict[str, object]:
    """The detector MeasureConfig fields that reproduce a ``mim:*`` score column. The colour scale of a
    map relative to a reference is [-1, 1] (a pixel one mean reference error worse or better); of a raw
    map, [0, a typical high error of its kind]."""
    kind, reference, scales = parse_variant(score_name)
    heatmap_max = 1.0 if reference != "none" else {"l1": 0.25, "ssim": 0.5, "msgms": 0.6}[kind]
    return {"map": kind, "reference": reference, "heatmap_max": heatmap_max, "scales": scales}


def variant_name(measure: dict) -> str:
    """The ``mim:*`` column of a card's measure (inverse of :func:`parse_variant`)."""
    return (f"mim:{measure['map']}" + ("" if measure["reference"] == "none" else f"/{measure['reference']}")
            + "".join(f"@{s}" for s in measure.get("scales", ())))


def evaluate(weights: str | Path, data_roots: Sequence[str | Path] | None, out_dir: str | Path, update_card: bool = False,
             per_class_limit: int | None = None, reuse_measurements: bool = False,
             dermnet_short_side: int | None = None, device: str = "cpu") -> dict:
    """Run the whole protocol and write Markdown, CSV, JSON and ROC PNG into ``out_dir``.

    The card's own measure is the reported MIM score; the dev table ranks every other variant beside it
    (a design decision changes the recipe, then the model is retrained and recalibrated).
    ``data_roots``: where the photos are (default: the roots in the card); with several mpox sources every
    figure is also given per source (``per_source``).
    ``update_card`` records the results in the card's ``evaluation`` section (nothing else changes).
    ``per_class_limit`` keeps the first N images of each class, and of each mpox source's train, val and test
    photos (for quick checks only).
    ``reuse_measurements`` reads ``out_dir/measurements.csv`` from an earlier run of the same weights, so a
    new score or control costs seconds instead of a pass over every image.
    ``dermnet_short_side``: see :func:`measure_all` (a stress check; not for the card).
    ``device``: where the networks run (e.g. ``cuda``); the numbers do not depend on it beyond float noise.
    """
    if dermnet_short_side and update_card:
        raise ValueError("--dermnet-short-side is a stress check; it cannot update the card.")
    from . import report

    out_dir = Path(out_dir)
    # measured over the whole mask bank whatever scales the card's measure uses (single scales are columns)
    detector = MIMDetector.load(weights, device=device).with_measure(scales=())
    card = detector.card
    roots = root_list(data_roots or card["data"]["roots"])
    table = assign_roles(scan_datasets(roots), card["split"])
    if per_class_limit:
        table = table[table.groupby(["class", "role"]).cumcount() < per_class_limit].reset_index(drop=True)
    cache = out_dir / "measurements.csv"
    if reuse_measurements and cache.is_file():
        previous = json.loads((out_dir / "results.json").read_text())
        if ((previous["weights_sha256"], previous.get("dermnet_short_side"))
                != (card["weights_sha256"], dermnet_short_side)):
            raise ValueError(f"{cache} was measured with other weights or resampling; run without --reuse-measurements.")
        measured = pd.read_csv(cache)
        if list(measured["path"]) != list(table["path"]):
            raise ValueError(f"{cache} covers other images; run without --reuse-measurements.")
    else:
        measured = measure_all(detector, roots, table, dermnet_short_side)
    raw = compute_scores(measured)
    scores, signs_dev = report.orient(raw, table)
    directions = dict(zip(signs_dev["score"], signs_dev["mpox_when"]))
    blanked = compute_scores(measured, "blank_")
    blanked = blanked.apply(lambda column: lower_is_mpox(column, directions[column.name]))

    selected = variant_name(card["config"]["measure"])
    controls = [c for c in scores if c.startswith("control:")]
    test = report.test_results(scores, table, [selected] + controls)
    summary = test["summary"]
    best_mean = max(controls, key=lambda c: summary[c]["mean_dermnet_test"]["auroc"])
    best_others = max(controls, key=lambda c: summary[c]["others"]["auroc"])
    per_class = pd.DataFrame(test["per_class"])
    margins_rows = []
    for cls, rows in per_class.groupby("class", sort=True):
        mim = rows[rows["score"] == selected].iloc[0]
        ctrl = rows[rows["score"] != selected].sort_values("auroc").iloc[-1]
        margins_rows.append({"class": cls, "n_neg": int(mim["n_neg"]), "mim": mim["auroc"], "mim_low": mim["ci_low"],
                             "mim_high": mim["ci_high"], "best_control": ctrl["score"],
                             "best_control_auroc": ctrl["auroc"], "margin": round(mim["auroc"] - ctrl["auroc"], 4)})
    dermnet_rows = table["dataset"] == "DermNetNZ"
    wm_test = report.test_results(blanked, table, [selected])["summary"][selected]
    results = {
        "model": card.get("name", Path(weights).stem), "weights_sha256": card["weights_sha256"],
        "selected": selected, "controls": controls, "n_mpox_test": int((table["role"] == "mpox_test").sum()),
        "definitions": definitions(scores.columns),
        "per_source": report.per_source_results(scores, table, [selected] + controls),
        "dev": signs_dev.to_dict("records"), "test": test,
        "margins": {
            "mean_dermnet_test": round(summary[selected]["mean_dermnet_test"]["auroc"]
                                       - summary[best_mean]["mean_dermnet_test"]["auroc"], 4),
            "best_control_mean_dermnet_test": best_mean,
            "others": round(summary[selected]["others"]["auroc"] - summary[best_others]["others"]["auroc"], 4),
            "best_control_others": best_others,
        },
        "per_class_margins": margins_rows,
        "watermark": {
            "n_dermnet": int(dermnet_rows.sum()),
            "identical_crops": int(measured.loc[dermnet_rows, "blank_identical_crop"].sum()),
            "mean_auroc": summary[selected]["mean_dermnet_test"]["auroc"],
            "mean_auroc_blanked": wm_test["mean_dermnet_test"]["auroc"],
            "difference": round(wm_test["mean_dermnet_test"]["auroc"] - summary[selected]["mean_dermnet_test"]["auroc"], 4),
        },
        "complexity_terciles": report.complexity_terciles(scores, table, measured, selected),
        "threshold": report.threshold_metrics(raw[selected], table, card["threshold"]["value"], mpox_when(card)),
        "per_class_limit": per_class_limit,
        "dermnet_short_side": dermnet_short_side,
    }
    report.write_outputs(out_dir, results, scores, measured)
    if update_card:
        card["evaluation"] = {
            "command": f"python -m mim_core evaluate --weights {weights} --data {' '.join(roots)} --out {out_dir} --update-card",
            "score": selected,
            "mpox_test_images": results["n_mpox_test"],
            "mean_auroc_dermnet_test_classes": summary[selected]["mean_dermnet_test"],
            "auroc_vs_msld_others": summary[selected]["others"],
            "auroc_pooled_dermnet_test": summary[selected]["pooled_dermnet_test"],
            "per_source": {source: {"mean_dermnet_test": by_name[selected]["mean_dermnet_test"],
                                    "others": by_name[selected]["others"]}
                           for source, by_name in results["per_source"].items()},
            "per_class_auroc": {r["class"]: r["auroc"] for r in test["per_class"] if r["score"] == selected},
            "controls": {c: {"mean_dermnet_test": summary[c]["mean_dermnet_test"]["auroc"],
                             "others": summary[c]["others"]["auroc"]} for c in controls},
            "margins": results["margins"],
            "watermark": results["watermark"],
            "at_threshold": results["threshold"],
            "dev_mean_auroc": {r["score"]: r["dev_mean_auroc"] for r in results["dev"]},
        }
    if update_card:
        save_json(card_path(weights), card)
    return results
