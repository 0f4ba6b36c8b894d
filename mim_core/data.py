"""Decoding, preprocessing, folder datasets and the group split.

Decoding is defensive because photos come from phones and the web: EXIF orientation is applied, every
mode (RGBA, palette, grayscale, CMYK, 16-bit) becomes 8-bit RGB, and anything that is not a whole,
sane image raises :class:`ImageDecodeError` with a sentence a person can act on.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import PreprocessConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_PIXELS = 100_000_000  # refuse before decoding: a 30000x30000 "bomb" is a few KB on disk
DRAFT_SIDE = 1024  # big JPEGs decode at 1/2..1/8 scale (still >= this), bounding memory for phone photos
MIN_SIDE = 32
MPOX_CLASS = "Monkeypox"

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageDecodeError(ValueError):
    """The input cannot be used as a photo; ``str(err)`` is a sentence for the user."""


def _open(source: str | os.PathLike | bytes | Image.Image) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    try:
        if isinstance(source, (bytes, bytearray)):
            return Image.open(io.BytesIO(source))
        return Image.open(source)
    except FileNotFoundError:
        raise ImageDecodeError(f"File not found: {source}") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{source} is a folder, not an image file.") from None
    except PermissionError:
        raise ImageDecodeError(f"{source} cannot be read (permission denied).") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            "This file is not an image format we can read (use a JPEG, PNG or WebP photo)."
        ) from None
    except Image.DecompressionBombError:
        raise ImageDecodeError(
            f"The image is too large (over {MAX_PIXELS // 1_000_000} megapixels); send a smaller photo."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):  # the header itself is cut short or corrupt
        raise ImageDecodeError(
            "The image file is damaged or incomplete (it could not be fully decoded); "
            "try saving or exporting it again."
        ) from None


def decode_image(source: str | os.PathLike | bytes | Image.Image) -> Image.Image:
    """Open any supported input as an upright 8-bit RGB PIL image.

    Raises:
        ImageDecodeError: not an image, truncated/corrupt, too large, or too small.
    """
    image = _open(source)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"The image is too large ({width}x{height}); send a photo under {MAX_PIXELS // 1_000_000} megapixels."
        )
    if image.format == "JPEG":
        image.draft(None, (DRAFT_SIDE, DRAFT_SIDE))  # the model sees 128 px; no need for 50 MP in memory
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated: analyse the first frame only
        image = ImageOps.exif_transpose(image) or image
        image = _to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(
            "The image file is damaged or incomplete (it could not be fully decoded); "
            "try saving or exporting it again."
        ) from err
    if min(image.size) < MIN_SIDE:
        raise ImageDecodeError(
            f"The image is too small ({image.size[0]}x{image.size[1]}); "
            f"a usable photo is at least {MIN_SIDE} pixels on each side."
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. Transparency is composited on white; 16-bit is scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "I" or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        finite = np.isfinite(array)
        low = float(array[finite].min()) if finite.any() else 0.0
        array = np.clip(np.where(finite, array, low), -1e300, 1e300)  # NaN/inf -> the darkest finite value
        span = max(float(array.max() - array.min()), 1e-12)
        return Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def center_crop_box(width: int, height: int, fraction: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central square with side ``fraction`` of the short side."""
    side = max(1, int(round(min(width, height) * fraction)))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray  # what the detectors accept as a photo


def decode_inputs(images: Sequence[ImageInput]) -> list[Image.Image]:
    """Paths, bytes, PIL images or (H, W, 3) uint8 arrays -> upright RGB photos.

    Raises:
        ImageDecodeError: the first input that cannot be read as a photo.
    """
    return [decode_image(Image.fromarray(x) if isinstance(x, np.ndarray) else x) for x in images]


def preprocess(image: Image.Image, config: PreprocessConfig) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, size, size) in [0, 1]: central square crop, area resize."""
    crop = image.crop(center_crop_box(*image.size, config.crop_fraction))
    crop = crop.resize((config.size, config.size), Image.Resampling.BOX if crop.width >= config.size
                       else Image.Resampling.BICUBIC)
    array = np.asarray(crop, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [0, 1] -> (..., H, W, 3) uint8: the inverse of :func:`preprocess`'s scaling, exact
    on its output (every value is k / 255)."""
    return (t.clamp(0, 1).movedim(-3, -1) * 255 + 0.5).to(torch.uint8).numpy()


def load_tensor(path: str | os.PathLike, config: PreprocessConfig) -> torch.Tensor:
    """Decode + preprocess one file -> (3, size, size) in [0, 1]."""
    return preprocess(decode_image(path), config)


def jpeg_round_trip(photo: Image.Image, quality: int) -> Image.Image:
    """RGB photo -> the same after a JPEG round trip at ``quality`` with 4:2:0 chroma (what a messaging app does)."""
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=quality, subsampling=2)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a folder dataset ``root/<dataset>/<class>/<file>``.

    ``group`` is the source photo: for MSLD and MSID the file-name prefix before the last ``_`` (several
    crops or augmentations share it), elsewhere the file itself. ``path`` is relative to ``root`` and, as
    the datasets of different roots have different names, unique across every root of a run.
    """

    path: str  # relative to the data root, with forward slashes
    dataset: str
    label_class: str
    group: str
    root: str = ""  # the data root the image lies under

    @property
    def is_mpox(self) -> bool:
        return self.label_class == MPOX_CLASS

    @property
    def location(self) -> Path:
        return Path(self.root) / self.path


GROUPED_BY_PREFIX = ("MSLD", "MSID")  # datasets whose file names say their source photo: "<photo>_<n>.jpg"


def source_group(dataset: str, label_class: str, file_name: str) -> str:
    stem = Path(file_name).stem
    if dataset.startswith(GROUPED_BY_PREFIX) and "_" in stem:
        stem = stem.rsplit("_", 1)[0]
    return f"{dataset}/{label_class}/{stem}"


def scan_dataset(root: str | os.PathLike) -> list[ImageRecord]:
    """All images under ``root/<dataset>/<class>/``, sorted by path (deterministic). A root that holds class
    folders directly (``root/<class>/``, as ``healthy_skin_dev`` does) is one dataset named after the root."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder not found: {root}")
    records = []
    for pattern in ("*/*/*", "*/*"):
        for path in sorted(root.glob(pattern)):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            dataset = path.parent.parent.name if pattern == "*/*/*" else root.name
            label_class, rel = path.parent.name, path.relative_to(root).as_posix()
            records.append(ImageRecord(rel, dataset, label_class, source_group(dataset, label_class, path.name),
                                       str(root)))
        if records:
            break
    if not records:
        raise FileNotFoundError(f"No images found under {root}/<dataset>/<class>/ or {root}/<class>/")
    return records


def root_list(roots: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """One data root or several, as a list of path strings (the form cards and training records keep)."""
    return [os.fspath(roots)] if isinstance(roots, (str, os.PathLike)) else [os.fspath(r) for r in roots]


def scan_datasets(roots: str | os.PathLike | Sequence[str | os.PathLike]) -> list[ImageRecord]:
    """Every image of one or several data roots (each laid out as :func:`scan_dataset` reads), root by root.

    Raises:
        FileNotFoundError: a root that is missing or holds no images.
        ValueError: the same ``<dataset>/<class>/<file>`` twice (a root given twice, or two roots with the same
            dataset folder): a card's root-relative path would be ambiguous.
    """
    records = [r for root in root_list(roots) for r in scan_dataset(root)]
    seen: dict[str, str] = {}
    for r in records:
        if r.path in seen:
            raise ValueError(f"{r.path} is found twice, under {seen[r.path]} and {r.root}: give each data root once, "
                             "and no two roots with the same <dataset> folder.")
        seen[r.path] = r.root
    return records


def locate(roots: str | os.PathLike | Sequence[str | os.PathLike], path: str) -> Path:
    """The file of a root-relative ``path`` (as a card's split names it) under the first root that has it.

    Raises:
        FileNotFoundError: no root has it.
    """
    for root in root_list(roots):
        if (Path(root) / path).is_file():
            return Path(root) / path
    raise FileNotFoundError(f"{path} is under none of the data roots {', '.join(root_list(roots))}.")


def group_split(
    records: Sequence[ImageRecord], fractions: tuple[float, float, float] = (0.6, 0.15, 0.25), seed: int = 0
) -> dict[str, list[ImageRecord]]:
    """Split by source group (never by file) into train/val/test, seeded. Groups are shuffled and dealt
    by cumulative image count so each part gets close to its fraction of images."""
    groups: dict[str, list[ImageRecord]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    total = len(records)
    bounds = np.cumsum(fractions) * total
    parts: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    seen = 0
    for index in order:
        members = groups[names[index]]
        centre = seen + len(members) / 2
        part = "train" if centre <= bounds[0] else "val" if centre <= bounds[1] else "test"
        parts[part].extend(members)
        seen += len(members)
    return {name: sorted(items, key=lambda r: r.path) for name, items in parts.items()}


def iter_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(path)
    return out
