"""Issue #3 ladder: dev-class AUROC of one inpainter (and optional background reference) without touching
the test classes. Measures only mpox train/val and the 10 DermNet dev classes (~470 images instead of
~1170), with the same functions as ``python -m mim_core evaluate``; writes the dev table and the raw
measurements.

    python bench/ladder_dev.py --weights runs/ladder/long128/model.pt --reference runs/ladder/bg4/model.pt \
        --out runs/ladder/dev_long128_bg4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mim_core import report  # noqa: E402
from mim_core.data import scan_dataset  # noqa: E402
from mim_core.detector import MIMDetector, load_background  # noqa: E402
from mim_core.evaluation.evaluate import compute_scores, measure_all  # noqa: E402
from mim_core.protocol import assign_roles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--reference", help="background reference inpainter (adds mim:*/background)")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-class-limit", type=int,
                        help="first N photos of each dev class only (for slow models; noisier AUROC)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    detector = MIMDetector.load(args.weights, require_threshold=False)
    if args.reference:
        detector.background = load_background(Path(args.reference), detector.config, None)
    table = assign_roles(scan_dataset(args.data), detector.card["split"])
    table = table[table["role"].isin(["mpox_train", "mpox_val", "dev"])].reset_index(drop=True)
    if args.per_class_limit:
        table = table[(table["role"] != "dev") | (table.groupby("class").cumcount() < args.per_class_limit)]
        table = table.reset_index(drop=True)
    started = time.time()
    measured = measure_all(detector, args.data, table)
    seconds = time.time() - started
    _, dev = report.orient(compute_scores(measured), table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    measured.to_csv(out / "measurements.csv", index=False)
    rows = dev.sort_values("dev_mean_auroc", ascending=False).to_dict("records")
    (out / "dev.json").write_text(json.dumps({
        "weights": args.weights, "reference": args.reference, "images": len(table), "per_class_limit": args.per_class_limit,
        "measure_seconds": round(seconds, 1), "threads": args.threads, "dev": rows}, indent=2) + "\n")
    for row in rows:
        print(f"{row['dev_mean_auroc']:.3f}  {row['score']}" + ("  (reversed)" if row["mpox_when"] == "higher" else ""))


if __name__ == "__main__":
    main()
