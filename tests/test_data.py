"""Decoding of the files people actually send, and the group split."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mim_core.config import PreprocessConfig
from mim_core.data import (ImageDecodeError, decode_image, group_split, locate, preprocess, scan_dataset, scan_datasets,
                           source_group)


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (120, 60), (200, 10, 10))
    image.paste((10, 10, 200), (0, 0, 30, 60))  # blue left strip
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(_jpeg(image, exif=exif))
    assert decoded.size == (60, 120)
    top = np.asarray(decoded)[:10].mean(axis=(0, 1))
    assert top[2] > 150 and top[0] < 80  # the blue strip is now on top


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    decoded = decode_image(_png(image))
    assert decoded.mode == "RGB" and np.asarray(decoded).min() == 255


def test_grayscale_and_cmyk_become_rgb():
    gray = decode_image(_png(Image.new("L", (64, 64), 77)))
    assert gray.mode == "RGB" and np.asarray(gray)[0, 0].tolist() == [77, 77, 77]
    cmyk = decode_image(_jpeg(Image.new("CMYK", (64, 64), (0, 255, 255, 0))))
    red = np.asarray(cmyk)[32, 32]
    assert cmyk.mode == "RGB" and red[0] > 200 and red[1] < 60


def test_sixteen_bit_is_scaled_not_clipped():
    array = np.full((64, 64), 32768, dtype=np.uint16)
    decoded = decode_image(_png(Image.fromarray(array)))
    assert 120 <= np.asarray(decoded)[0, 0, 0] <= 135


def test_palette_with_transparency():
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.info["transparency"] = 0
    assert np.asarray(decode_image(_png(image))).min() == 255


@pytest.mark.parametrize("payload, words", [
    (b"", "not an image"),
    (b"\x00\x01garbage" * 100, "not an image"),
    (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "not an image"),
])
def test_non_images_give_a_clear_error(payload, words):
    with pytest.raises(ImageDecodeError, match=words):
        decode_image(payload)


def test_truncated_jpeg_is_refused(data_root: Path):
    data = (data_root / "MSLD_v1" / "Monkeypox" / "P13_1.jpg").read_bytes()
    with pytest.raises(ImageDecodeError, match="damaged or incomplete"):
        decode_image(data[: len(data) // 2])


def test_a_50_megapixel_phone_photo_is_decoded_at_reduced_scale():
    big = Image.new("RGB", (8160, 6120), (180, 120, 100))
    decoded = decode_image(_jpeg(big))
    assert decoded.mode == "RGB" and min(decoded.size) >= 1024 and decoded.size[0] <= 8160 // 2


def test_tiny_and_huge_images_are_refused():
    with pytest.raises(ImageDecodeError, match="too small"):
        decode_image(_png(Image.new("RGB", (1, 1))))
    bomb = _png(Image.new("1", (30000, 30000)))  # a few KB on disk, 900 megapixels decoded
    assert len(bomb) < 200_000
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(bomb)


def test_preprocess_is_a_central_crop_of_fixed_size():
    image = Image.new("RGB", (640, 480), (0, 0, 0))
    image.paste((255, 255, 255), (186, 106, 454, 374))  # just covers the central 264 px (0.55 x 480) square
    tensor = preprocess(image, PreprocessConfig())
    assert tensor.shape == (3, 128, 128) and tensor.min() == 1.0
    wider = preprocess(image, PreprocessConfig(crop_fraction=0.7))
    assert wider.min() == 0.0  # a wider crop reaches the black border


def test_msld_and_msid_group_by_source_photo():
    assert source_group("MSLD_v1", "Monkeypox", "P13_2.jpg") == "MSLD_v1/Monkeypox/P13"
    assert source_group("MSLD_v1", "Others", "58_!.jpg") == "MSLD_v1/Others/58"
    assert source_group("MSID", "Monkeypox", "msid004_2.png") == "MSID/Monkeypox/msid004"
    assert source_group("DermNetNZ", "Orf", "orf_3.jpg") == "DermNetNZ/Orf/orf_3"


def test_two_roots_are_one_list_of_records_each_found_under_its_own_root(data_root: Path, msid_root: Path):
    records = scan_datasets([data_root, msid_root])
    msid = [r for r in records if r.dataset == "MSID"]
    assert len(msid) == 144 and len({r.group for r in msid}) == 119 and all(r.is_mpox for r in msid)
    assert all(r.location.is_file() and Path(r.root) in (data_root, msid_root) for r in records)
    assert locate([data_root, msid_root], msid[0].path) == msid_root / msid[0].path
    with pytest.raises(FileNotFoundError, match="none of the data roots"):
        locate([data_root], msid[0].path)
    with pytest.raises(ValueError, match="give each data root once"):
        scan_datasets([data_root, data_root])


def test_mpox_split_splits_each_source_on_its_own(data_root: Path, msid_root: Path):
    from mim_core.training.train import mpox_split

    both = mpox_split([data_root, msid_root], seed=0)
    parts = {"train": both.train, "val": both.val, "test": both.test}
    for source, n in (("MSLD_v1", 102), ("MSID", 144)):
        mine = {name: [r for r in items if r.dataset == source] for name, items in parts.items()}
        assert sum(map(len, mine.values())) == n
        assert 0.5 < len(mine["train"]) / n < 0.7 and 0.1 < len(mine["val"]) / n < 0.2  # each source in each part
        groups = {name: {r.group for r in items} for name, items in mine.items()}
        assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    # adding a source leaves the split of the first one as it was
    alone = mpox_split(data_root, seed=0)
    assert [r.path for r in both.train if r.dataset == "MSLD_v1"] == [r.path for r in alone.train]


def test_group_split_never_splits_a_source_photo(data_root: Path):
    mpox = [r for r in scan_dataset(data_root) if r.is_mpox]
    parts = group_split(mpox, seed=0)
    groups = {name: {r.group for r in items} for name, items in parts.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    sizes = {name: len(items) for name, items in parts.items()}
    assert sum(sizes.values()) == len(mpox) == 102
    assert 0.5 < sizes["train"] / 102 < 0.7 and 0.1 < sizes["val"] / 102 < 0.2 and 0.2 < sizes["test"] / 102 < 0.3
    assert group_split(mpox, seed=0) == parts and group_split(mpox, seed=1) != parts
