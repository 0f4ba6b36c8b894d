"""The Batch tab's handler: files and zips in, one row per photo, a CSV out; uploads deleted."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from demo import batch
from mim_core.detector import Verdict
from tests.demo_server import EXAMPLE, bad_inputs
from tests.conftest import located

UNUSABLE = Verdict.UNUSABLE.value


def _upload(root: Path, name: str, data: bytes) -> str:
    folder = root / f"u{len(list(root.iterdir()))}"
    folder.mkdir()
    (folder / name).write_bytes(data)
    return str(folder / name)


def test_files_and_a_zip_give_one_row_per_photo_and_are_deleted(detector, data_root: Path, tmp_path: Path):
    photos = [located(p) for p in detector.card["split"]["test"][:3]]
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(photos[1], "visit/left_arm.jpg")
        zf.write(photos[2], "visit/right_arm.jpg")
        zf.writestr("visit/", "")
        zf.writestr("__MACOSX/visit/._left_arm.jpg", b"junk")
        zf.writestr("visit/.DS_Store", b"junk")
        zf.writestr("visit/readme.txt", b"not a photo")
    uploads = [_upload(tmp_path, "first.jpg", photos[0].read_bytes()),
               _upload(tmp_path, "photos.zip", archive.read_bytes()),
               _upload(tmp_path, "broken.jpg", bad_inputs(EXAMPLE)["truncated.jpg"])]
    seen = []
    rows, skipped = batch.analyse_batch(detector, uploads, str(tmp_path), progress=lambda f, d: seen.append(f))
    assert skipped == 0
    assert [r.name for r in rows] == ["first.jpg", "photos.zip/visit/left_arm.jpg", "photos.zip/visit/right_arm.jpg",
                                      "photos.zip/visit/readme.txt", "broken.jpg"]
    for row, photo in zip(rows[:3], photos):
        analysis = detector.analyze(photo)  # a photo the acquisition gate refuses has no score
        assert row.verdict == analysis.verdict.value and row.quality.startswith("noise=")
        if analysis.verdict.is_refusal:
            assert row.score is None and row.reason == analysis.reason
        else:
            assert row.score == pytest.approx(analysis.score, abs=1e-9)
        assert row.thumbnail.startswith("data:image/jpeg;base64,")
    assert rows[3].verdict == UNUSABLE and "not an image format" in rows[3].reason and rows[3].score is None
    assert rows[4].verdict == UNUSABLE and "damaged or incomplete" in rows[4].reason
    assert seen == sorted(seen) and seen[0] == 0 and len(seen) == 5  # progress moves forward per photo
    assert not any(Path(u).exists() for u in uploads)

    frame = batch.table(rows)
    assert list(frame.columns) == batch.COLUMNS and len(frame) == 5
    assert frame["photo"][0].startswith("![1](data:image/jpeg;base64,") and frame["photo"][3] == ""
    assert "5 photo(s)" in batch.summary(rows, 0)
    assert "0 " not in batch.summary(rows, 0)  # only the verdicts that occur are counted
    # a phone shows the verdict without scrolling sideways: it comes before the file name and the reason
    assert batch.COLUMNS.index("verdict") < min(batch.COLUMNS.index("file"), batch.COLUMNS.index("reason"))
    assert list(frame.iloc[3][["verdict", "file"]]) == [UNUSABLE, "photos.zip/visit/readme.txt"]


def test_csv_has_every_row_and_defuses_formulas(tmp_path: Path):
    rows = [batch.BatchRow(1, "=HYPERLINK(\"x\")", 0.25, "mpox-like", "ok"),
            batch.BatchRow(2, "b.jpg", None, UNUSABLE, "-too small")]
    path = batch.write_csv(rows, 1.5, tmp_path / "out" / batch.CSV_NAME, "MIM alone")
    with open(path, newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [r["index"] for r in records] == ["1", "2"] and list(records[0]) == batch.CSV_COLUMNS
    assert records[0]["file"].startswith("'=") and records[1]["reason"].startswith("'-")
    assert records[0]["score"] == "0.250000" and records[1]["score"] == "" and records[0]["threshold"] == "1.500000"
    assert {r["verdict_model"] for r in records} == {"MIM alone"}


def test_damaged_zip_and_oversized_batch_are_explained(detector, tmp_path: Path, monkeypatch):
    damaged = _upload(tmp_path, "archive.zip", b"PK\x03\x04 not really a zip")
    rows, _ = batch.analyse_batch(detector, [damaged], str(tmp_path))
    assert len(rows) == 1 and rows[0].verdict == UNUSABLE and "damaged" in rows[0].reason

    monkeypatch.setattr(batch, "MAX_BATCH_PHOTOS", 2)
    uploads = [_upload(tmp_path, f"{i}.jpg", EXAMPLE.read_bytes()) for i in range(3)]
    rows, skipped = batch.analyse_batch(detector, uploads, str(tmp_path))
    assert len(rows) == 2 and skipped == 1 and "1 more were not analysed" in batch.summary(rows, skipped)
    assert not any(Path(u).exists() for u in uploads)  # even the photos left out are deleted


def test_empty_batch_says_what_to_do(detector, tmp_path: Path):
    rows, skipped = batch.analyse_batch(detector, [], str(tmp_path))
    assert rows == [] and skipped == 0 and "No photos received" in batch.summary(rows, skipped)


def _batch_handler(detector, screening):
    """The Batch tab's event function of a demo offering two verdict models (the default: the probe's)."""
    from demo.app import build_demo, verdict_label

    choices = {verdict_label(screening, default=True): screening, verdict_label(detector): detector}
    demo = build_demo(detector=screening, choices=choices)
    fn = next(f.fn for f in demo.fns.values() if f.api_name == "analyze_batch")
    return fn, list(choices)


def test_the_batch_is_judged_by_the_verdict_model_chosen(detector, screening, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # the demo's upload folder, whose files it deletes
    handler, (probe_label, mim_label) = _batch_handler(detector, screening)
    photos = [located(p) for p in detector.card["split"]["test"][:2]]
    for label, analyser in ((probe_label, screening), (mim_label, detector)):
        uploads = [_upload(tmp_path, p.name, p.read_bytes()) for p in photos]
        summary, frame, csv_path = handler(uploads, label, progress=lambda *a, **k: None)
        assert f"Verdicts by: {label}" in summary
        assert list(frame["score"]) == pytest.approx([round(analyser.analyze(p).score, 4) for p in photos], abs=1e-4)
        with open(csv_path, newline="") as handle:
            records = list(csv.DictReader(handle))
        assert {r["verdict_model"] for r in records} == {label}
        assert [float(r["threshold"]) for r in records] == pytest.approx([analyser.threshold] * len(photos), abs=1e-6)
        assert not any(Path(u).exists() for u in uploads)

    uploads = [_upload(tmp_path, photos[0].name, photos[0].read_bytes())]
    summary, frame, csv_path = handler(uploads, "Cat detector", progress=lambda *a, **k: None)
    assert "No verdict model is called 'Cat detector'" in summary and probe_label in summary
    assert frame.empty and csv_path is None and not Path(uploads[0]).exists()
