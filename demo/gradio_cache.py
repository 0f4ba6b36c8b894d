"""Output images written to Gradio's cache without a window in which a browser can read half a file.

Gradio (6.31) saves each output image under a folder named by the hash of its encoded bytes and writes it
with ``write_bytes`` every time, truncating the file when it already exists. The Analyse tab sends the
same original and inpainted images twice (the panels, then the before/after slider), and two people may
analyse the same example photo, so a browser could fetch a file while it is being rewritten: a broken
panel, and "Too much data for declared Content-Length" in the server log (seen on the phone screenshot).

:func:`save_pil_to_cache` keeps an existing file with the same name and size (same hash, same bytes),
refreshing its age so the cache cleaner does not drop it under a new viewer; otherwise it writes a
temporary file and renames it into place, which readers see whole or not at all.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from gradio import processing_utils
from PIL import Image


def save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's ``processing_utils.save_pil_to_cache`` (same path, same bytes), written atomically."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    try:
        if target.stat().st_size == len(data):
            os.utime(target)  # the cache cleaner ages files by their change time
            return str(target)
    except FileNotFoundError:
        pass
    partial = folder / f".{name}.{uuid.uuid4().hex}.part"
    partial.write_bytes(data)
    os.replace(partial, target)
    return str(target)


def install() -> None:
    """Route every Gradio image save through :func:`save_pil_to_cache` (its callers look the function up
    on the module at call time, ``save_img_array_to_cache`` included). Idempotent."""
    processing_utils.save_pil_to_cache = save_pil_to_cache
