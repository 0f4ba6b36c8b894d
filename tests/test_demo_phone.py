"""The demo on a phone (390 x 844, Debian's Chromium driven by Playwright): the answer comes right under
the photo, the Model tab's numbers stay whole, and the Batch tab's verdicts fit the screen.

Needs /usr/bin/chromium (`apt-get install -y chromium`); Playwright's own browser download is never used.
Positions are printed (run with -s to see them).
"""

from __future__ import annotations

import re

import pytest

from demo.app import DEFAULT_VERDICT_WEIGHTS, verdict_choices
from tests.conftest import SHIPPED_WEIGHTS
from tests.demo_server import EXAMPLES, demo_page
from tests.test_demo_browser import LOADED

PHONE = {"width": 390, "height": 844}
MPOX = EXAMPLES / "mpox_msld_P18_1.jpg"
BATCH = [MPOX, EXAMPLES / "molluscum_dermnet_0008.jpg", EXAMPLES / "chickenpox_or_measles_msld_12.jpg"]

BOX = "sel => { const r = document.querySelector(sel).getBoundingClientRect();" \
      " return {top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left, right: r.right} }"

# Every number in the Model tab's tables, with how many line boxes it spans (2+ = split across lines).
SPLIT_NUMBERS = r"""() => {
  const out = [];
  for (const cell of document.querySelectorAll('#mim-model-card td, #mim-model-card th')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/[-+]?\d+(?:\.\d+)?/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        out.push({text: m[0], lines: lines.size, visible: cell.getClientRects().length > 0});
      }
    }
  }
  return out;
}"""


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """The page as app.py serves it: MIM's checks and panels, the probe's verdict, the other verdict models."""
    default, choices = verdict_choices(SHIPPED_WEIGHTS, DEFAULT_VERDICT_WEIGHTS, threads=2, precision="fp32")
    with demo_page(default, tmp_path_factory.mktemp("phone_uploads"), choices=choices, viewport=PHONE,
                   is_mobile=True, has_touch=True) as page:
        yield page


def test_the_verdict_comes_right_under_the_photo_before_the_panels(phone):
    phone.set_input_files("#mim-photo input[type=file]", str(MPOX))
    phone.wait_for_selector("#mim-verdict-card .mim-verdict")
    phone.wait_for_selector("#mim-checks .mim-measures")
    photo, card, panels = (phone.evaluate(BOX, sel) for sel in ("#mim-photo", "#mim-verdict-card", "#mim-panels"))
    print(f"\nphone: photo bottom {photo['bottom']:.0f}, verdict top {card['top']:.0f}, panels top {panels['top']:.0f}")
    assert photo["bottom"] <= card["top"] < panels["top"]
    assert card["top"] - photo["bottom"] < 60  # nothing between the photo and its answer
    # scrolled just past the photo box, the verdict and its next step are on screen
    phone.evaluate("y => window.scrollTo(0, y)", photo["bottom"])
    verdict = phone.locator("#mim-verdict-card .mim-verdict").bounding_box()
    step = phone.locator("#mim-verdict-card .mim-next").bounding_box()
    assert 0 <= verdict["y"] and step["y"] + step["height"] <= PHONE["height"]
    assert "What to do next" in phone.inner_text("#mim-verdict-card")
    # the panels and the plain-words checks follow; the numbers stay behind the closed details section
    phone.locator("#mim-heatmap").scroll_into_view_if_needed()
    phone.wait_for_function(LOADED, arg="mim-heatmap")
    checks = phone.inner_text("#mim-checks")
    assert "Sharpness" in checks and not re.search(r"\d\.\d", checks)
    assert not re.search(r"\d\.\d", phone.inner_text("#mim-verdict-card"))
    assert not phone.locator("#mim-details").get_by_label("Reason").is_visible()
    label, icons, block = phone.evaluate("""() => { const s = document.querySelector('#mim-slider');
      const r = e => e ? e.getBoundingClientRect().toJSON() : null;
      return [r(s.querySelector('label')), r(s.querySelector('.icon-button-wrapper')), r(s)]; }""")
    assert label["right"] <= min(block["right"], icons["left"] if icons else block["right"])  # label not cut
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_choosing_who_gives_the_verdict_answers_the_same_photo_again(phone):
    """Follows the upload above: the photo is gone from the server, the answer changes with the model."""
    phone.get_by_role("tab", name="Analyse").click()
    assert "features" in phone.inner_text("#mim-verdict-card")  # the probe's reason
    phone.locator("#mim-verdict-model").get_by_label("MIM alone").check()
    phone.wait_for_function("() => /reproduce/.test(document.querySelector('#mim-verdict-card').innerText)")
    assert "What to do next" in phone.inner_text("#mim-verdict-card")  # MIM's own reason, a whole answer
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_model_tab_never_splits_a_number(phone):
    phone.get_by_role("tab", name="Model").click()
    phone.wait_for_selector("#mim-model-card :text('Known limitations')")
    numbers = [n for n in phone.evaluate(SPLIT_NUMBERS) if n["visible"]]
    assert len(numbers) > 30  # the evaluation tables are there
    split = [n["text"] for n in numbers if n["lines"] > 1]
    print(f"\nphone: {len(numbers)} numbers in the Model tab's tables, {len(split)} split across lines")
    assert not split
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    text = phone.inner_text("#mim-model-card")
    assert "see the Model tab" not in text and "too compressed to judge" in text
    assert "Who gives the verdict" in text


def test_the_batch_verdicts_fit_a_phone_screen(phone):
    phone.get_by_role("tab", name="Batch").click()
    phone.set_input_files("#mim-batch-files input[type=file]", [str(p) for p in BATCH])
    phone.wait_for_function("n => document.querySelectorAll('#mim-batch-files tr.file').length === n", arg=len(BATCH))
    phone.click("#mim-batch-run")
    phone.wait_for_selector(f"#mim-batch-summary :text('{len(BATCH)} photo(s)')")
    cells = phone.evaluate("""() => {
      const heads = [...document.querySelectorAll('#mim-batch-table th')];
      const col = heads.findIndex(th => th.innerText.trim() === 'verdict');
      const rows = [...document.querySelectorAll('#mim-batch-table .virtual-row')];
      return rows.map(row => { const cell = row.querySelectorAll('.body-cell')[col], r = cell.getBoundingClientRect();
                               return {text: cell.innerText.trim(), right: r.right, width: r.width}; }); }""")
    print(f"\nphone: batch verdict column right edge {max(c['right'] for c in cells):.0f} px (screen 390)")
    assert len(cells) == len(BATCH) and all(c["text"] for c in cells)
    assert all(0 < c["right"] <= PHONE["width"] and c["width"] > 0 for c in cells)
