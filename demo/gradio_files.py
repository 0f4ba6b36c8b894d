"""Uploads served back to the browser without a window in which deleting them breaks the response.

The photo box shows an upload by fetching it from Gradio's file route while the Analyse handler reads
the same file and deletes it (uploads are patient photos). Gradio (6.31) checks that the file exists,
sends the headers, and only then opens it: an upload deleted in between (a file that is no photo is
refused in milliseconds, so this happens) ends the response half-sent and logs a FileNotFoundError
traceback. :func:`file_fetch` opens the file before any header is sent and streams from that open
handle, which deleting the file cannot take away; a file already gone gets Gradio's usual refusal.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Iterator

from gradio import route_utils, routes
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response, StreamingResponse

_GRADIO_FILE_FETCH = route_utils.file_fetch  # Gradio's own, which this wraps
CHUNK_BYTES = 64 * 1024


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_BYTES):
        yield chunk


def file_fetch(path_or_url: str, request: Any, blocks_or_config: Any, upload_dir: str) -> Response:
    """Gradio's ``route_utils.file_fetch`` (same checks, same headers), with the file opened first."""
    try:
        response = _GRADIO_FILE_FETCH(path_or_url, request, blocks_or_config, upload_dir)
    except FileNotFoundError:  # deleted between Gradio's existence check and its stat of a ranged request
        raise HTTPException(403, f"File not allowed: {path_or_url}.") from None
    if not isinstance(response, FileResponse):
        return response
    try:
        handle = open(response.path, "rb")  # noqa: SIM115 - closed by the response's background task
    except FileNotFoundError:
        raise HTTPException(403, f"File not allowed: {path_or_url}.") from None
    headers = {key: value for key, value in response.headers.items() if key not in ("content-length", "content-type")}
    headers["content-length"] = str(os.fstat(handle.fileno()).st_size)
    return StreamingResponse(_chunks(handle), headers=headers, media_type=response.media_type,
                             background=BackgroundTask(handle.close))


def install() -> None:
    """Route Gradio's file route through :func:`file_fetch` (``gradio.routes`` looks the name up at call
    time). Idempotent."""
    routes.file_fetch = file_fetch
