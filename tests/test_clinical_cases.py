"""Case import: content-addressed, metadata stripped, labels from class folders, all or nothing."""

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinical.cases import collect_images, import_images, reference_label
from clinical.store import ClinicalError, Store
from mim_core.data import decode_image


def photo_with_gps(path: Path) -> None:
    """A 80x40 JPEG, EXIF orientation 6 (rotate 90°), a GPS position and a camera model."""
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (200, 120, 90)
    pixels[:, 40:] = (60, 40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x0110] = "SecretCam 3000"  # Model
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}  # GPS IFD
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif, quality=95)


def test_reference_label_from_class_folder():
    assert reference_label("Monkeypox") == "mpox" == reference_label("monkeypox")
    assert reference_label("Others") == "not mpox" == reference_label("Acne_vulgaris")


def test_images_are_stored_once_without_metadata(tmp_path: Path):
    source = tmp_path / "MSLD_v1" / "Monkeypox" / "P1_2.jpg"
    photo_with_gps(source)
    assert b"SecretCam" in source.read_bytes() and Image.open(source).getexif().get_ifd(0x8825)
    store = Store(tmp_path / "db.sqlite")
    counts = import_images(store, collect_images([tmp_path / "MSLD_v1"]))
    assert counts == {"added": 1, "excluded": 0, "already_stored": 0}
    case = store.cases()[0]
    assert case["id"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (case["dataset"], case["label_class"], case["reference_label"], case["group_id"]) == (
        "MSLD_v1", "Monkeypox", "mpox", "MSLD_v1/Monkeypox/P1")
    png = store.case_png(case["id"])
    assert b"SecretCam" not in png and b"Exif" not in png and b"GPS" not in png
    stored = Image.open(io.BytesIO(png))
    assert not stored.getexif() and stored.format == "PNG"
    assert stored.size == (40, 80)  # the orientation was applied before the tag was dropped
    assert np.array_equal(np.asarray(stored), np.asarray(decode_image(source)))  # the pixels the detector sees
    # a second import of the same file (even under another name) stores nothing new
    shutil.copy(source, tmp_path / "MSLD_v1" / "Monkeypox" / "copy.jpg")
    again = import_images(store, collect_images([tmp_path / "MSLD_v1"]))
    assert again == {"added": 0, "excluded": 0, "already_stored": 2}
    assert store.query("SELECT count(*) AS n FROM case_images")[0]["n"] == 1


def test_unreadable_files_become_excluded_cases(tmp_path: Path):
    (tmp_path / "ds" / "Others").mkdir(parents=True)
    (tmp_path / "ds" / "Others" / "broken.jpg").write_bytes(b"not a picture")
    store = Store(tmp_path / "db.sqlite")
    assert import_images(store, collect_images([tmp_path / "ds"]))["excluded"] == 1
    case = store.cases()[0]
    assert "not an image format" in case["excluded_reason"] and store.cases(usable_only=True) == []


def test_conflicting_labels_reject_the_whole_import(tmp_path: Path):
    photo_with_gps(tmp_path / "ds" / "Monkeypox" / "a.jpg")
    store = Store(tmp_path / "db.sqlite")
    import_images(store, collect_images([tmp_path / "ds"]))
    photo_with_gps(tmp_path / "other" / "Others" / "b.jpg")  # same bytes, opposite label
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "other" / "Others" / "c.png")
    before = (store.cases(), store.query("SELECT case_id FROM case_images"))
    with pytest.raises(ClinicalError, match="same image as .* labelled 'not mpox' instead of 'mpox'"):
        import_images(store, collect_images([tmp_path / "other"]))
    assert (store.cases(), store.query("SELECT case_id FROM case_images")) == before


def test_missing_or_empty_folders_are_refused(tmp_path: Path):
    with pytest.raises(ClinicalError, match="is not a folder"):
        collect_images([tmp_path / "nowhere"])
    (tmp_path / "empty" / "Monkeypox").mkdir(parents=True)
    with pytest.raises(ClinicalError, match="No image files"):
        collect_images([tmp_path / "empty"])
