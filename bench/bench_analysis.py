"""Time one full MIM analysis (decode, preprocess, quality gate, every mask of the bank, measure, verdict)
per photo, in fp32 and (on CPUs with native bfloat16) bf16, beside a ResNet-18 forward pass of the same crop
measured in the same run.

Targets: <= 250 ms per 224 px photo on 2 CPU threads (issue #2); <= 5x a ResNet-18 forward (issues #13, #26),
for MIM alone and for what the demo runs (``Screening``: MIM's checks and panels + the probe's verdict);
the gates add <= 10 % (issue #12): the "overhead" rows compare the full analysis with the analysis as it
was before issue 12 (decode, preprocess, the usable-skin checks, score, verdict and the result's images;
no acquisition measurements, no denoising, no appearance checks), per precision; ``score_only`` (decode,
preprocess, score) is shown beside it.

    .venv/bin/python -m bench.bench_analysis [--weights weights/mim_gan.pt] [--verdict-weights weights/effnet_probe.pt]
                                             [--n 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision

from mim_core import MIMDetector, Screening
from mim_core.baselines.classifier import ClassifierDetector
from mim_core.data import decode_image, preprocess, to_uint8
from mim_core.gate import quality_gate
from mim_core.model import native_bf16

REPO = Path(__file__).resolve().parent.parent


class BeforeIssue12(MIMDetector):
    """The analysis as it was before issue 12: only the usable-skin checks run before the score."""

    def refusals(self, views, resolutions):
        return [quality_gate(to_uint8(v), None) for v in views], [{} for _ in views], {}, views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(REPO / "weights" / "mim_gan.pt"))
    parser.add_argument("--verdict-weights", default=str(REPO / "weights" / "effnet_probe.pt"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    precisions = ("fp32", "bf16") if native_bf16("cpu") else ("fp32",)  # emulated bf16 is no option to time
    detectors = {p: MIMDetector.load(args.weights, threads=args.threads, precision=p) for p in precisions}
    detector = detectors["fp32"]
    data = Path(args.data)
    sets = {
        "MSLD 224x224": sorted((data / "MSLD_v1" / "Monkeypox").glob("*.jpg"))[: args.n],
        "DermNet 640x480": sorted((data / "DermNetNZ" / "Orf").glob("*.jpg"))[: args.n],
    }
    report = {"cpu": f"{cpu_name()}, {torch.backends.cpu.get_cpu_capability()}, native bfloat16: {native_bf16('cpu')}",
              "threads": args.threads, "masks": int(detector.bank.shape[0] * detector.bank.shape[1]),
              "model_px": detector.config.preprocess.size}
    resnet = torchvision.models.resnet18(weights=None).eval()
    with torch.inference_mode():
        view = preprocess(decode_image(sets["MSLD 224x224"][0]), detector.config.preprocess).unsqueeze(0)
        resnet(view)
        report["resnet18_forward_ms"] = round(_median_ms(lambda: resnet(view), args.n), 1)
    probe = ClassifierDetector.load(args.verdict_weights)
    analysers = {**detectors,
                 **{f"{p}, screening (the demo)": Screening(d, probe) for p, d in detectors.items()}}
    for label, mim in analysers.items():
        mim.analyze(sets["MSLD 224x224"][0])  # warm-up: first call allocates
        for name, paths in sets.items():
            times = sorted(_time_ms(lambda path=path: mim.analyze(path)) for path in paths)
            median = statistics.median(times)
            report[f"{name}, {label}"] = {
                "n": len(times), "median_ms": round(median, 1), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                "max_ms": round(times[-1], 1), "x_resnet18": round(median / report["resnet18_forward_ms"], 2)}
    for (name, paths), (precision, mim) in itertools.product(sets.items(), detectors.items()):
        plain = MIMDetector(mim.generator, mim.config, mim.threshold, mim.card, precision=precision)  # no appearance
        undenoised = mim.with_measure(denoise="none")
        before = BeforeIssue12(mim.generator, undenoised.config, mim.threshold, mim.card, precision=precision)
        variants = {"score_only": lambda path: undenoised.score_tensors(
                        preprocess(decode_image(path), mim.config.preprocess).unsqueeze(0)),
                    "before_issue_12": before.analyze, "without_appearance_checks": plain.analyze, "full": mim.analyze}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(3):  # interleaved, so drifts of a shared machine hit every variant alike
            for path in paths:
                for key, call in variants.items():
                    times[key].append(_time_ms(lambda call=call, path=path: call(path)))
        medians = {f"{k}_ms": round(statistics.median(v), 1) for k, v in times.items()}
        report[f"{name}, {precision}, overhead of the gates"] = {
            **medians, "overhead": round(medians["full_ms"] / medians["before_issue_12_ms"] - 1, 3)}
    print(json.dumps(report, indent=2))


def cpu_name() -> str:
    """The CPU's model name (Linux), else its architecture: timings depend on it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def _time_ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def _median_ms(call, n: int) -> float:
    return statistics.median(_time_ms(call) for _ in range(n))


if __name__ == "__main__":
    main()
