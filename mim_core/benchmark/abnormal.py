"""Abnormal inputs for the benchmark: pictures that are not skin photos at all.

Two sources:

- **generated**, deterministic given a seed: flat colours (skin tones among them), noise (uniform,
  skin-toned, smooth blobs), text on paper, charts drawn with matplotlib, gradients and checkerboards;
- **natural** images that ship inside installed packages (no download): scikit-image's sample images when
  scikit-image is installed, matplotlib's ``sample_data`` (Grace Hopper's portrait: a face, i.e. skin),
  scikit-learn's sample photos (a temple in China, a flower) and Gradio's media assets (animals, a tower,
  a bus). Whatever is not installed is skipped; the benchmark lists what it found.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 256
SKIN_TONES = ((224, 172, 150), (198, 134, 100), (141, 85, 54), (92, 58, 38))
FLAT_COLOURS = ((255, 255, 255), (0, 0, 0), (128, 128, 128), (220, 40, 40), (40, 90, 200), *SKIN_TONES)
TEXT_LINES = ("Patient information leaflet", "Take one tablet twice a day", "Lorem ipsum dolor sit amet",
              "RESULTS PENDING - DO NOT DISCARD", "mpox: what you need to know", "Invoice no. 20417")
# (package, path inside it) of natural images bundled in wheels; skimage's are found through skimage.data
PACKAGE_IMAGES = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("gradio", "media_assets/images/cheetah.jpg"),
    ("gradio", "media_assets/images/lion.jpg"),
    ("gradio", "media_assets/images/tower.jpg"),
    ("gradio", "media_assets/images/bus.png"),
    ("gradio", "media_assets/images/groot.jpeg"),
)
SKIMAGE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


@dataclass(frozen=True)
class AbnormalImage:
    """One abnormal input: ``category`` (flat, noise, text, chart, pattern, natural), a ``name`` and the
    RGB image."""

    category: str
    name: str
    image: Image.Image


def flat_colours() -> list[AbnormalImage]:
    return [AbnormalImage("flat", f"flat_{r}_{g}_{b}", Image.new("RGB", (SIZE, SIZE), (r, g, b)))
            for r, g, b in FLAT_COLOURS]


def noise_images(seed: int) -> list[AbnormalImage]:
    """Uniform RGB noise, Gaussian noise around skin tones, and smooth skin-toned blobs (low-pass noise)."""
    out = []
    for i in range(2):
        rng = np.random.default_rng([seed, 10, i])
        out.append(AbnormalImage("noise", f"uniform_{i}", Image.fromarray(
            rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))))
    for i, tone in enumerate(SKIN_TONES):
        rng = np.random.default_rng([seed, 11, i])
        pixels = np.clip(np.array(tone) + rng.normal(0, 25, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        out.append(AbnormalImage("noise", f"skin_tone_noise_{i}", Image.fromarray(pixels)))
        coarse = np.clip(np.array(tone) + rng.normal(0, 45, (16, 16, 3)), 0, 255).astype(np.uint8)
        smooth = Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        out.append(AbnormalImage("noise", f"skin_tone_blobs_{i}", smooth.filter(ImageFilter.GaussianBlur(4))))
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def text_images(seed: int) -> list[AbnormalImage]:
    """Lines of black or coloured text on paper-coloured backgrounds."""
    out = []
    for i, first in enumerate(TEXT_LINES):
        rng = np.random.default_rng([seed, 12, i])
        paper = tuple(int(v) for v in rng.integers(200, 256, 3))
        image = Image.new("RGB", (SIZE, SIZE), paper)
        draw = ImageDraw.Draw(image)
        font = _font(int(rng.integers(14, 26)))
        for row in range(8):
            line = first if row == 0 else TEXT_LINES[int(rng.integers(len(TEXT_LINES)))]
            ink = (0, 0, 0) if i % 2 == 0 else tuple(int(v) for v in rng.integers(0, 140, 3))
            draw.text((8, 10 + row * 30), line, fill=ink, font=font)
        out.append(AbnormalImage("text", f"text_{i}", image))
    return out


def chart_images(seed: int) -> list[AbnormalImage]:
    """Line, bar, scatter, pie, histogram and image-map charts rendered by matplotlib (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng([seed, 13])
    out = []
    for kind in ("line", "bar", "scatter", "pie", "hist", "imshow"):
        fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=80)
        x = np.arange(12)
        if kind == "line":
            ax.plot(x, np.cumsum(rng.normal(size=12)), "o-", x, np.cumsum(rng.normal(size=12)), "s--")
        elif kind == "bar":
            ax.bar(x, rng.random(12), color="tab:orange")
        elif kind == "scatter":
            ax.scatter(rng.normal(size=80), rng.normal(size=80), c=rng.random(80), cmap="viridis")
        elif kind == "pie":
            ax.pie(rng.random(5) + 0.2, labels=list("ABCDE"))
        elif kind == "hist":
            ax.hist(rng.normal(size=400), bins=20, color="tab:red")
        else:
            ax.imshow(rng.random((10, 10)), cmap="magma")
        ax.set_title(f"{kind} chart")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        out.append(AbnormalImage("chart", f"chart_{kind}", Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    return out


def pattern_images() -> list[AbnormalImage]:
    """Gradients and checkerboards (structure without any texture of skin)."""
    ramp = np.linspace(0, 255, SIZE, dtype=np.float64)
    horizontal = np.stack([np.tile(ramp, (SIZE, 1)), np.tile(ramp[::-1], (SIZE, 1)), np.full((SIZE, SIZE), 128.0)], -1)
    skin = np.array(SKIN_TONES[1], dtype=np.float64)
    skin_ramp = skin * (0.6 + 0.4 * np.tile(ramp, (SIZE, 1))[..., None] / 255)
    checker = ((np.indices((SIZE, SIZE)) // 16).sum(0) % 2 * 255).astype(np.uint8)
    return [AbnormalImage("pattern", "gradient_rgb", Image.fromarray(horizontal.astype(np.uint8))),
            AbnormalImage("pattern", "gradient_skin_tone", Image.fromarray(skin_ramp.astype(np.uint8))),
            AbnormalImage("pattern", "checkerboard", Image.fromarray(checker).convert("RGB"))]


def generated_images(seed: int = 0) -> list[AbnormalImage]:
    """Every generated abnormal input, in a fixed order; the same seed gives the same pixels."""
    return flat_colours() + noise_images(seed) + text_images(seed) + chart_images(seed) + pattern_images()


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def natural_images() -> list[AbnormalImage]:
    """Natural (non-skin, or not-a-skin-photo) images bundled in installed packages; none are downloaded."""
    out = []
    if importlib.util.find_spec("skimage") is not None:
        import skimage.data

        for name in SKIMAGE_NAMES:
            try:
                array = getattr(skimage.data, name)()
            except Exception:  # a sample that would need a download (pooch) is skipped
                continue
            out.append(AbnormalImage("natural", f"skimage_{name}", Image.fromarray(np.asarray(array)).convert("RGB")))
    for package, rel in PACKAGE_IMAGES:
        folder = _package_dir(package)
        if folder is None or not (folder / rel).is_file():
            continue
        with Image.open(folder / rel) as image:
            out.append(AbnormalImage("natural", f"{package}_{Path(rel).stem}", image.convert("RGB")))
    return out


def abnormal_images(seed: int = 0) -> list[AbnormalImage]:
    """Generated + natural abnormal inputs."""
    return generated_images(seed) + natural_images()
