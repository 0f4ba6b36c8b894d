"""Time one full MIM analysis (decode, preprocess, every mask of the bank, measure, verdict) per photo.

Target (issue #2): <= 250 ms per 224 px photo on 2 CPU threads.

    .venv/bin/python bench/bench_analysis.py [--weights weights/mim_gan.pt] [--n 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mim_core.detector import MIMDetector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(REPO / "weights" / "mim_gan.pt"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    detector = MIMDetector.load(args.weights, threads=args.threads)
    data = Path(args.data)
    sets = {
        "MSLD 224x224": sorted((data / "MSLD_v1" / "Monkeypox").glob("*.jpg"))[: args.n],
        "DermNet 640x480": sorted((data / "DermNetNZ" / "Orf").glob("*.jpg"))[: args.n],
    }
    detector.analyze(sets["MSLD 224x224"][0])  # warm-up: first call allocates
    report = {"threads": args.threads, "masks": int(detector.bank.shape[0] * detector.bank.shape[1]),
              "model_px": detector.config.preprocess.size}
    for name, paths in sets.items():
        times = []
        for path in paths:
            start = time.perf_counter()
            detector.analyze(path)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        report[name] = {"n": len(times), "median_ms": round(statistics.median(times), 1),
                        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1), "max_ms": round(times[-1], 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
