"""Crashes (kill -9) in the middle of an import and of a burst of verdict writes, and backup/restore.

After every crash the database passes ``PRAGMA integrity_check`` and holds every verdict whose save was
confirmed to the writer (printed only after its transaction committed). The clinical CLI's ``backup``
uses SQLite's online backup API while writers run; ``restore`` puts a backup back, keeping what it replaces.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinical.cases import collect_images, import_images
from clinical.store import Store
from tests.conftest import REPO, dump

ENV = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
REVIEWERS = {"ana": "ana-secret-1", "ben": "ben-secret-1", "cy": "cy-secret-11"}
N_CASES = 40
ROUNDS = 5


def write_images(folder: Path, count: int, side: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label in ("Monkeypox", "Others"):
        (folder / label).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.clip(rng.normal((190, 130, 110), 30, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / ("Monkeypox" if i % 2 else "Others") / f"img_{seed}_{i}.png")


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A database with N_CASES small cases and three reviewers who can sign in."""
    write_images(tmp_path / "ds", N_CASES, 40, seed=1)
    store = Store(tmp_path / "study.sqlite")
    import_images(store, collect_images([tmp_path / "ds"]))
    for reviewer, credential in REVIEWERS.items():
        store.create_reviewer(reviewer, None, "reviewer", credential)
    return tmp_path / "study.sqlite"


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def stored_verdicts(db: Path) -> dict[int, tuple]:
    conn = sqlite3.connect(db)
    try:
        return {r[0]: tuple(r[1:]) for r in conn.execute(
            "SELECT id, case_id, phase, label, confidence, reviewer_id FROM verdicts")}
    finally:
        conn.close()


def writer(db: Path, reviewer: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.crash_writer", str(db), reviewer, REVIEWERS[reviewer]],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def confirmed(lines: list[str], reviewer: str) -> dict[int, tuple]:
    """{verdict id: (case, phase, label, confidence, reviewer)} of the saves a writer confirmed."""
    out = {}
    for line in lines:
        if line.startswith("confirmed "):
            _, verdict_id, case, phase, label_and_rest = line.rstrip("\n").split(" ", 4)
            label, confidence = label_and_rest.rsplit(" ", 1)
            out[int(verdict_id)] = (case, phase, label, int(confidence), reviewer)
    return out


def kill_after(processes: dict[str, subprocess.Popen], lead: str, saves: int) -> tuple[dict[int, tuple], int]:
    """Let ``lead`` confirm ``saves`` verdicts, then SIGKILL every writer; returns all confirmed saves and
    how many writers were killed (the others had already finished their queue)."""
    lines = {name: [] for name in processes}
    while sum(line.startswith("confirmed") for line in lines[lead]) < saves:
        line = processes[lead].stdout.readline()
        assert line, f"the writer stopped early: {processes[lead].stderr.read()}"
        lines[lead].append(line)
    for process in processes.values():
        os.kill(process.pid, signal.SIGKILL)
    result: dict[int, tuple] = {}
    killed = 0
    for name, process in processes.items():
        rest, errors = process.communicate(timeout=60)  # lines printed before the kill are still in the pipe
        assert process.returncode in (-signal.SIGKILL, 0) and "Traceback" not in errors, errors
        killed += process.returncode == -signal.SIGKILL
        result.update(confirmed(lines[name] + rest.splitlines(), name))
    assert processes[lead].returncode == -signal.SIGKILL  # killed mid-burst, not finished
    return result, killed


def test_kill_9_during_verdict_bursts_loses_no_confirmed_verdict(study: Path):
    all_confirmed: dict[int, tuple] = {}
    crashes = 0
    for round_ in range(ROUNDS):
        # the lead is the reviewer with the most verdicts still to give, started first: the others race it
        # (a save takes milliseconds), and a lead whose queue ran out could not be killed mid-burst
        done = Counter(v[4] for v in stored_verdicts(study).values())
        lead = min(REVIEWERS, key=lambda name: done[name])
        processes = {lead: writer(study, lead)}
        assert processes[lead].stdout.readline() == "signed-in\n", processes[lead].stderr.read()
        processes.update({name: writer(study, name) for name in REVIEWERS if name != lead})
        saved, killed = kill_after(processes, lead, saves=1 + 2 * round_)
        all_confirmed.update(saved)
        crashes += killed
        assert integrity(study) == "ok"
        stored = stored_verdicts(study)
        missing = {i: v for i, v in all_confirmed.items() if stored.get(i) != v}
        assert missing == {}, f"round {round_}: confirmed verdicts lost or changed: {missing}"
    # restarted after the crashes, every reviewer finishes the queue where they stopped
    for name in REVIEWERS:
        process = writer(study, name)
        out, errors = process.communicate(timeout=300)
        assert process.returncode == 0 and out.rstrip().endswith("done"), errors
    assert integrity(study) == "ok"
    stored = stored_verdicts(study)
    assert all(stored.get(i) == v for i, v in all_confirmed.items())
    assert len(stored) == len(REVIEWERS) * N_CASES * 2  # one unaided + one aided each: no duplicate, no gap
    assert crashes >= ROUNDS and len(all_confirmed) >= ROUNDS ** 2
    print(f"{crashes} writers killed mid-burst; {len(all_confirmed)} confirmed verdicts, none lost")


def test_kill_9_during_import_cases_leaves_the_database_as_it_was(study: Path, tmp_path: Path):
    process = writer(study, "ben")
    out, _ = process.communicate(timeout=300)  # ben's verdicts exist before the import
    before, wal = dump(study), Path(f"{study}-wal")
    write_images(tmp_path / "big", 240, 256, seed=2)  # ~50 MB of pixels: the import spills to the WAL
    command = [sys.executable, "-m", "clinical", "import-cases", "--db", str(study), "--label-from-folder",
               str(tmp_path / "big")]
    importer = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    wal_start = wal.stat().st_size if wal.exists() else 0
    deadline = time.monotonic() + 300
    while importer.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > wal_start + 4 * 1024 * 1024:  # mid-transaction: pages written
            break
        time.sleep(0.02)
    os.kill(importer.pid, signal.SIGKILL)
    _, errors = importer.communicate(timeout=60)
    assert importer.returncode == -signal.SIGKILL, f"the import finished before it could be killed: {errors}"
    assert integrity(study) == "ok"
    assert dump(study) == before  # nothing of the half-done import, ben's confirmed verdicts all there
    assert all(stored_verdicts(study).get(i) == v for i, v in confirmed(out.splitlines(), "ben").items())
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "imported 240 case(s)" in result.stdout, result.stderr
    assert integrity(study) == "ok"


def clinical(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clinical", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_online_backup_during_writes_and_restore(study: Path, tmp_path: Path):
    copy = tmp_path / "backup.sqlite"
    process = writer(study, "ana")
    lines = []
    while sum(line.startswith("confirmed") for line in lines) < 5:
        lines.append(process.stdout.readline())
        assert lines[-1], f"the writer stopped before 5 saves: {process.stderr.read()}"  # EOF, not a hang
    before_backup = confirmed(lines, "ana")
    open_write = sqlite3.connect(study, isolation_level=None)  # another writer, mid-transaction
    open_write.execute("BEGIN IMMEDIATE")
    open_write.execute("INSERT INTO reviewers (id, display_name, role, created_at) VALUES ('zed', 'Z', "
                       "'reviewer', 'now')")
    result = clinical("backup", "--db", str(study), "--out", str(copy))  # while ana may still be saving
    open_write.execute("COMMIT")
    open_write.close()
    out, _ = process.communicate(timeout=300)
    assert result.returncode == 0 and "integrity check ok" in result.stdout, result.stderr
    assert integrity(copy) == "ok" and not Path(f"{copy}-wal").exists()
    in_copy, in_db = stored_verdicts(copy), stored_verdicts(study)
    assert all(in_copy.get(i) == v for i, v in before_backup.items())  # every save confirmed before it
    assert all(in_db[i] == v for i, v in in_copy.items())  # a consistent snapshot of the live database
    assert len(in_db) == 2 * N_CASES
    reviewers = [r[0] for r in sqlite3.connect(copy).execute("SELECT id FROM reviewers")]
    assert "ana" in reviewers and "zed" not in reviewers  # nothing uncommitted, and no wait for the writer

    refused = clinical("backup", "--db", str(study), "--out", str(copy))
    assert refused.returncode == 2 and "never overwritten" in refused.stderr and "Traceback" not in refused.stderr
    snapshot, live = dump(copy), dump(study)
    refused = clinical("restore", "--from", str(copy), "--db", str(study))
    assert refused.returncode == 2 and "--replace" in refused.stderr and dump(study) == live
    bogus = tmp_path / "bogus.sqlite"
    bogus.write_bytes(b"SQLite format 3\0" + b"\x07" * 4000)
    refused = clinical("restore", "--from", str(bogus), "--db", str(study), "--replace")
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and dump(study) == live

    result = clinical("restore", "--from", str(copy), "--db", str(study), "--replace")
    assert result.returncode == 0, result.stderr
    assert dump(study) == snapshot and integrity(study) == "ok"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("study.sqlite.before-restore-")]
    assert len(kept) == 1 and dump(kept[0]) == live  # what was replaced is kept
    conn = sqlite3.connect(study)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM verdicts")  # the restored database still refuses to lose verdicts
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    fresh = tmp_path / "elsewhere" / "restored.sqlite"
    assert clinical("restore", "--from", str(copy), "--db", str(fresh)).returncode == 0
    assert dump(fresh) == snapshot
