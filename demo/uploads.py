"""Reading and forgetting uploaded files.

Uploads are patient photos: each is read into memory once and its file deleted from the server's cache
straight away. The committed example photos are public and must stay (Gradio serves them again on
every click), so files whose bytes match an example are kept.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

# Larger than any photo worth analysing; Gradio's own max_file_size refuses bigger uploads earlier.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024


class UploadError(ValueError):
    """An upload could not be read; ``str(err)`` is a sentence for the user."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hashes(paths: Iterable[str | os.PathLike]) -> frozenset[str]:
    """sha256 of each file (used for the example photos that must never be deleted)."""
    return frozenset(sha256_bytes(Path(p).read_bytes()) for p in paths)


def upload_path(value: Any) -> str | None:
    """The server-side path of an upload as Gradio hands it over: a str path, a FileData-like dict
    (events run with ``preprocess=False``) or an object with ``.path`` / ``.name``. None when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, dict):
        return value.get("path") or None
    for attribute in ("path", "name"):
        if isinstance(getattr(value, attribute, None), str):
            return getattr(value, attribute)
    return None


def display_name(value: Any, path: str | None) -> str:
    """The name the user knows the file by (Gradio keeps the original name as the basename)."""
    if isinstance(value, dict) and value.get("orig_name"):
        return str(value["orig_name"])
    return Path(path).name if path else ""


def read_upload(path: str) -> bytes:
    """The bytes of an uploaded file.

    Raises:
        UploadError: the file is gone (already analysed and deleted), unreadable or too large.
    """
    try:
        size = os.path.getsize(path)
        if size > MAX_UPLOAD_BYTES:
            raise UploadError(f"The file is too large ({size // (1024 * 1024)} MB); send a photo under "
                              f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UploadError("This photo is no longer on the server (uploads are deleted right after analysis); "
                          "add it again.") from None
    except IsADirectoryError:
        raise UploadError("A folder was sent instead of a photo; send image files or a .zip.") from None
    except OSError as err:
        raise UploadError(f"The uploaded file could not be read ({err.strerror or err}); try again.") from None


def discard_upload(path: str | None, root: str | os.PathLike, data: bytes | None = None,
                   keep: frozenset[str] = frozenset()) -> None:
    """Delete an uploaded file (and its folder when emptied), unless its content is a kept example.

    Only files inside ``root`` (Gradio's upload folder) are ever deleted, so a path that points
    elsewhere cannot make the demo delete someone's file. ``data`` is the file's bytes when the caller
    already read them (saves a second read)."""
    if not path:
        return
    file = Path(path).resolve()
    root = Path(root).resolve()
    if root not in file.parents:
        return
    try:
        if keep:
            content = data if data is not None else file.read_bytes()
            if sha256_bytes(content) in keep:
                return
        file.unlink(missing_ok=True)
        if file.parent != root:
            file.parent.rmdir()  # Gradio puts each upload in its own folder; fails harmlessly if not empty
    except OSError:
        pass
