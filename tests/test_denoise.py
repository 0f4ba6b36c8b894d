"""Denoising before masking (issue 12 part 3): the Wiener filter itself, and that mild noise the gate lets
through moves the shipped detector's mpox scores much less than without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mim_core.gate import channel_noise_sigma, view_noise
from mim_core.benchmark.corruptions import add_noise, to_view, view_tensor
from mim_core.data import decode_image, to_uint8
from mim_core.measure import wiener_denoise
from tests.conftest import located


def _noisy(views: list[np.ndarray], std: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.stack([view_tensor(add_noise(v, std, rng)) for v in views])


@pytest.fixture(scope="module")
def val_views(detector, data_root) -> list[np.ndarray]:
    return [to_view(decode_image(located(p)), detector.config.preprocess) for p in detector.card["split"]["val"]]


def test_wiener_removes_noise_keeps_edges_and_survives_flat_views():
    generator = torch.Generator().manual_seed(0)
    step = (torch.arange(64) >= 32).float().view(1, 1, 1, 64).expand(1, 3, 64, 64) * 0.6 + 0.2
    noisy = (step + 0.05 * torch.randn(step.shape, generator=generator)).clamp(0, 1)
    sigma = channel_noise_sigma(view_noise(to_uint8(noisy[0])))
    assert 0.035 < sigma < 0.065  # the gate's luma estimate, turned back into the per-channel std
    out = wiener_denoise(noisy, [sigma])
    assert (out - step)[..., 28:36].abs().mean() < 0.06  # the edge is kept ...
    assert (out - step).std() < 0.6 * (noisy - step).std()  # ... and the grain mostly gone
    flat = torch.full((2, 3, 16, 16), 0.5)
    assert torch.equal(wiener_denoise(flat, [0.0, 0.0]), flat)  # no 0/0 on zero variance and zero noise


def test_wiener_is_scipys_formula_on_reflected_borders(val_views):
    from scipy.signal import wiener

    views = torch.stack([view_tensor(v) for v in val_views[:3]])
    views = (views + 0.04 * torch.randn(views.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    sigmas = [0.0, 0.02, 0.05]  # 0: the noise floor
    padded = np.pad(views.double().numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.stack([np.stack([wiener(c, 5, max(s, 1e-3) ** 2) for c in view])
                             for view, s in zip(padded, sigmas)])[..., 2:-2, 2:-2].clip(0, 1)
    assert np.abs(wiener_denoise(views, sigmas).numpy() - expected).max() < 1e-6


def test_clean_views_are_left_almost_untouched(detector, val_views):
    views = torch.stack([view_tensor(v) for v in val_views])
    assert (detector.denoised(views) - views).abs().mean() < 0.01


def test_mild_noise_the_gate_passes_moves_mpox_scores_less_after_denoising(detector, val_views):
    """Noise of std 0.02 passes the gate's noise limit; without denoising it pushes the mpox val scores
    up (less mpox-like) and past the threshold for some; the shipped Wiener step undoes most of that."""
    assert detector.config.measure.denoise == "wiener"
    clean = torch.stack([view_tensor(v) for v in val_views])
    noisy = _noisy(val_views, 0.02, seed=11)
    assert all(view_noise(to_uint8(v)) <= detector.gate.max_noise for v in noisy)
    raw = detector.with_measure(denoise="none")
    raw_shift = raw.score_views(noisy) - raw.score_views(clean)
    denoised_shift = detector.score_views(noisy) - detector.score_views(clean)
    assert raw_shift.mean() > 0.05 and denoised_shift.mean() < 0.5 * raw_shift.mean()
    assert np.mean(detector.score_views(noisy) <= detector.threshold) > np.mean(
        raw.score_views(noisy) <= raw.score_views(clean).max())


def test_card_records_the_clean_noise_level_and_its_rule(detector):
    section = detector.card["quality_gate"]
    clean = section["thresholds"]["clean_noise"]
    observed = section["observed_on_calibration"]["noise"]
    assert observed["median"] <= clean <= observed["max"] and "clean_noise = 75th percentile" in section["rule"]
    assert detector.gate.clean_noise == clean


def test_an_unknown_denoiser_is_refused_with_the_choices(detector):
    with pytest.raises(ValueError, match="wiener"):
        detector.with_measure(denoise="median").denoised(torch.zeros(1, 3, 8, 8))


def test_the_verdict_path_scores_what_the_ungated_path_scores(detector, val_views):
    """judge() denoises once and hands the denoised views to the measure; the score must equal
    score_views() on the raw views, which denoises them itself."""
    noisy = _noisy(val_views[:3], 0.015, seed=13)
    judgements, _, usable = detector.decide_views(noisy, [None] * len(noisy))
    direct = detector.score_views(noisy)
    assert usable and np.allclose([judgements[i].score for i in usable], direct[usable], atol=1e-6)
