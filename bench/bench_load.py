"""Load and leak check of the web demo: N concurrent ``gradio_client`` users, then many sequential
analyses while the server's memory is sampled.

Starts ``app.py`` in a subprocess on a free **loopback** port (127.0.0.1 only), then:
  1. ``--users`` clients in parallel, each sending ``--per-user`` photos to ``/analyze`` (distinct photos,
     cycled, so nothing is answered from a cache): failures, p50/p95/max latency, the server's RSS
     before and after;
  2. ``--sequential`` analyses one after another from one client, sampling the server's RSS every
     ``--sample-every`` requests: the growth over the run, a linear slope (MB per 100 requests, after
     the first sample) and the first request count at which RSS exceeded the post-warm-up baseline by
     ``--growth-mb`` (None: no growth visible).
Bounded: the whole run stops at ``--time-limit-s`` (requests not sent are reported as such), the queue
is the demo's own bounded queue, and the temporary upload folder is removed at the end.

    .venv/bin/python -m bench.bench_load [--users 8] [--per-user 25] [--sequential 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.demo_process import free_port, peak_rss_mb, rss_mb, wait_until_up

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
VERDICTS = {"mpox-like", "not mpox-like", "not a usable skin photo"}


def photos(limit: int) -> list[str]:
    """Distinct photos to send: the demo's examples, then MSLD and DermNet photos."""
    found = sorted(str(p) for p in (REPO / "demo" / "examples").glob("*.jpg"))
    for folder in ("MSLD_v1/Monkeypox", "MSLD_v1/Others", "DermNetNZ/Orf", "DermNetNZ/Psoriasis"):
        found += sorted(str(p) for p in (DATA / folder).glob("*.jpg"))
    return found[:limit]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


def latency_summary(times: list[float]) -> dict:
    return {"n": len(times), "p50_s": percentile(times, 0.5), "p95_s": percentile(times, 0.95),
            "max_s": round(max(times), 3) if times else None,
            "mean_s": round(statistics.fmean(times), 3) if times else None}


class Deadline:
    """A shared wall-clock limit."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        return time.monotonic() > self.end


def analyse(client, photo: str) -> tuple[float, str | None]:
    """One /analyze call: (seconds, None) on success or (seconds, what went wrong)."""
    from gradio_client import handle_file

    start = time.perf_counter()
    try:
        result = client.predict(handle_file(photo), api_name="/analyze")
    except Exception as err:  # noqa: BLE001 - a failed request is a measured outcome here
        return time.perf_counter() - start, f"{type(err).__name__}: {err}"[:200]
    elapsed = time.perf_counter() - start
    if result[6] not in VERDICTS:
        return elapsed, f"unexpected verdict {result[6]!r}"
    return elapsed, None


def concurrent_phase(url: str, work: Path, users: int, per_user: int, pool: list[str], deadline: Deadline) -> dict:
    from gradio_client import Client

    times: list[float] = []
    failures: list[str] = []
    skipped = [0]
    lock = threading.Lock()

    def user(index: int) -> None:
        client = Client(url, verbose=False, download_files=str(work / f"user{index}"))
        for j in range(per_user):
            if deadline.passed:
                with lock:
                    skipped[0] += per_user - j
                return
            elapsed, error = analyse(client, pool[(index * per_user + j) % len(pool)])
            with lock:
                times.append(elapsed)
                if error:
                    failures.append(error)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=users) as executor:
        list(executor.map(user, range(users)))
    wall = time.perf_counter() - start
    return {"users": users, "per_user": per_user, "requests": len(times), "failures": len(failures),
            "failure_examples": sorted(set(failures))[:5], "not_sent_time_limit": skipped[0],
            "wall_s": round(wall, 1), "throughput_per_s": round(len(times) / wall, 3) if wall else None,
            "latency": latency_summary(times)}


def sequential_phase(url: str, work: Path, n: int, every: int, growth_mb: float, pool: list[str], pid: int,
                     deadline: Deadline) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=str(work / "sequential"))
    times: list[float] = []
    failures: list[str] = []
    samples = [(0, round(rss_mb(pid), 1))]
    growth_at = None
    for i in range(1, n + 1):
        if deadline.passed:
            break
        elapsed, error = analyse(client, pool[i % len(pool)])
        times.append(elapsed)
        if error:
            failures.append(error)
        if i % every == 0 or i == n:
            samples.append((i, round(rss_mb(pid), 1)))
            if growth_at is None and samples[-1][1] - samples[0][1] > growth_mb:
                growth_at = i
    xs = [s[0] for s in samples[1:]]
    ys = [s[1] for s in samples[1:]]
    slope = None
    if len(xs) >= 2:
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs) * 100
    return {"requests": len(times), "requested": n, "failures": len(failures),
            "failure_examples": sorted(set(failures))[:5], "latency": latency_summary(times),
            "rss_samples_mb": samples, "rss_growth_mb": round(samples[-1][1] - samples[0][1], 1),
            "slope_mb_per_100_requests": round(slope, 2) if slope is not None else None,
            "growth_threshold_mb": growth_mb, "requests_until_growth_visible": growth_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--per-user", type=int, default=25)
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--sample-every", type=int, default=50)
    parser.add_argument("--growth-mb", type=float, default=50.0, help="RSS growth that counts as visible")
    parser.add_argument("--threads", type=int, default=1, help="MIM_THREADS for the server")
    parser.add_argument("--photos", type=int, default=60, help="distinct photos cycled through")
    parser.add_argument("--time-limit-s", type=float, default=1800, help="stop sending requests after this")
    parser.add_argument("--out", help="also write the JSON report here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mim-bench-load-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "MIM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
           "GRADIO_TEMP_DIR": str(work / "server"), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("MIM_CLINICAL_DB", None)
    server = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = Deadline(args.time_limit_s)
    try:
        wait_until_up(url, server)
        pool = photos(args.photos)
        from gradio_client import Client

        warm = Client(url, verbose=False, download_files=str(work / "warm"))
        for photo in pool[:3]:  # first calls allocate the model's buffers
            analyse(warm, photo)
        rss_before = rss_mb(server.pid)
        concurrent = concurrent_phase(url, work, args.users, args.per_user, pool, deadline)
        rss_after_concurrent = rss_mb(server.pid)
        sequential = sequential_phase(url, work, args.sequential, args.sample_every, args.growth_mb, pool,
                                      server.pid, deadline)
        report = {
            "server": {"threads": args.threads, "cpu_count": os.cpu_count(), "host": "127.0.0.1",
                       "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
            "photos_cycled": len(pool),
            "concurrent": {**concurrent, "rss_before_mb": round(rss_before, 1),
                           "rss_after_mb": round(rss_after_concurrent, 1)},
            "sequential": sequential,
            "peak_rss_mb": round(peak_rss_mb(server.pid), 1),
            "server_alive_at_end": server.poll() is None,
            "time_limit_hit": deadline.passed,
        }
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
