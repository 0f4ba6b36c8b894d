"""Helpers the demo benchmarks share: a free port, waiting for the demo to serve, its memory."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the demo exited with code {process.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the demo did not answer at {url} within {timeout_s:.0f} s")


def proc_status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/<pid>/status (VmRSS: current resident set, VmHWM: its peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    return proc_status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float:
    return proc_status_mb(pid, "VmHWM")
