"""The README's demo screenshots, on a desktop (1400 x 1000) and a phone (390 x 844) viewport: the Analyse
tab's result for an example photo, a refusal (the same kind of photo sent as a heavily compressed JPEG),
the Batch tab after three photos and the refusal, and the Model tab. Drives Debian's Chromium
(``apt-get install -y chromium``) with Playwright.

    .venv/bin/python -m bench.demo_screenshots --out docs

Writes ``demo_<viewport>_<screen>.png`` (full-page; the refusal is cut below its photo checks).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image

from demo.app import DEFAULT_VERDICT_WEIGHTS, DEFAULT_WEIGHTS, verdict_choices
from mim_core import Verdict
from tests.demo_server import EXAMPLES, running_demo
from tests.test_demo_browser import CHROMIUM, CHROMIUM_ARGS, LOADED

REPO = Path(__file__).resolve().parent.parent

VIEWPORTS = {"desktop": {"width": 1400, "height": 1000}, "phone": {"width": 390, "height": 844}}
BATCH = ["mpox_msld_P18_1.jpg", "molluscum_dermnet_0008.jpg", "chickenpox_or_measles_msld_12.jpg"]
COMPRESSED_QUALITY = 8  # JPEG quality that the compression gate refuses on the example photos


def compressed_copy(photo: Path, folder: Path) -> Path:
    """The photo re-saved as a heavily compressed JPEG (what some messaging apps send)."""
    target = folder / "sent_by_a_messaging_app.jpg"
    buffer = io.BytesIO()
    Image.open(photo).convert("RGB").save(buffer, format="JPEG", quality=COMPRESSED_QUALITY)
    target.write_bytes(buffer.getvalue())
    return target


def _analyse(page, photo: Path, verdict: str | None = None) -> None:
    page.get_by_role("tab", name="Analyse").click()
    page.set_input_files("#mim-photo input[type=file]", str(photo))
    selector = f'#mim-verdict-card .mim-card[data-verdict="{verdict}"]' if verdict else "#mim-verdict-card .mim-verdict"
    page.wait_for_selector(selector)
    page.wait_for_selector("#mim-checks .mim-measures")
    page.wait_for_function(LOADED, arg="mim-photo")  # the upload's own preview
    page.wait_for_function(LOADED, arg="mim-original")


def _shoot(page, target: Path, below: str | None = None) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(800)  # let the slider and score bar settle
    clip = None
    if below:  # cut the page just below this element
        bottom = page.evaluate("sel => document.querySelector(sel).getBoundingClientRect().bottom + scrollY", below)
        clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": bottom + 24}
    page.screenshot(path=str(target), full_page=True, clip=clip)
    print(target)


def screenshots(page, out: Path, name: str, photo: Path, refused: Path) -> None:
    _analyse(page, photo)
    for panel in ("mim-heatmap", "mim-slider"):  # images load once on screen
        page.locator(f"#{panel}").scroll_into_view_if_needed()
    page.wait_for_function(LOADED, arg="mim-heatmap")
    _shoot(page, out / f"demo_{name}_analyse.png")

    _analyse(page, refused, Verdict.TOO_COMPRESSED.value)
    _shoot(page, out / f"demo_{name}_refusal.png", below="#mim-checks")

    page.get_by_role("tab", name="Batch").click()
    files = [str(EXAMPLES / f) for f in BATCH] + [str(refused)]
    page.set_input_files("#mim-batch-files input[type=file]", files)
    page.wait_for_function("n => document.querySelectorAll('#mim-batch-files tr.file').length === n", arg=len(files))
    page.click("#mim-batch-run")
    page.wait_for_selector(f"#mim-batch-summary :text('{len(files)} photo(s)')")
    _shoot(page, out / f"demo_{name}_batch.png")

    page.get_by_role("tab", name="Model").click()
    page.wait_for_selector("#mim-model-card :text('Known limitations')")
    _shoot(page, out / f"demo_{name}_model.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs"))
    parser.add_argument("--photo", default=str(EXAMPLES / "molluscum_dermnet_0008.jpg"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    detector, choices = verdict_choices(DEFAULT_WEIGHTS, DEFAULT_VERDICT_WEIGHTS, threads=2, precision="fp32")
    with tempfile.TemporaryDirectory() as uploads, tempfile.TemporaryDirectory() as scratch, \
            running_demo(detector, Path(uploads), choices=choices) as (url, _demo):
        refused = compressed_copy(EXAMPLES / "mpox_msld_P18_1.jpg", Path(scratch))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            for name, viewport in VIEWPORTS.items():
                page = browser.new_page(viewport=viewport, device_scale_factor=1,
                                        is_mobile=name == "phone", has_touch=name == "phone")
                page.set_default_timeout(120_000)
                page.goto(url)
                page.wait_for_selector("#mim-photo input[type=file]", state="attached")
                screenshots(page, out, name, Path(args.photo), refused)
                page.close()
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
