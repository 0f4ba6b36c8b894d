"""The bad-input corpus (tests/bad_inputs.py) through the three ways in: the ``mim_core score`` command,
the demo's ``/analyze`` endpoint and ``clinical import-cases``.

Each input gets a sentence or a verdict, never a traceback; the process keeps serving; a rejected import
leaves the database exactly as it was; decompression bombs are refused before any pixel is decoded.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from mim_core.data import IMAGE_SUFFIXES, ImageDecodeError, decode_image
from mim_core.detector import Verdict
from tests.bad_inputs import ANALYSED, REFUSED, TOO_LARGE, BadInput, corpus, write_corpus
from tests.conftest import REPO, dump
from tests.demo_server import EXAMPLE

VERDICTS = {v.value for v in Verdict}
ENV = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
CLI_PEAK_RSS_MB = 1500  # a decoded 30000x30000 bomb alone would be 2700 MB
# argv: PEAK_FILE COMMAND...; runs COMMAND, writes its peak RSS (KiB) to PEAK_FILE, exits with its status
PEAK_RSS_LAUNCHER = """import os, pathlib, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
pathlib.Path(sys.argv[1]).write_text(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=ENV)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Error:" not in text.replace("error: ", ""), text[-3000:]


def check_answer(item: BadInput, verdict: str | None, score: float | None, message: str) -> None:
    """A refused input gets its sentence; an odd-but-valid one a verdict, with a finite score unless the
    quality gate refused the picture before the model (e.g. a grayscale one): then no score and a reason."""
    if item.expect == REFUSED:
        assert verdict in (None, Verdict.UNUSABLE.value) and item.message in message, (item.kind, message)
        assert message.strip() and message.strip()[-1] in ".)", (item.kind, message)
    elif Verdict(verdict).is_refusal:
        assert score is None and message.strip(), (item.kind, score, message)
    else:
        assert verdict in VERDICTS, (item.kind, verdict, message)
        assert score is not None and math.isfinite(score), (item.kind, score)


def test_the_corpus_has_at_least_30_kinds():
    items = corpus(EXAMPLE)
    assert len(items) >= 30
    assert sum(i.expect == REFUSED for i in items) >= 15 and sum(i.expect == ANALYSED for i in items) >= 15


def test_bombs_are_refused_before_any_pixel_is_decoded(monkeypatch):
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    bombs = [i for i in corpus(EXAMPLE) if "bomb" in i.kind]
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert len(bombs) == 3
    for bomb in bombs:
        with pytest.raises(ImageDecodeError, match=TOO_LARGE):
            decode_image(bomb.data)


def test_corpus_through_the_score_command(tmp_path: Path):
    files = write_corpus(tmp_path / "corpus", EXAMPLE)
    folder = tmp_path / "nested" / "folder.jpg"  # a folder that looks like a photo, found by the folder scan
    folder.mkdir(parents=True)
    (tmp_path / "corpus" / "sub").mkdir()
    dotted = tmp_path / "corpus" / "sub" / ".." / "photo.webp"  # a path through ../
    stdout, stderr, peak = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "peak_rss_kb"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        # started from a small launcher: a child forked straight from this (large) test process would count
        # the parent's pages in its peak RSS before exec
        process = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_LAUNCHER, str(peak), sys.executable, "-m", "mim_core", "score", "--json",
             "--threads", "1", *files, str(folder.parent), str(dotted)], cwd=REPO, stdout=out, stderr=err, env=ENV)
    assert process.returncode == 1, stderr.read_text()  # some files were unreadable: status 1, not a crash
    no_traceback(stderr.read_text())
    lines = [json.loads(line) for line in stdout.read_text().splitlines()]
    by_path = {line["path"]: line for line in lines}
    assert len(lines) == len(files) + 2 == len(by_path)
    for path, item in files.items():
        line = by_path[path]
        check_answer(item, line.get("verdict"), line.get("score"), line.get("error") or line.get("reason"))
    assert "is a folder" in by_path[str(folder)]["error"]
    assert by_path[str(dotted)]["verdict"] in VERDICTS
    assert int(peak.read_text()) / 1024 < CLI_PEAK_RSS_MB  # the bombs never reached the decoder


def test_corpus_through_the_demo_api(detector, tmp_path: Path):
    from gradio_client import Client, handle_file

    from demo.handlers import INTERNAL_ERROR
    from tests.demo_server import running_demo

    files = write_corpus(tmp_path / "corpus", EXAMPLE)
    uploads = tmp_path / "uploads"
    with running_demo(detector, uploads) as (url, _demo):
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        for path, item in files.items():
            *images, score, _threshold, verdict, reason, evidence = client.predict(handle_file(path),
                                                                                   api_name="/analyze")
            assert evidence["refused"] == (verdict != "" and Verdict(verdict).is_refusal), item.kind
            assert reason != INTERNAL_ERROR, item.kind  # every input is understood, none hits the catch-all
            check_answer(item, verdict, score, reason)
            assert (images == [None] * 4) == (item.expect == REFUSED), item.kind
        again = client.predict(handle_file(str(EXAMPLE)), api_name="/analyze")  # still serving
        assert again[6] in VERDICTS and again[4] is not None
    leftovers = [p.name for p in uploads.rglob("*") if p.is_file() and p.name in {i.name for i in files.values()}]
    assert leftovers == []  # every upload was deleted after its analysis, refused or not


def test_corpus_through_import_cases(tmp_path: Path):
    db = tmp_path / "study.sqlite"
    files = write_corpus(tmp_path / "ds" / "Others", EXAMPLE)
    files = {p: i for p, i in files.items() if Path(p).suffix.lower() in IMAGE_SUFFIXES}
    result = run("-m", "clinical", "import-cases", "--db", str(db), "--label-from-folder", str(tmp_path / "ds"))
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    refused = [i for i in files.values() if i.expect == REFUSED]
    distinct = {i.data for i in files.values() if i.expect == ANALYSED}
    assert f"imported {len(distinct)} case(s); {len(refused)} excluded" in result.stdout
    conn = sqlite3.connect(db)
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT c.source_path, c.excluded_reason, i.png FROM cases c LEFT JOIN case_images i ON i.case_id = c.id")}
    conn.close()
    for path, item in files.items():
        stored = rows.get(str(Path(path).resolve()))
        if stored is None:  # same bytes as another corpus file: stored once, under the first name
            assert item.expect == ANALYSED and item.data in distinct
            continue
        reason, png = stored
        if item.expect == REFUSED:
            assert png is None and item.message in reason, (item.kind, reason)
            assert f"excluded: {Path(path).resolve()}: {reason}" in result.stderr
        else:
            image = Image.open(io.BytesIO(png))
            assert reason is None and image.format == "PNG" and image.mode == "RGB", item.kind
            assert not image.getexif() and not set(image.info) - {"dpi"}, (item.kind, image.info)  # no metadata

    # A rejected import (a photo already stored as 'not mpox' arrives as mpox) leaves the database as it was
    before = dump(db)
    conflict = tmp_path / "more" / "Monkeypox"
    write_corpus(conflict, EXAMPLE)
    result = run("-m", "clinical", "import-cases", "--db", str(db), "--label-from-folder", str(tmp_path / "more"))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "instead of" in result.stderr
    no_traceback(result.stderr)
    assert dump(db) == before

    # A corpus file given as the database is refused in a sentence and left untouched
    fake = tmp_path / "ds" / "Others" / "truncated.jpg"
    original = fake.read_bytes()
    result = run("-m", "clinical", "import-cases", "--db", str(fake), "--label-from-folder", str(tmp_path / "ds"))
    assert result.returncode == 2 and "is not a usable clinical database" in result.stderr
    no_traceback(result.stderr)
    assert fake.read_bytes() == original


def test_a_file_that_cannot_be_read_refuses_the_whole_import(tmp_path: Path):
    from clinical.cases import import_images
    from clinical.store import ClinicalError, Store

    folder = tmp_path / "ds" / "Monkeypox"
    folder.mkdir(parents=True)
    good = folder / "photo.jpg"
    good.write_bytes(EXAMPLE.read_bytes())
    store = Store(tmp_path / "study.sqlite")
    with pytest.raises(ClinicalError, match="cannot be read .*nothing was imported"):
        import_images(store, [good, folder / "vanished.jpg"])
    assert store.cases() == []
