"""The README's demo screenshots: the Analyse tab on a desktop and a phone viewport, after analysing an
example photo. Drives Debian's Chromium (``apt-get install -y chromium``) with Playwright.

    .venv/bin/python -m bench.demo_screenshots --out docs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from mim_core import MIMDetector
from tests.demo_server import EXAMPLES, running_demo
from tests.test_demo_browser import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parent.parent

VIEWPORTS = {"desktop": {"width": 1400, "height": 1000}, "phone": {"width": 390, "height": 844}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs"))
    parser.add_argument("--photo", default=str(EXAMPLES / "molluscum_dermnet_0008.jpg"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    detector = MIMDetector.load(REPO / "weights" / "mim_gan.pt", threads=2)
    with tempfile.TemporaryDirectory() as uploads, running_demo(detector, Path(uploads)) as (url, _demo):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            for name, viewport in VIEWPORTS.items():
                page = browser.new_page(viewport=viewport, device_scale_factor=1,
                                        is_mobile=name == "phone", has_touch=name == "phone")
                page.set_default_timeout(120_000)
                page.goto(url)
                page.set_input_files("#mim-photo input[type=file]", args.photo)
                page.wait_for_selector("#mim-verdict-card .mim-verdict")
                page.locator("#mim-heatmap").scroll_into_view_if_needed()  # images load once on screen
                page.wait_for_function("() => { const img = document.querySelector('#mim-heatmap img');"
                                       " return !!img && img.complete && img.naturalWidth > 0 }")
                page.wait_for_timeout(1500)  # let the slider and score bar settle
                target = Path(args.out) / f"demo_{name}.png"
                page.screenshot(path=str(target), full_page=True)
                print(target)
                page.close()
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
