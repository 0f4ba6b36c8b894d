"""A real browser (Debian's Chromium driven by Playwright) using the demo as a person would.

Needs /usr/bin/chromium (`apt-get install -y chromium`); Playwright's own browser download is never used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mim_core.detector import Verdict
from tests.demo_server import EXAMPLES, bad_inputs, demo_page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PANELS = ["mim-original", "mim-masked", "mim-inpainted", "mim-heatmap"]
WAIT_MS = 120_000  # generous: CI machines are slow and shared; nothing here asserts on time



@pytest.fixture(scope="module")
def detector(detector):
    """The shipped model measured over every scale of its mask bank, so the demo offers a scale choice
    (the shipped measure uses the 8 px scale alone)."""
    return detector.with_measure(scales=())

@pytest.fixture(scope="module")
def page(detector, tmp_path_factory):
    with demo_page(detector, tmp_path_factory.mktemp("browser_uploads"), viewport={"width": 1400, "height": 1700}) as page:
        yield page


LOADED = ("id => { const img = document.querySelector(`#${id} img`);"
          " return !!img && img.complete && img.naturalWidth > 0 }")


def _panel_loaded(page, elem_id: str) -> bool:
    return page.evaluate(LOADED, elem_id)


def test_upload_shows_four_panels_and_the_verdict(page, tmp_path: Path):
    assert "not a diagnosis" in page.inner_text("#mim-notice")
    page.set_input_files("#mim-photo input[type=file]", str(EXAMPLES / "molluscum_dermnet_0008.jpg"))
    page.wait_for_selector("#mim-verdict-card .mim-verdict")
    for elem_id in PANELS:
        page.locator(f"#{elem_id}").scroll_into_view_if_needed()  # an image off screen may load lazily
        page.wait_for_function(LOADED, arg=elem_id)
        assert _panel_loaded(page, elem_id)
    verdict = page.get_attribute("#mim-verdict-card .mim-card", "data-verdict")
    assert verdict in {v.value for v in Verdict}
    assert "What to do next" in page.inner_text("#mim-verdict-card")
    page.wait_for_selector("#mim-score-bar .mim-marker")
    assert "threshold" in page.inner_text("#mim-score-bar")
    shot = tmp_path / "analyse.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


def test_a_bad_file_is_answered_in_words(page, tmp_path: Path):
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(bad_inputs(EXAMPLES / "mpox_msld_P18_1.jpg")["scan.pdf.jpg"])
    page.get_by_role("tab", name="Analyse").click()
    page.set_input_files("#mim-photo input[type=file]", str(bad))
    page.wait_for_selector("#mim-verdict-card :text('Could not use this file')")
    assert "not an image format" in page.inner_text("#mim-verdict-card")
    assert "Traceback" not in page.inner_text("body")


def test_example_click_analyses_it_and_the_scale_choice_redraws_the_panels(page):
    page.get_by_role("tab", name="Analyse").click()
    page.get_by_text("chickenpox or measles msld 12").click()  # follows the bad-file test: wait for a result
    page.wait_for_function(
        "() => { const c = document.querySelector('#mim-verdict-card .mim-verdict');"
        " return c && c.innerText !== 'Could not use this file' }")
    page.wait_for_function(LOADED, arg="mim-masked")
    before = page.get_attribute("#mim-masked img", "src")
    page.get_by_text("8 px cells").click()
    page.wait_for_function(  # a new masked view, loaded
        "src => { const i = document.querySelector('#mim-masked img');"
        " return i && i.src !== src && i.complete && i.naturalWidth > 0 }", arg=before)


def test_model_tab_shows_the_card(page, detector):
    page.get_by_role("tab", name="Model").click()
    page.wait_for_selector("#mim-model-card :text('Known limitations')")
    text = page.inner_text("#mim-model-card")
    assert f"{detector.card['threshold']['value']:.5g}" in text
    assert detector.card["limitations"][0] in text
