"""Importing cases from class folders: ``<dataset>/<class>/<image>``, the class folder naming the label.

Each file is identified by the sha256 of its bytes (what ``sha256sum`` prints). The stored image is the
EXIF-oriented RGB picture re-encoded as PNG from raw pixels, so no EXIF, GPS or other metadata survives
and the pixels are exactly what the detector sees when it decodes the original file.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from mim_core.data import IMAGE_SUFFIXES, MPOX_CLASS, ImageDecodeError, decode_image, source_group

from .store import ClinicalError, NewCase, Store


def reference_label(label_class: str) -> str:
    """Class folder name -> reference label: ``Monkeypox`` (any case) is mpox, anything else not mpox."""
    return "mpox" if label_class.lower() == MPOX_CLASS.lower() else "not mpox"


def strip_metadata(image: Image.Image) -> bytes:
    """PNG bytes of an RGB image rebuilt from its pixels alone (no EXIF, GPS, ICC or text chunks)."""
    clean = Image.fromarray(np.asarray(image.convert("RGB")))
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); hidden files are skipped."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def build_case(path: Path) -> NewCase:
    """A case from one file; an unreadable image becomes an excluded case that keeps the reason.

    Raises:
        ClinicalError: the file itself cannot be read (gone, permission denied): without its bytes there is
            no case id, so the whole import is refused rather than half done.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ClinicalError(f"{path} cannot be read ({err.strerror or err}); nothing was imported. "
                            "Fix or remove the file and run the import again.") from None
    label_class = path.parent.name
    dataset = path.parent.parent.name or "unknown"
    label = reference_label(label_class)
    common = dict(id=hashlib.sha256(data).hexdigest(), file_name=path.name, source_path=str(path),
                  dataset=dataset, label_class=label_class, reference_label=label,
                  label_provenance=f"class folder '{label_class}' of '{dataset}' (import-cases --label-from-folder)",
                  group_id=source_group(dataset, label_class, path.name))
    try:
        image = decode_image(data)
    except ImageDecodeError as err:
        return NewCase(**common, png=None, excluded_reason=str(err))
    png = strip_metadata(image)
    return NewCase(**common, png=png, width=image.width, height=image.height,
                   image_sha256=hashlib.sha256(png).hexdigest())


def collect_images(folders: list[str | Path]) -> list[Path]:
    """Every image file under the given folders (checked before anything is written).

    Raises:
        ClinicalError: a folder is missing or holds no images.
    """
    paths: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ClinicalError(f"{folder} is not a folder; give folders whose sub-folders are classes "
                                "(e.g. data/MSLD_v1) or class folders (e.g. data/MSLD_v1/Monkeypox).")
        found = image_files(folder)
        if not found:
            raise ClinicalError(f"No image files were found under {folder}.")
        paths.extend(p.resolve() for p in found)
    return paths


def import_images(store: Store, paths: list[Path]) -> dict[str, int]:
    """Import image files in one transaction. Each image's class is its parent folder's name and its
    dataset the folder above that.

    Raises:
        ClinicalError: one image arrives with two labels (nothing is stored).
    """
    return store.add_cases(build_case(path) for path in paths)
