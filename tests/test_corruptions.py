"""Corruptions of the robustness benchmark are deterministic given a seed and change the image; the
abnormal-input generators give valid RGB pictures."""

import numpy as np
import pytest
from PIL import Image

from mim_core.benchmark.abnormal import abnormal_images, generated_images, natural_images
from mim_core.config import PreprocessConfig
from mim_core.benchmark.corruptions import CORRUPTIONS, SEVERITIES, corrupted_view, describe, to_view
from mim_core.data import decode_image
from mim_core.gate import quality_gate

CONFIG = PreprocessConfig()


@pytest.fixture(scope="module")
def photos(data_root):
    """An MSLD mpox crop (224 px) and a DermNet photo (640x480): the two scales the benchmark corrupts."""
    return [decode_image(data_root / "MSLD_v1/Monkeypox/P13_1.jpg"),
            decode_image(sorted((data_root / "DermNetNZ" / "Orf").iterdir())[0])]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_is_deterministic_and_changes_the_view(name, photos):
    for photo in photos:
        clean = to_view(photo, CONFIG)
        previous = None
        for severity in (1, 3, 5):
            a = corrupted_view(photo, name, severity, seed=7, config=CONFIG)
            b = corrupted_view(photo, name, severity, seed=7, config=CONFIG)
            assert a.dtype == np.uint8 and a.shape == (CONFIG.size, CONFIG.size, 3)
            assert np.array_equal(a, b), f"{name} {severity} is not deterministic"
            changed = (a != clean).any(axis=2).mean()
            assert changed > 0.2, f"{name} at severity {severity} changes only {changed:.0%} of the pixels"
            if previous is not None:
                assert not np.array_equal(a, previous)
            previous = a
        assert describe(name, 1) != describe(name, 5)


def test_noise_depends_on_the_seed(photos):
    a = corrupted_view(photos[0], "gaussian_noise", 2, seed=1, config=CONFIG)
    b = corrupted_view(photos[0], "gaussian_noise", 2, seed=2, config=CONFIG)
    assert not np.array_equal(a, b)


def test_unknown_corruption_or_severity_is_a_sentence(photos):
    with pytest.raises(ValueError, match="Unknown corruption"):
        corrupted_view(photos[0], "snow", 1, seed=0, config=CONFIG)
    with pytest.raises(ValueError, match="Severity must be one of"):
        corrupted_view(photos[0], "jpeg", 9, seed=0, config=CONFIG)
    assert SEVERITIES == (1, 2, 3, 4, 5)


def test_generated_abnormal_inputs_are_valid_and_seeded():
    first, again, other = generated_images(0), generated_images(0), generated_images(1)
    assert {a.category for a in first} == {"flat", "noise", "text", "chart", "pattern"}
    assert len({a.name for a in first}) == len(first)
    for a, b in zip(first, again):
        assert a.image.mode == "RGB" and min(a.image.size) >= 32
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        decode_image(a.image)  # the models' own decoder accepts every one
    assert any(not np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(first, other))
    by_name = {a.name: np.asarray(a.image) for a in first}
    assert by_name["flat_0_0_0"].max() == 0 and by_name["uniform_0"].std() > 50
    assert by_name["chart_bar"].std() > 10 and by_name["text_0"].std() > 5
    # the model-free gate flags every flat colour
    assert all(quality_gate(to_view(a.image, CONFIG)) for a in first if a.category == "flat")


def test_natural_images_come_from_installed_packages():
    natural = natural_images()
    assert natural, "no bundled natural image found (matplotlib's sample_data should always be there)"
    assert "matplotlib_grace_hopper" in {a.name for a in natural}
    for a in natural:
        assert isinstance(a.image, Image.Image) and a.image.mode == "RGB" and a.category == "natural"
    assert len(abnormal_images(0)) == len(generated_images(0)) + len(natural)
