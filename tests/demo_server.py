"""Run the demo on a free loopback port for the client and browser tests, and make bad input files."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image

from tests.conftest import REPO

EXAMPLES = REPO / "demo" / "examples"
EXAMPLE = EXAMPLES / "mpox_msld_P18_1.jpg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_demo(detector, upload_dir: Path, extra_tabs: Sequence = (), choices=None) -> Iterator[tuple[str, object]]:
    """The demo (with the given detector, the verdict ``choices`` it offers, and ``extra_tabs`` as app.py mounts them) served on
    127.0.0.1:<free port>, uploads going to ``upload_dir``; yields (url, demo)."""
    from demo.app import build_demo, launch_options

    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)  # read by Gradio when the app is built and launched
    try:
        demo = build_demo(detector=detector, extra_tabs=list(extra_tabs), choices=choices)
        _, url, _ = demo.launch(**launch_options(server_name="127.0.0.1", server_port=free_port(),
                                                 prevent_thread_lock=True, quiet=True))
        try:
            yield url, demo
        finally:
            demo.close()
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def files_with_content(folder: Path, data: bytes) -> list[Path]:
    """Files under ``folder`` whose bytes equal ``data``."""
    digest = hashlib.sha256(data).hexdigest()
    return [p for p in folder.rglob("*") if p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == digest]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape, a few bytes on disk)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def bad_inputs(photo: Path) -> dict[str, bytes]:
    """Files a person might send that are not usable photos, by name (the extension lies on purpose)."""
    jpeg = photo.read_bytes()
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 150, 120)).save(tiny, format="PNG")
    return {
        "notes.jpg": b"these are my notes, not a photo\n" * 20,
        "scan.pdf.jpg": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        "iphone.heic.jpg": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "one_pixel.png": tiny.getvalue(),
        "bomb.png": png_claiming(30000, 30000),  # 900 megapixels claimed by a few bytes
    }


@contextmanager
def demo_page(detector, upload_dir: Path, choices=None, **page_options) -> Iterator[object]:
    """A Playwright page of Debian's Chromium on the served demo (``page_options`` as ``new_page`` takes them:
    viewport, is_mobile...), loaded up to its photo input; the browser and server close afterwards."""
    from playwright.sync_api import sync_playwright

    from tests.test_demo_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS

    assert CHROMIUM.is_file(), "install Debian's Chromium: apt-get install -y chromium"
    with running_demo(detector, upload_dir, choices=choices) as (url, _demo), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(**page_options)
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.wait_for_selector("#mim-photo input[type=file]", state="attached")
        yield page
        browser.close()
