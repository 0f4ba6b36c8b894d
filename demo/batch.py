"""The Batch tab: many photos (files and/or .zip archives) -> one row per photo, and a CSV.

Photos are read one at a time (a batch of phone photos would not fit in memory decoded at once), and
every uploaded file is deleted once the batch is done, whatever happened. Zip members are read in
memory, never extracted, so a hostile archive cannot write outside a folder or fill the disk.
"""

from __future__ import annotations

import csv
import logging
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from mim_core import Analyser, ImageDecodeError, Verdict

from .handlers import INTERNAL_ERROR
from .uploads import MAX_UPLOAD_BYTES, UploadError, discard_upload, read_upload, upload_path
from .views import thumbnail_data_uri

log = logging.getLogger(__name__)

MAX_BATCH_PHOTOS = 200
# The verdict comes right after the thumbnail, so a phone (390 px) shows it without sideways scrolling.
COLUMNS = ["#", "photo", "verdict", "score", "file", "reason"]
DATATYPES = ["number", "markdown", "str", "number", "str", "str"]
COLUMN_WIDTHS = ["40px", "76px", "132px", "76px", "250px", "540px"]  # the verdict ends ~250 px from the left
CSV_COLUMNS = ["index", "file", "score", "threshold", "verdict_model", "verdict", "reason", "quality"]
CSV_NAME = "mim_batch_results.csv"

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class BatchItem:
    """One photo to analyse: its name for the table and how to get its bytes (or why it has none)."""

    name: str
    read: Callable[[], bytes] | None = None
    error: str = ""


@dataclass(frozen=True)
class BatchRow:
    index: int
    name: str
    score: float | None
    verdict: str
    reason: str
    thumbnail: str = ""  # data URI
    quality: str = ""  # the measured acquisition-quality values, "name=value; ..." (empty when unread)


def _zip_items(path: str, name: str, stack: ExitStack) -> Iterator[BatchItem]:
    """The photos inside a zip archive (folders, hidden files and macOS metadata skipped); the archive
    stays open until ``stack`` closes."""
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        yield BatchItem(name, error="This .zip file is damaged or not really a zip archive; create it again.")
        return
    for info in members:
        member = PurePosixPath(info.filename)
        if info.is_dir() or member.parts[0] == "__MACOSX" or member.name.startswith("."):
            continue
        label = f"{name}/{info.filename}"
        if info.flag_bits & 0x1:
            yield BatchItem(label, error="This file is password-protected inside the zip; zip it without a password.")
        elif info.file_size > MAX_UPLOAD_BYTES:
            yield BatchItem(label, error=f"This file is too large ({info.file_size // (1024 * 1024)} MB).")
        else:
            yield BatchItem(label, read=lambda info=info: archive.read(info))


def expand_uploads(uploads: Sequence[Any], stack: ExitStack) -> list[BatchItem]:
    """Uploaded files -> batch items, zips expanded in order (open until ``stack`` closes)."""
    items: list[BatchItem] = []
    for upload in uploads:
        path = upload_path(upload)
        if path is None:
            continue
        name = Path(path).name
        if name.lower().endswith(".zip"):
            items.extend(_zip_items(path, name, stack))
        else:
            items.append(BatchItem(name, read=lambda path=path: read_upload(path)))
    return items


def _analyse_item(detector: Analyser, index: int, item: BatchItem) -> BatchRow:
    unusable = Verdict.UNUSABLE.value
    if item.read is None:
        return BatchRow(index, item.name, None, unusable, item.error)
    try:
        analysis = detector.analyze(item.read())
    except (UploadError, ImageDecodeError) as err:
        return BatchRow(index, item.name, None, unusable, str(err))
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:  # a damaged zip member
        log.info("unreadable zip member %s: %s", item.name, err)
        return BatchRow(index, item.name, None, unusable, "This file is damaged inside the zip; zip it again.")
    except Exception:  # a bug must not end the batch or reach the user as a traceback
        log.exception("batch analysis failed")
        return BatchRow(index, item.name, None, unusable, INTERNAL_ERROR)
    score = analysis.score if np.isfinite(analysis.score) else None  # a refused photo has no score
    quality = "; ".join(f"{k}={v:.5g}" for k, v in analysis.quality.items())
    return BatchRow(index, item.name, score, analysis.verdict.value, analysis.reason,
                    thumbnail_data_uri(analysis.original), quality)


def analyse_batch(detector: Analyser, uploads: Sequence[Any], root: str, keep: frozenset[str] = frozenset(),
                  progress: Progress | None = None) -> tuple[list[BatchRow], int]:
    """Analyse every photo of the uploads, one at a time; returns the rows and how many photos were
    left out over :data:`MAX_BATCH_PHOTOS`. The uploaded files are deleted afterwards."""
    try:
        with ExitStack() as stack:
            return _analyse_items(detector, expand_uploads(uploads, stack), progress)
    finally:
        discard_uploads(uploads, root, keep)


def discard_uploads(uploads: Sequence[Any], root: str, keep: frozenset[str] = frozenset()) -> None:
    """Delete every uploaded file of a batch (inside ``root``, except the kept examples)."""
    for upload in uploads:
        discard_upload(upload_path(upload), root, keep=keep)


def _analyse_items(detector: Analyser, items: list[BatchItem], progress: Progress | None
                   ) -> tuple[list[BatchRow], int]:
    skipped = max(0, len(items) - MAX_BATCH_PHOTOS)
    items = items[:MAX_BATCH_PHOTOS]
    rows = []
    for index, item in enumerate(items, start=1):
        if progress:
            progress((index - 1) / len(items), f"Photo {index} of {len(items)}")
        rows.append(_analyse_item(detector, index, item))
    return rows, skipped


def table(rows: Sequence[BatchRow]) -> pd.DataFrame:
    """The results table; thumbnails are Markdown images with data URIs."""
    return pd.DataFrame(
        [[r.index, f"![{r.index}]({r.thumbnail})" if r.thumbnail else "", r.verdict,
          None if r.score is None else round(r.score, 4), r.name, r.reason] for r in rows],
        columns=COLUMNS,
    )


def summary(rows: Sequence[BatchRow], skipped: int, model: str = "") -> str:
    """One line for the page: the verdict counts, who gave the verdicts (``model``, a menu label) and what was left out."""
    if not rows:
        return "No photos received: choose image files or a .zip of photos, then press **Analyse all**."
    counts = {v.value: sum(r.verdict == v.value for r in rows) for v in Verdict}
    text = f"**{len(rows)} photo(s):** " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n)
    if model:
        text += f". Verdicts by: {model}"
    if skipped:
        text += (f". **{skipped} more were not analysed:** the limit is {MAX_BATCH_PHOTOS} photos per batch; "
                 "send the rest separately")
    return text + "."


def _csv_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in user-controlled text (a file named '=cmd|...')."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(rows: Sequence[BatchRow], threshold: float, path: Path, model: str = "") -> Path:
    """The rows as CSV at ``path``, each with the threshold and the verdict model (a menu label) that judged it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([r.index, _csv_cell(r.name), "" if r.score is None else f"{r.score:.6f}",
                             f"{threshold:.6f}", model, r.verdict, _csv_cell(r.reason), r.quality])
    return path
