"""The detector API: ``MIMDetector.load(path).analyze(image) -> Analysis``.

An analysis first runs the model-free gate (:mod:`mim_core.gate`); a usable photo is masked
with every mask of the fixed bank, each masked copy is inpainted, one reconstruction per scale is
composited (each pixel comes from the one mask that hid it), and its dissimilarity to the original
becomes the score map whose mean is the score (:mod:`mim_core.measure`). Score: higher = less
mpox-like; the verdict comes from :mod:`mim_core.verdict`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .appearance import AppearanceCheck
from .checkpoint import check_card_matches, load_card, load_generator
from .config import MIMConfig
from .data import ImageInput, decode_inputs, preprocess, to_uint8
from .gate import (GateThresholds, acquisition_refusal, channel_noise_sigma, effective_resolution, measure_quality,
                   quality_gate, view_noise)
from .masks import grid_mask_bank
from .measure import DENOISERS, REFERENCES, dissimilarity_map, gaussian_fill, mean_fill, mim_score, score_map, wiener_denoise
from .model import autocast, inpaint, run_precision
from .verdict import MIM_SCORE_DIRECTION, Analysis, Decision, Verdict, card_threshold, judge, mpox_when


REASONS = {
    Verdict.MPOX_LIKE: "The model reproduces this skin as well as it reproduces mpox lesions it was calibrated on.",
    Verdict.NOT_MPOX_LIKE: "The model could not reproduce this skin the way it reproduces mpox lesions.",
}
NOT_SKIN_REASON = "This picture does not look like a photo of skin."


@dataclass(frozen=True)
class ScoredBatch:
    """:meth:`MIMDetector.score_tensors` for B images, on the CPU: ``scores`` (B,), ``maps`` (B, S, H, W)
    score maps (``scores[i] == maps[i].mean()`` to float32 rounding), ``inpainted`` (B, S, 3, H, W)."""

    scores: np.ndarray
    maps: torch.Tensor
    inpainted: torch.Tensor


@dataclass(frozen=True)
class Judgement:
    """The verdict path for one view: the gate's measurements, the appearance checks' patch distance
    (when they measured it: not for a view refused for its colours), then (when no gate refused it) the score."""

    decision: Decision
    quality: dict[str, float]
    score: float = float("nan")
    patch_distance: float | None = None


def reconstruct(fill, images: torch.Tensor, bank: torch.Tensor, cells: Sequence[int]) -> torch.Tensor:
    """Composite reconstruction per scale.

    Args:
        fill: callable (images (M,3,H,W), masks (M,1,H,W), cell sizes (M,)) -> composited fills (M,3,H,W).
        images: (B, 3, H, W) in [0, 1].
        bank: (S, N, 1, H, W) masks; the N masks of a scale partition the pixels.
        cells: the S grid cell sizes of the bank.
    Returns:
        (B, S, 3, H, W): for each scale, every pixel taken from the fill of the mask that hid it.
    """
    per_scale = bank.shape[1]
    out = []
    for image in images:
        copies = image.unsqueeze(0).expand(per_scale, -1, -1, -1)
        # one scale per call: a scale's reconstruction is then the same whichever other scales are analysed
        scales = [(fill(copies, masks, torch.full((per_scale,), cell, device=bank.device)) * masks).sum(0)
                  for masks, cell in zip(bank, cells)]  # keep only the hidden part of each fill
        out.append(torch.stack(scales))
    return torch.stack(out)


def analysed_scales(config: MIMConfig) -> tuple[int, ...]:
    """The mask scales an analysis runs: ``measure.scales`` (a subset chosen on dev), else every scale.

    Raises:
        ValueError: a measure scale that the model's mask bank does not have.
    """
    chosen = tuple(config.measure.scales) or tuple(config.masks.scales)
    unknown = set(chosen) - set(config.masks.scales)
    if unknown:
        raise ValueError(f"measure.scales {sorted(unknown)} are not scales of the mask bank {config.masks.scales}.")
    return chosen


def gaussian_reference(images: torch.Tensor, masks: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """The mpox-agnostic reference fill for :func:`reconstruct`: Gaussian fill with sigma = cell / 2."""
    out = torch.empty_like(images)
    for cell in cells.unique().tolist():
        rows = cells == cell
        out[rows] = gaussian_fill(images[rows], masks[rows], sigma=cell / 2)
    return out


class MIMDetector:
    """Mask, inpaint, measure. Build with :meth:`load`; thread-safe for concurrent ``analyze`` calls."""

    score_direction = MIM_SCORE_DIRECTION

    def __init__(self, generator: torch.nn.Module, config: MIMConfig, threshold: float,
                 card: dict[str, Any] | None = None, device: str = "cpu", precision: str = "fp32",
                 appearance: AppearanceCheck | None = None) -> None:
        self.device = torch.device(device)
        # "bf16": the networks run under bfloat16 autocast (measures stay fp32); fp32 on CPUs without native bfloat16
        self.precision = run_precision(precision, self.device.type)
        self.generator = generator.eval().to(self.device, memory_format=torch.channels_last)
        self.config = config
        self.threshold = float(threshold)
        self.card = card or {}
        self.gate = GateThresholds.from_card(self.card)  # built-in defaults only when the card has none
        self.appearance = appearance  # None: a card without appearance checks (no "no rash", no not-skin refusal)
        self.scales = analysed_scales(config)  # the bank's scales the measure uses (all by default)
        bank = grid_mask_bank(config.masks, config.preprocess.size)
        self.bank = bank[[config.masks.scales.index(s) for s in self.scales]].to(self.device)

    @classmethod
    def load(cls, weights: str | os.PathLike, threads: int | None = None, device: str = "cpu",
             precision: str = "fp32") -> "MIMDetector":
        """Load weights + the card beside them, verifying the weights' sha256 against the card.

        Raises:
            WeightsError: missing card or weights, a sha256 mismatch, or a card without a threshold
                (which would otherwise call every photo mpox-like).
        """
        if threads:
            torch.set_num_threads(threads)
        card = load_card(weights)
        generator, trained = load_generator(weights, card.get("weights_sha256"))
        config = check_card_matches(card, weights, generator, trained)
        threshold = card_threshold(card, weights)
        appearance = AppearanceCheck.from_card(card, Path(weights).parent)
        return cls(generator, config, threshold, card, device, precision, appearance)

    @property
    def calibration(self) -> list[float]:
        """The mpox val scores the threshold was set on."""
        return list(self.card.get("threshold", {}).get("val_scores") or [])

    def no_rash(self, patch_distance: float | None) -> bool:
        """Whether the appearance check finds no part of the photo like the mpox photos (a mpox-like call then
        becomes "no rash visible"); False without the check or its distance."""
        return self.appearance is not None and patch_distance is not None and \
            patch_distance > self.appearance.no_rash_threshold

    def with_measure(self, **fields: Any) -> "MIMDetector":
        """The same networks with other ``MeasureConfig`` fields (e.g. ``scales=()`` for the whole bank)."""
        config = self.config.replace(**{f"measure__{k}": v for k, v in fields.items()})
        return MIMDetector(self.generator, config, self.threshold, self.card, str(self.device), self.precision,
                           self.appearance)

    def _fill(self, images: torch.Tensor, masks: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        # channels_last for every operand: mixed memory formats make cat and elementwise ops copy
        channels_last = torch.channels_last
        with autocast(self.device.type, self.precision):
            filled = inpaint(self.generator, images.contiguous(memory_format=channels_last),
                             masks.contiguous(memory_format=channels_last))
        return filled.float()

    def reconstructions(self, images: torch.Tensor, fills: Sequence[str]) -> dict[str, torch.Tensor]:
        """(B,3,H,W) preprocessed -> {fill: (B,S,3,H,W)} on the detector's device.

        Fills: ``gan`` (the mpox inpainter), ``gauss`` (mpox-agnostic Gaussian fill), ``mean`` (each
        mask's mean known colour).
        """
        functions = {"gan": self._fill, "gauss": gaussian_reference, "mean": lambda x, m, c: mean_fill(x, m)}
        images = images.to(self.device)
        return {name: reconstruct(functions[name], images, self.bank, self.scales) for name in fills}

    def denoised(self, views: torch.Tensor, noise: Sequence[float] | None = None) -> torch.Tensor:
        """(B,3,H,W) -> the views the measure sees: with ``measure.denoise == "wiener"`` each view is
        Wiener-filtered for the noise by which its gate noise measurement (``noise``, measured here when
        not given) exceeds the gate's ``clean_noise`` (the noise a clean photo may carry, so most clean
        views are left as they are); otherwise ``views`` itself."""
        if self.config.measure.denoise not in DENOISERS:
            raise ValueError(f"unknown denoise {self.config.measure.denoise!r}; choose one of {DENOISERS}")
        if self.config.measure.denoise == "none" or not len(views):
            return views
        if noise is None:
            noise = [view_noise(to_uint8(v)) for v in views]
        clean = self.gate.clean_noise
        return wiener_denoise(views, [channel_noise_sigma(max(n * n - clean * clean, 0.0) ** 0.5) for n in noise])

    def measure_fills(self, images: torch.Tensor, fills: Sequence[str], kinds: Sequence[str], denoised: bool = False
                      ) -> tuple[dict[str, torch.Tensor], dict[tuple[str, str], torch.Tensor]]:
        """Reconstructions and their dissimilarity maps: what every score and control is computed from.

        Args:
            images: (B, 3, H, W) preprocessed; denoised here (:meth:`denoised`; ``denoised=True``: they
                already were) before masking.
            fills: names as in :meth:`reconstructions`; kinds: map kinds (:data:`mim_core.measure.MAP_KINDS`).
        Returns:
            ({fill: (B, S, 3, H, W)}, {(fill, kind): (B, S, H, W)}), on the detector's device.
        """
        images = images if denoised else self.denoised(images)
        images = images.to(self.device)
        recon = self.reconstructions(images, fills)
        b, s = recon[fills[0]].shape[:2]
        originals = images.unsqueeze(1).expand(-1, s, -1, -1, -1).flatten(0, 1)
        size = images.shape[-2:]
        maps = {(fill, kind): dissimilarity_map(originals, recon[fill].flatten(0, 1), kind).view(b, s, *size)
                for fill in fills for kind in kinds}
        return recon, maps

    @torch.inference_mode()
    def score_tensors(self, images: torch.Tensor, denoised: bool = False) -> ScoredBatch:
        """(B,3,H,W) preprocessed (``denoised``: and already through :meth:`denoised`) -> scores, score maps
        and reconstructions (no quality gate)."""
        measure = self.config.measure
        if measure.reference not in REFERENCES:
            raise ValueError(f"unknown reference {measure.reference!r}; choose one of {REFERENCES}")
        reference = None if measure.reference == "none" else measure.reference
        recon, maps = self.measure_fills(images, ["gan"] + ([reference] if reference else []), [measure.map], denoised)
        gan_maps = maps[("gan", measure.map)]
        ref_maps = maps[(reference, measure.map)] if reference else None
        scores = mim_score(mean_errors(gan_maps), None if ref_maps is None else mean_errors(ref_maps))
        return ScoredBatch(np.asarray(scores, dtype=np.float64), score_map(gan_maps, ref_maps).cpu(),
                           recon["gan"].cpu())

    def score_views(self, images: torch.Tensor) -> np.ndarray:
        """(B,3,H,W) preprocessed -> (B,) scores, higher = less mpox-like (the benchmark's interface)."""
        return self.score_tensors(images).scores

    def analyze(self, image: ImageInput) -> Analysis:
        """Analyse one photo (path, bytes, PIL image or (H,W,3) uint8 array).

        Raises:
            ImageDecodeError: the input cannot be read as a photo (message is user-facing).
        """
        return self.analyze_batch([image])[0]

    def refusals(self, views: torch.Tensor, resolutions: Sequence[float | None]
                 ) -> tuple[list[Decision | None], list[dict[str, float]], dict[int, float], torch.Tensor]:
        """The gates, before any inpainting, in the order that names the right cause: the usable-skin checks
        (flat, grayscale, skin colour), the appearance check of the whole view (a picture unlike every
        skin reference photo, even degraded ones: not a skin photo, whatever its noise or blur), the
        acquisition checks, then the appearance check's patch limit on the views they pass.

        Args:
            views: (B, 3, H, W) preprocessed; resolutions: (B,) photo px per model px (None: unknown).
        Returns:
            (per view the refusal or None, per view the acquisition measurements, {view index: patch
            distance} for the views the appearance checks measured, the views as the measure sees them
            (:meth:`denoised`; views refused for their colours as they came)).
        """
        originals = [to_uint8(t) for t in views]
        qualities = [measure_quality(o, r) for o, r in zip(originals, resolutions)]
        refusals: list[Decision | None] = [quality_gate(o, None) for o in originals]
        skin = [i for i, r in enumerate(refusals) if r is None]
        seen = views.clone() if skin else views
        if skin:
            seen[skin] = self.denoised(views[skin], [qualities[i]["noise"] for i in skin])
        measured = self.appearance.measure(seen[skin]) if self.appearance is not None and skin else None
        distances: dict[int, float] = {}
        for row, i in enumerate(skin):
            if measured is not None and self.appearance.photo_unlike_skin(measured, row):
                refusals[i] = Decision(Verdict.UNUSABLE, NOT_SKIN_REASON)
            else:
                refusals[i] = acquisition_refusal(qualities[i], self.gate)
                if refusals[i] is None and measured is not None and self.appearance.patches_unlike_skin(measured, row):
                    refusals[i] = Decision(Verdict.UNUSABLE, NOT_SKIN_REASON)
            if measured is not None:
                distances[i] = float(measured.patch[row])
        return refusals, qualities, distances, seen

    def decide_views(self, views: torch.Tensor, resolutions: Sequence[float | None], scores: np.ndarray | None = None
              ) -> tuple[list[Judgement], ScoredBatch | None, list[int]]:
        """The whole verdict path on preprocessed views: gates, score, threshold, no-rash check.

        Args:
            views: (B, 3, H, W) preprocessed; resolutions: (B,) photo px per model px (None: unknown).
            scores: (B,) :meth:`score_views` of these views, when already computed (the benchmark scores
                every view once, gated or not); the views the gates pass are then not inpainted again.
        Returns:
            (one :class:`Judgement` per view, the :class:`ScoredBatch` of the views the gates passed, or
            None when none passed or ``scores`` was given; their indices into ``views``). A refused view
            costs no inpainting.
        """
        refusals, qualities, distances, seen = self.refusals(views, resolutions)
        usable = [i for i, r in enumerate(refusals) if r is None]
        scored = self.score_tensors(seen[usable], denoised=True) if usable and scores is None else None
        usable_scores = np.asarray(scores, dtype=np.float64)[usable] if scores is not None else \
            (scored.scores if scored is not None else np.empty(0))
        judgements = [Judgement(refusal, quality, patch_distance=distances.get(i))
                      for i, (refusal, quality) in enumerate(zip(refusals, qualities))]
        when = mpox_when(MIM_SCORE_DIRECTION)
        for i, score in zip(usable, usable_scores.tolist()):
            no_rash = self.no_rash(distances.get(i))
            judgements[i] = Judgement(judge(score, self.threshold, when, REASONS, no_rash=no_rash), qualities[i], score,
                                      distances.get(i))
        return judgements, scored, usable

    def analyze_batch(self, images: Sequence[ImageInput]) -> list[Analysis]:
        """Analyse several photos; raises ImageDecodeError on the first unreadable one (the CLI and demo
        decode first to report each bad file separately)."""
        return self.analyze_views(*self.views(images))

    def views(self, images: Sequence[ImageInput]) -> tuple[torch.Tensor, list[float | None]]:
        """Decode and preprocess: ((B, 3, H, W) model views, (B,) photo px per model px).

        Raises:
            ImageDecodeError: the first input that cannot be read as a photo.
        """
        return self.photo_views(decode_inputs(images))

    def photo_views(self, photos: Sequence[Image.Image]) -> tuple[torch.Tensor, list[float | None]]:
        """:meth:`views` of photos already decoded (:func:`mim_core.data.decode_inputs`)."""
        return (torch.stack([preprocess(p, self.config.preprocess) for p in photos]),
                [effective_resolution(p, self.config.preprocess) for p in photos])

    def analyze_views(self, tensors: torch.Tensor, resolutions: Sequence[float | None]) -> list[Analysis]:
        """:meth:`analyze_batch` of preprocessed (B, 3, H, W) views."""
        judgements, scored, usable = self.decide_views(tensors, resolutions)
        grey = torch.full_like(tensors[:1], 0.5)
        first_masks = self.bank[:, 0].cpu()  # (S, 1, H, W)
        measure = self.config.measure
        common = {"threshold": self.threshold, "scales": self.scales,
                  "heatmap_max": measure.heatmap_max, "diverging": measure.reference != "none"}
        position = {i: j for j, i in enumerate(usable)}  # view index -> row of the scored batch
        results = []
        for i, judgement in enumerate(judgements):
            original = to_uint8(tensors[i])
            decision = judgement.decision
            if decision.verdict.is_refusal:
                results.append(Analysis(score=float("nan"), verdict=decision.verdict, reason=decision.reason,
                                        original=original, quality=judgement.quality,
                                        patch_distance=judgement.patch_distance, **common))
                continue
            j = position[i]
            results.append(Analysis(
                score=judgement.score, verdict=decision.verdict, reason=decision.reason, original=original,
                masked=to_uint8(first_masks * grey + (1 - first_masks) * tensors[i : i + 1]),
                inpainted=to_uint8(scored.inpainted[j]), scale_heatmaps=scored.maps[j].numpy().astype(np.float32),
                quality=judgement.quality, patch_distance=judgement.patch_distance, **common))
        return results


def mean_errors(maps: torch.Tensor) -> np.ndarray:
    """(B, S, H, W) dissimilarity maps -> (B,) float64 means over the whole mask bank: the one reduction
    behind every score (the evaluation's stored measurements come from it too)."""
    return maps.mean(dim=(1, 2, 3)).double().cpu().numpy()
