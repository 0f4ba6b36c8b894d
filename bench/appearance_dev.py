"""Verdict counts of the shipped detector on the appearance checks' design sets, and on mpox test.

Design sets (the checks were chosen on them; never in the bank; the DermNet dev photos set the not-skin
limit, healthy skin sets nothing): shared/healthy_skin_dev and the 10 DermNet dev classes (the first
``--per-class`` photos each). Mpox test is held out from everything.

    .venv/bin/python bench/appearance_dev.py --out runs/appearance_dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core.detector import MIMDetector  # noqa: E402
from mim_core.protocol import dev_class_paths  # noqa: E402
from mim_core.verdict import Verdict  # noqa: E402


def counts(detector: MIMDetector, paths: list[Path]) -> dict:
    """Verdict counts, and what they were before the no-rash check (it only overrides mpox-like calls)."""
    verdicts = Counter()
    for start in range(0, len(paths), 16):
        verdicts.update(a.verdict for a in detector.analyze_batch(paths[start:start + 16]))
    before = Counter({Verdict.MPOX_LIKE if v is Verdict.NO_RASH else v: 0 for v in verdicts})
    for verdict, n in verdicts.items():
        before[Verdict.MPOX_LIKE if verdict is Verdict.NO_RASH else verdict] += n
    return {"n": len(paths), "verdicts": {v.value: n for v, n in verdicts.items()},
            "without_no_rash_check": {v.value: n for v, n in before.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/mim_gan.pt")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--healthy", default="../shared/healthy_skin_dev/Normal")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--out", default="runs/appearance_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector = MIMDetector.load(args.weights)
    root = Path(args.data)
    sets = {
        "healthy_skin_dev": sorted(Path(args.healthy).iterdir()),
        "dermnet_dev": dev_class_paths(root, args.per_class),
        "mpox_test": [root / p for p in detector.card["split"]["test"]],
    }
    results = {name: counts(detector, paths) for name, paths in sets.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
