"""Which input size and grid for the appearance checks: cost of the feature network against its verdicts.

The appearance network was the largest share of the gates' time (issue #12 asks for <= 10 % over the
score alone): the 128 px model view is resized to 224 px before EfficientNet-Lite0. This script builds
the bank and both limits for each candidate :class:`~mim_core.appearance.AppearanceConfig` exactly as
``calibrate-appearance`` does (mpox train + val for the bank and the no-rash limit, DermNet dev for the
not-skin limit) and counts, per config:

- **selection sets** (design only): ``healthy_skin_dev`` called mpox-like; DermNet dev photos called "no
  rash visible"; and the *nested* leave-one-source-out miss rate of the mpox calibration photos: a
  gate-passing photo is missed when its distance (to the bank without its own source photo) is above
  the largest such distance of the *other* sources, i.e. the limit it would have met had its source not
  been there. This is the only mpox-side estimate that never reads the test photos (slightly optimistic:
  the other photos' distances still see the left-out source's cells).
- **report only** (never used to choose): mpox test called mpox-like, and the abnormal pictures given
  any verdict.

The MIM score does not depend on the appearance config, so each set is scored once.

    .venv/bin/python bench/appearance_size_dev.py --out runs/appearance_size_dev.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.acquisition import effective_resolution  # noqa: E402
from mim_core.appearance import AppearanceCheck, AppearanceConfig, PatchFeatures, nearest_distances  # noqa: E402
from mim_core.appearance import calibrate_card_appearance  # noqa: E402
from mim_core.benchmark.abnormal import abnormal_images  # noqa: E402
from mim_core.data import decode_image, preprocess, source_group  # noqa: E402
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402
from mim_core.verdict import Verdict  # noqa: E402

CANDIDATES = ((224, 7), (160, 7), (128, 7), (128, 8), (128, 4))


def scored_set(detector: MIMDetector, images: list) -> dict:
    """Views as the appearance check sees them, and the verdicts of the detector without the check."""
    photos = [decode_image(i) for i in images]
    views = torch.stack([preprocess(p, detector.config.preprocess) for p in photos])
    resolutions = [effective_resolution(p, detector.config.preprocess) for p in photos]
    judgements, _, _ = detector.judge(views, resolutions)
    _, _, _, seen = detector.refusals(views, resolutions)
    return {"seen": seen, "verdicts": [j.decision.verdict for j in judgements]}


def with_check(scored: dict, check: AppearanceCheck) -> list[Verdict]:
    """The verdicts once the appearance check ``check`` is applied (as in ``MIMDetector.judge``)."""
    verdicts = list(scored["verdicts"])
    passing = [i for i, v in enumerate(verdicts) if not v.is_refusal]
    distances = check.distances(scored["seen"][passing]) if passing else []
    for i, d in zip(passing, distances):
        if d > check.skin_limit:
            verdicts[i] = Verdict.UNUSABLE
        elif verdicts[i] is Verdict.MPOX_LIKE and d > check.no_rash_threshold:
            verdicts[i] = Verdict.NO_RASH
    return verdicts


def nested_loso_misses(detector: MIMDetector, config: AppearanceConfig, calibration: dict, groups: list[str]) -> dict:
    """Gate-passing mpox calibration photos above the no-rash limit set without their own source photo."""
    patches = PatchFeatures(config)(calibration["seen"])
    bank_groups = np.repeat(np.asarray(groups), patches.shape[1])
    loo = nearest_distances(patches, patches.flatten(0, 1), bank_groups, groups)
    passing = np.array([not v.is_refusal for v in calibration["verdicts"]])
    g = np.asarray(groups)
    misses = [bool(loo[i] > loo[passing & (g != g[i])].max()) for i in np.flatnonzero(passing)]
    return {"n": len(misses), "missed": int(sum(misses)), "rate": round(float(np.mean(misses)), 4)}


def network_ms(config: AppearanceConfig, n: int = 30) -> float:
    """Median time of the feature network on one 128 px view."""
    features, view = PatchFeatures(config), torch.rand(1, 3, 128, 128)
    features(view)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        features(view)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--healthy", default="../shared/healthy_skin_dev/Normal")
    parser.add_argument("--out", default="runs/appearance_size_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    weights, root = Path(args.weights), Path(args.data)
    detector = MIMDetector.load(weights)
    plain = MIMDetector(detector.generator, detector.config, detector.threshold, detector.card)  # no check
    split = detector.card["split"]
    calibration_paths = split["train"] + split["val"]
    sets = {
        "healthy_skin_dev": sorted(Path(args.healthy).iterdir()),
        "dermnet_dev": dev_class_paths(root),
        "mpox_calibration": [root / p for p in calibration_paths],
        "mpox_test": [root / p for p in split["test"]],
        "abnormal": [a.image for a in abnormal_images(0)],
    }
    scored = {name: scored_set(plain, images) for name, images in sets.items()}
    groups = [source_group(*Path(p).parts[-3:]) for p in calibration_paths]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, grid in CANDIDATES:
            config = AppearanceConfig(input_size=size, grid=grid)
            for f in weights.parent.glob(f"{weights.stem}*"):
                shutil.copy(f, tmp)
            copy = Path(tmp) / weights.name
            card = calibrate_card_appearance(str(copy), str(root), config)
            check = AppearanceCheck.from_card(card, copy.parent)
            verdicts = {name: with_check(s, check) for name, s in scored.items()}
            count = lambda name, *vs: sum(v in vs for v in verdicts[name])  # noqa: E731
            results.append({
                "input_size": size, "grid": grid, "network_ms": network_ms(config),
                "no_rash_threshold": check.no_rash_threshold, "skin_limit": check.skin_limit,
                "selection": {
                    "healthy_mpox_like": f"{count('healthy_skin_dev', Verdict.MPOX_LIKE)}/{len(sets['healthy_skin_dev'])}",
                    "healthy_no_rash": count("healthy_skin_dev", Verdict.NO_RASH),
                    "dermnet_dev_no_rash": f"{count('dermnet_dev', Verdict.NO_RASH)}/{len(sets['dermnet_dev'])}",
                    "dermnet_dev_mpox_like": count("dermnet_dev", Verdict.MPOX_LIKE),
                    "nested_loso_mpox": nested_loso_misses(plain, config, scored["mpox_calibration"], groups)},
                "report_only": {
                    "mpox_test_mpox_like": f"{count('mpox_test', Verdict.MPOX_LIKE)}/{len(sets['mpox_test'])}",
                    "abnormal_judged": f"{sum(not v.is_refusal for v in verdicts['abnormal'])}/{len(sets['abnormal'])}"}})
            print(json.dumps(results[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
