"""Output images reach Gradio's cache whole: never truncated while an identical image is saved again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gradio import processing_utils
from PIL import Image

from demo import gradio_cache
from demo.app import build_demo


def _image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8))


def test_the_demo_routes_gradio_image_saves_through_the_atomic_writer(detector):
    build_demo(detector=detector)
    assert processing_utils.save_pil_to_cache is gradio_cache.save_pil_to_cache


def test_a_saved_image_is_whole_and_named_as_gradio_names_it(tmp_path: Path):
    image = _image()
    path = Path(gradio_cache.save_pil_to_cache(image, str(tmp_path), format="png"))
    data = processing_utils.encode_pil_to_bytes(image, "png")
    assert path == (tmp_path / processing_utils.hash_bytes(data) / "image.png").resolve()
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["image.png"]  # no temporary file left behind


def test_saving_the_same_image_again_keeps_the_file_and_refreshes_its_age(tmp_path: Path):
    image = _image()
    first = Path(gradio_cache.save_pil_to_cache(image, str(tmp_path), format="png"))
    before = first.stat()
    second = Path(gradio_cache.save_pil_to_cache(image, str(tmp_path), format="png"))
    after = second.stat()
    assert second == first and after.st_ino == before.st_ino  # not rewritten in place
    assert after.st_ctime_ns >= before.st_ctime_ns  # the cache cleaner ages files by ctime


def test_a_truncated_file_at_the_path_is_replaced_whole(tmp_path: Path):
    """A file of the wrong size under the hash's name (a write cut short) is replaced, by a rename."""
    image = _image(1)
    data = processing_utils.encode_pil_to_bytes(image, "png")
    target = tmp_path / processing_utils.hash_bytes(data) / "image.png"
    target.parent.mkdir()
    target.write_bytes(data[:100])
    path = Path(gradio_cache.save_pil_to_cache(image, str(tmp_path), format="png"))
    assert path == target.resolve() and path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["image.png"]
