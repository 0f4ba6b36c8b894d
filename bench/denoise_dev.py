"""Issue 12 part 3 on dev only: which denoiser, and when to denoise a view before masking.

``--part which``: each denoiser applied only to views the gate finds noisier than the clean mpox
photos (wavelet-MAD estimate above the card's ``grainy_above``), with a strength set by that estimate.
``--part which`` scores, ungated, mpox val vs the first ``--per-class`` photos of each DermNet dev class
(pooled AUROC, and the shares called mpox-like at the undenoised measure's own threshold), clean and under Gaussian noise
severities 1-3. It needs ``pip install scikit-image PyWavelets`` (not dependencies of MIM).
``--part when``: the Wiener filter never; for the noise in excess of a clean level (0: always, with the
full estimate; the shipped step uses the card's ``clean_noise``); or only above the clean range (see
:func:`when_to_denoise` for what it reports).

    .venv/bin/python bench/denoise_dev.py --part which --per-class 12 --out runs/denoise_which.json
    .venv/bin/python bench/denoise_dev.py --part when --out runs/denoise_when.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.acquisition import GateThresholds, luma_of, noise_sigma, view_noise  # noqa: E402
from mim_core.benchmark.corruptions import add_noise, corrupted_view, to_view, view_tensor  # noqa: E402
from mim_core.data import decode_image, to_uint8  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import DEV_CLASSES, dev_class_paths  # noqa: E402

LUMA_TO_CHANNEL = 1 / np.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2)  # i.i.d. channel noise -> luma noise
CONDITIONS = {"clean": None, "noise1": ("gaussian_noise", 1), "noise2": ("gaussian_noise", 2),
              "noise3": ("gaussian_noise", 3)}


def _skimage():
    from skimage import restoration
    return restoration


def denoisers() -> dict:
    """name -> f(view (H,W,3) float [0,1], channel sigma) -> same."""
    from scipy.signal import wiener
    import kornia
    r = _skimage()

    def gauss(scale):
        def f(v, s):
            g = max(0.5, scale * s / 0.04)
            k = 2 * int(np.ceil(3 * g)) + 1
            t = torch.from_numpy(v).permute(2, 0, 1)[None].float()
            return kornia.filters.gaussian_blur2d(t, (k, k), (g, g), border_type="reflect")[0].permute(1, 2, 0).numpy()
        return f

    return {
        "gauss": gauss(1.0),
        "wiener5": lambda v, s: np.stack([wiener(v[..., c], 5, s * s) for c in range(3)], -1),
        "tv": lambda v, s: r.denoise_tv_chambolle(v, weight=1.5 * s, channel_axis=-1),
        "nlm": lambda v, s: r.denoise_nl_means(v, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6,
                                               fast_mode=True, channel_axis=-1),
        "wavelet": lambda v, s: r.denoise_wavelet(v, sigma=s, channel_axis=-1, convert2ycbcr=True,
                                                  method="BayesShrink", mode="soft", rescale_sigma=True),
        "bm_bilateral": lambda v, s: r.denoise_bilateral(v, sigma_color=2.5 * s, sigma_spatial=1.5, channel_axis=-1),
    }


def when_to_denoise(detector: MIMDetector, root: Path, clean_noises: list[float]) -> dict:
    """Per variant of the Wiener step (never; the noise in excess of each ``clean_noises`` level, 0 = the
    full estimate; only for views above the clean range): the dev mean AUROC over the DermNet dev classes
    (all their photos), the share of DermNet dev photos called mpox-like, and the share of mpox val photos
    called mpox-like under added noise, each at the variant's own threshold (the largest clean mpox val
    score, the card's rule)."""
    pre = detector.config.preprocess
    val = [to_view(decode_image(root / p), pre) for p in detector.card["split"]["val"]]
    dev = {c: torch.stack([view_tensor(to_view(decode_image(p), pre)) for p in sorted((root / "DermNetNZ" / c).iterdir())])
           for c in DEV_CLASSES}
    wiener = detector.with_measure(denoise="wiener")
    variants = {"never": detector}
    for level in clean_noises:
        variants[f"excess over {level}"] = wiener.with_measure()
        variants[f"excess over {level}"].gate = replace(detector.gate, clean_noise=level)
    full = variants.get("excess over 0.0") or wiener
    above = wiener.with_measure()
    above.denoised = lambda views, noise=None: torch.stack([  # type: ignore[method-assign]
        full.denoised(v[None])[0] if view_noise(to_uint8(v)) > detector.gate.max_noise else v for v in views])
    variants["above the clean range only"] = above
    results: dict = {}
    for name, det in variants.items():
        positives = det.score_views(torch.stack([view_tensor(v) for v in val]))
        threshold = float(positives.max())
        aurocs, called = [], []
        for views in dev.values():
            negatives = det.score_views(views)
            aurocs.append(roc_auc_score(np.r_[np.ones(len(positives)), np.zeros(len(negatives))],
                                        -np.r_[positives, negatives]))
            called.append(negatives <= threshold)
        row = {"dev_mean_auroc": round(float(np.mean(aurocs)), 4),
               "dermnet_dev_called": round(float(np.concatenate(called).mean()), 3)}
        for std in (0.01, 0.02, 0.04, 0.08):
            noisy = torch.stack([view_tensor(add_noise(v, std, np.random.default_rng([7, i]))) for i, v in enumerate(val)])
            row[f"mpox_val_called_std_{std}"] = round(float((det.score_views(noisy) <= threshold).mean()), 3)
        results[name] = row
        print(name, json.dumps(row), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--part", choices=("which", "when"), default="which")
    parser.add_argument("--clean-noise", type=float, nargs="*", default=[0.0, 0.0029, 0.0058, 0.0108],
                        help="for --part when: levels to try (0 and the 50th/75th/95th percentiles of the mpox "
                             "train+val photos' noise)")
    parser.add_argument("--out", default="runs/denoise_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector = MIMDetector.load(args.weights).with_measure(denoise="none")
    limit = GateThresholds.from_card(detector.card).max_noise
    pre, root = detector.config.preprocess, Path(args.data)
    if args.part == "when":
        results = when_to_denoise(detector, root, args.clean_noise)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
        return
    positives = [decode_image(root / p) for p in detector.card["split"]["val"]]
    negatives = [decode_image(p) for p in dev_class_paths(root, args.per_class)]
    photos = positives + negatives
    truth = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    auroc = lambda s: round(float(roc_auc_score(truth, -s)), 4)  # noqa: E731 - lower = mpox
    fns = {k: f for k, f in denoisers().items() if not args.only or k in args.only}
    # the undenoised measure's own threshold (the card's rule: the largest clean mpox val score)
    mpox_threshold = float(detector.score_views(torch.stack([view_tensor(to_view(p, pre)) for p in positives])).max())
    results: dict = {"n_pos": len(positives), "n_neg": len(negatives), "limit": limit, "conditions": {}}
    for name, condition in CONDITIONS.items():
        views = [to_view(p, pre) if condition is None else corrupted_view(p, *condition, 500 + i, pre)
                 for i, p in enumerate(photos)]
        sigmas = np.array([noise_sigma(luma_of(v)) for v in views])
        noisy = sigmas > limit
        row = {"share_denoised": round(float(noisy.mean()), 3),
               "mpox_mean_sigma": round(float(sigmas[truth == 1].mean()), 4),
               "shipped": auroc(detector.score_views(torch.stack([view_tensor(v) for v in views])))}
        for key, f in fns.items():
            out = []
            for v, s, n in zip(views, sigmas, noisy):
                x = v.astype(np.float32) / 255.0
                out.append(torch.from_numpy(np.clip(f(x, s * LUMA_TO_CHANNEL), 0, 1)).permute(2, 0, 1).float()
                           if n else view_tensor(v))
            scores = detector.score_views(torch.stack(out))
            row[key] = auroc(scores)
            row[key + "_mpox_called"] = round(float((scores[truth == 1] <= mpox_threshold).mean()), 3)
            row[key + "_dermnet_called"] = round(float((scores[truth == 0] <= mpox_threshold).mean()), 3)
        results["conditions"][name] = row
        print(name, json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
