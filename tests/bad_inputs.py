"""The bad-input corpus: files a person (or an attacker) might send instead of a usable skin photo.

Everything is generated here, in memory, from one real photo (nothing is downloaded). The same corpus
goes through ``python -m mim_core score``, the demo's ``/analyze`` endpoint and
``python -m clinical import-cases`` (see ``tests/test_security_bad_inputs.py``).

Each :class:`BadInput` says what a correct answer looks like: ``"refused"`` (a sentence saying what is
wrong, matching ``message``) or ``"analysed"`` (odd but valid: it must get a verdict and a finite score
or the model-free "not a usable skin photo" verdict). Names lie about the format on purpose.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REFUSED, ANALYSED = "refused", "analysed"

# The sentence each kind of refusal must contain (from mim_core.data.ImageDecodeError messages).
NOT_AN_IMAGE = "not an image format"
DAMAGED = "damaged or incomplete"
TOO_SMALL = "too small"
TOO_LARGE = "too large"


@dataclass(frozen=True)
class BadInput:
    """One corpus entry: a kind (for reports), the file name to send, the bytes and the expected outcome."""

    kind: str
    name: str
    data: bytes
    expect: str  # REFUSED or ANALYSED
    message: str = ""  # for REFUSED: a fragment of the sentence the user must get


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims ``width x height`` (a decompression bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        _chunk(b"IEND", b"")


def png_16bit_rgb(pixels: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG written by hand (PIL cannot write one)."""
    height, width, _ = pixels.shape
    wide = (pixels.astype(">u2") * 257).tobytes()
    rows = b"".join(b"\0" + wide[y * width * 6:(y + 1) * width * 6] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + \
        _chunk(b"IEND", b"")


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0/SOF2) is patched to claim ``width x height``."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            data[at + 5:at + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise ValueError("no frame header found in the JPEG")


def gif_claiming(width: int, height: int) -> bytes:
    """A minimal GIF whose logical screen and one frame claim ``width x height``."""
    screen = b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def skin(size: tuple[int, int] = (160, 120), seed: int = 0) -> np.ndarray:
    """Skin-toned noise, HxWx3 uint8 (usable by the model-free checks)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal((190, 130, 110), 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)


def with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    """A JPEG carrying EXIF orientation ``orientation`` (1-8) and a GPS position."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    return _save(Image.fromarray(pixels), "JPEG", exif=exif, quality=92)


def _zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def corpus(photo: Path) -> list[BadInput]:
    """The corpus, built from one real JPEG photo. Kinds are unique; file names are unique."""
    jpeg = photo.read_bytes()
    png = _save(Image.open(io.BytesIO(jpeg)).convert("RGB"), "PNG")
    pixels = skin()
    rgb = Image.fromarray(pixels)
    noise = random.Random(7).randbytes(4096)
    gradient = np.zeros((128, 128, 3), np.uint8)
    gradient[...] = np.linspace((170, 110, 90), (200, 140, 120), 128, dtype=np.uint8)[None, :, :]
    nan_float = np.asarray(rgb.convert("L"), dtype=np.float32).copy()
    nan_float[::7, ::5] = np.nan
    inf_float = np.asarray(rgb.convert("L"), dtype=np.float32).copy()
    inf_float[0, 0], inf_float[1, 1] = np.inf, -np.inf
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    frames = [Image.fromarray(skin(seed=s)).convert("P") for s in range(3)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    multipage = io.BytesIO()
    rgb.save(multipage, format="TIFF", save_all=True, append_images=[Image.fromarray(skin(seed=9))])
    bad_crc = bytearray(png)
    bad_crc[29:33] = b"\0\0\0\0"  # the IHDR chunk's CRC
    items = [
        BadInput("empty file", "empty.jpg", b"", REFUSED, NOT_AN_IMAGE),
        BadInput("random bytes named .jpg", "random.jpg", noise, REFUSED, NOT_AN_IMAGE),
        BadInput("text file named .jpg", "notes.jpg", b"these are my notes, not a photo\n" * 20, REFUSED,
                 NOT_AN_IMAGE),
        BadInput("truncated JPEG (first third)", "truncated.jpg", jpeg[: len(jpeg) // 3], REFUSED, DAMAGED),
        BadInput("JPEG header only", "header_only.jpg", jpeg[:200], REFUSED, DAMAGED),
        BadInput("truncated PNG (first half)", "truncated.png", png[: len(png) // 2], REFUSED, DAMAGED),
        BadInput("PNG with a corrupt header CRC", "bad_crc.png", bytes(bad_crc), REFUSED, ""),
        BadInput("HEIC renamed .jpg", "iphone.heic.jpg",
                 b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, REFUSED, NOT_AN_IMAGE),
        BadInput("PDF renamed .jpg", "scan.pdf.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
                 REFUSED, NOT_AN_IMAGE),
        BadInput("SVG renamed .jpg", "drawing.svg.jpg",
                 b'<svg xmlns="http://www.w3.org/2000/svg" width="500" height="500"><script>alert(1)</script>'
                 b'<rect width="500" height="500" fill="#c88"/></svg>', REFUSED, NOT_AN_IMAGE),
        BadInput("zip renamed .jpg", "archive.zip.jpg", _zip_of("photo.jpg", jpeg), REFUSED, NOT_AN_IMAGE),
        BadInput("1x1 pixel PNG", "one_pixel.png", _save(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"),
                 REFUSED, TOO_SMALL),
        BadInput("100000x10 strip", "strip_wide.png", _save(Image.new("RGB", (100_000, 10), (190, 130, 110)), "PNG"),
                 REFUSED, TOO_SMALL),
        BadInput("10x100000 strip", "strip_tall.png", _save(Image.new("RGB", (10, 100_000), (190, 130, 110)), "PNG"),
                 REFUSED, TOO_SMALL),
        BadInput("16x16 ICO icon named .png", "icon_ico.png", _save(Image.fromarray(skin((16, 16))), "ICO"),
                 REFUSED, TOO_SMALL),
        BadInput("decompression bomb: 30000x30000 PNG", "bomb.png", png_claiming(30_000, 30_000), REFUSED, TOO_LARGE),
        BadInput("decompression bomb: 60000x60000 JPEG", "bomb.jpg", jpeg_claiming(jpeg, 60_000, 60_000), REFUSED,
                 TOO_LARGE),
        BadInput("decompression bomb: 65535x65535 GIF", "bomb.gif", gif_claiming(65_535, 65_535), REFUSED, TOO_LARGE),
        BadInput("16-bit grayscale PNG", "gray16.png",
                 _save(Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)), "PNG"), ANALYSED),
        BadInput("16-bit RGB PNG", "rgb48.png", png_16bit_rgb(pixels), ANALYSED),
        BadInput("CMYK JPEG", "cmyk.jpg", _save(rgb.convert("CMYK"), "JPEG", quality=92), ANALYSED),
        BadInput("palette PNG with transparency", "palette_alpha.png",
                 _save(palette, "PNG", transparency=0), ANALYSED),
        BadInput("fully transparent RGBA PNG", "transparent.png",
                 _save(Image.new("RGBA", (120, 120), (190, 130, 110, 0)), "PNG"), ANALYSED),
        BadInput("grayscale + alpha PNG", "gray_alpha.png", _save(rgb.convert("LA"), "PNG"), ANALYSED),
        BadInput("1-bit black and white PNG", "bilevel.png", _save(rgb.convert("1"), "PNG"), ANALYSED),
        BadInput("animated GIF (3 frames)", "animated.gif", animated.getvalue(), ANALYSED),
        BadInput("multi-page TIFF", "pages.tif", multipage.getvalue(), ANALYSED),
        *[BadInput(f"EXIF orientation {o} (with GPS)", f"orientation_{o}.jpg", with_orientation(pixels, o), ANALYSED)
          for o in range(1, 9)],
        BadInput("EXIF orientation 9 (invalid)", "orientation_9.jpg", with_orientation(pixels, 9), ANALYSED),
        BadInput("NaN-producing: float TIFF with NaNs", "nan.tif", _save(Image.fromarray(nan_float, "F"), "TIFF"),
                 ANALYSED),
        BadInput("NaN-producing: float TIFF with +-inf", "inf.tif", _save(Image.fromarray(inf_float, "F"), "TIFF"),
                 ANALYSED),
        BadInput("NaN-producing: one flat colour", "flat.png", _save(Image.new("RGB", (128, 128), (190, 130, 110)),
                                                                      "PNG"), ANALYSED),
        BadInput("NaN-producing: all black", "black.png", _save(Image.new("RGB", (128, 128)), "PNG"), ANALYSED),
        BadInput("NaN-producing: smooth skin gradient", "gradient.png", _save(Image.fromarray(gradient), "PNG"),
                 ANALYSED),
        BadInput("file name with ../ and backslashes", "..\\..\\..%2F..%2Fetc_passwd.jpg", jpeg, ANALYSED),
        BadInput("unicode file name", "éruption_皮疹_😷 фото.jpg", jpeg, ANALYSED),
        BadInput("very long file name", "x" * 230 + ".jpg", jpeg, ANALYSED),
        BadInput("file name with a newline and HTML", "line\nbreak <img src=x onerror=alert(1)>.jpg", jpeg, ANALYSED),
        BadInput("WebP, lossy", "photo.webp", _save(rgb, "WEBP", quality=80), ANALYSED),
    ]
    assert len({i.kind for i in items}) == len(items) and len({i.name for i in items}) == len(items)
    return items


def write_corpus(folder: Path, photo: Path) -> dict[str, BadInput]:
    """Write every corpus file into ``folder``; returns {file path: entry}."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, BadInput] = {}
    for item in corpus(photo):
        path = folder / item.name
        path.write_bytes(item.data)
        written[str(path)] = item
    return written
