"""CSV files the clinical module exports, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return can be run as a formula by
Excel, LibreOffice or Google Sheets (CSV / formula injection: a case file named ``=HYPERLINK(...)``, a
reviewer comment, a reviewer id). Such text cells get a leading ``'``, which spreadsheets show as text and
never evaluate. Numbers (int / float values) are written as numbers, so ``-0.25`` stays a number; a text
cell that is a plain decimal number (``-12``, ``+0.5``, ``-1e-3``) cannot be a formula and is kept too.
Header cells are treated like any other text (column names can contain reviewer ids).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet will not evaluate it: text starting with a formula trigger gets a ``'``."""
    if isinstance(value, str) and value[:1] in TRIGGERS and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` (dicts; keys outside ``columns`` are ignored, missing ones left empty) as UTF-8 CSV."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([safe_cell(c) for c in columns])
        for row in rows:
            writer.writerow([safe_cell(row.get(c, "")) for c in columns])
    return path
