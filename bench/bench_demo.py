"""Benchmark the running web demo: request-to-result time for one photo through gradio_client, and the
demo process's peak memory.

Starts ``app.py`` in a subprocess on a free loopback port (model loaded once at start-up), then:
  1. times ``/analyze`` for one photo N times (upload, analysis, the four panel PNGs downloaded);
  2. runs one ``/analyze_batch`` of M photos (to load memory as real use would);
  3. reads the server's peak resident memory (VmHWM from /proc; Linux only).

Targets (issue #4): <= 1 s per photo on 2 CPU cores; peak RSS <= 1.5 GB.

    .venv/bin/python -m bench.bench_demo [--photo PATH] [--n 20] [--batch 10] [--threads 2]
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
import time
from pathlib import Path

from bench.demo_process import free_port, peak_rss_mb, wait_until_up

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(REPO / "demo" / "examples" / "mpox_msld_P18_1.jpg"))
    parser.add_argument("--n", type=int, default=20, help="timed /analyze calls (after one warm-up)")
    parser.add_argument("--batch", type=int, default=10, help="photos in the /analyze_batch call (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="mim-bench-demo-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "MIM_THREADS": str(args.threads), "GRADIO_TEMP_DIR": str(work / "server"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(url, server)
        startup_s = time.perf_counter() - start
        client = Client(url, verbose=False, download_files=str(work / "client"))
        client.predict(handle_file(args.photo), api_name="/analyze")  # warm-up: first call allocates
        times = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            result = client.predict(handle_file(args.photo), api_name="/analyze")
            times.append(time.perf_counter() - t0)
            assert all(Path(p).is_file() for p in result[:4]), "panels missing from the response"
        batch_s = None
        if args.batch:
            photos = sorted((DATA / "MSLD_v1" / "Monkeypox").glob("*.jpg"))[: args.batch // 2]
            photos += sorted((DATA / "DermNetNZ" / "Orf").glob("*.jpg"))[: args.batch - len(photos)]
            t0 = time.perf_counter()
            client.predict([handle_file(str(p)) for p in photos], api_name="/analyze_batch")
            batch_s = time.perf_counter() - t0
        times.sort()
        report = {
            "photo": Path(args.photo).name,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "startup_s": round(startup_s, 2),
            "analyze_via_client_s": {"n": len(times), "median": round(statistics.median(times), 3),
                                     "p95": round(times[int(0.95 * (len(times) - 1))], 3),
                                     "min": round(times[0], 3), "max": round(times[-1], 3)},
            "batch": {"photos": args.batch, "seconds": round(batch_s, 2)} if batch_s is not None else None,
            "peak_rss_mb": round(peak_rss_mb(server.pid), 1),
            "targets": {"analyze_median_s": 1.0, "peak_rss_mb": 1536},
        }
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
