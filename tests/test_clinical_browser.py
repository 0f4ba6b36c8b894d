"""A scripted reader study in a real browser (Debian's Chromium driven by Playwright): a coordinator
imports cases and creates two reviewers; one reviewer reads on a desktop with the keyboard (a refused
save, a correction before the model output, the aided screen), the other on a phone with taps (the
panels stacked, a correction of an aided verdict); the coordinator follows progress and downloads the
report. Each step is screenshotted into a temporary folder; with ``MIM_CLINICAL_SCREENSHOTS=docs/clinical``
the screenshots are also written there, shrunk to small palette PNGs (the committed ones)::

    MIM_CLINICAL_SCREENSHOTS=docs/clinical .venv/bin/python -m pytest -q tests/test_clinical_browser.py

Needs /usr/bin/chromium (``apt-get install -y chromium``); Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from tests.conftest import REPO
from tests.demo_server import running_demo
from tests.test_demo_browser import CHROMIUM, CHROMIUM_ARGS

WAIT_MS = 120_000  # generous: CI machines are slow and shared; nothing here asserts on time
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PANELS = ["#review-original", "#review-masked", "#review-inpainted", "#review-score-map"]
LOADED = ("sel => { const i = document.querySelector(`${sel} img`);"
          " return !!i && i.complete && i.naturalWidth > 0 }")


def cli(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "clinical", *args], cwd=REPO, capture_output=True, text=True,
                            input=stdin, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextmanager
def review_server(detector, db: Path, uploads: Path) -> Iterator[str]:
    """The demo with the Review tab on ``db`` (as app.py mounts it with MIM_CLINICAL_DB), on a free port."""
    from clinical.review_ui import build_review_tab

    with running_demo(detector, uploads, [lambda ctx: build_review_tab(db, ctx.detector)]) as (url, _):
        yield url


class Shots:
    """Screenshots of each step: full size in ``folder``; small palette PNGs in $MIM_CLINICAL_SCREENSHOTS."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        target = os.environ.get("MIM_CLINICAL_SCREENSHOTS")
        self.docs = (REPO / target) if target and not Path(target).is_absolute() else (Path(target) if target else None)
        self.taken: list[Path] = []

    def __call__(self, page, name: str, selector: str | None = None, full_page: bool = True) -> None:
        path = self.folder / f"{name}.png"
        page.wait_for_timeout(400)  # let the last update paint
        if selector:
            page.locator(selector).screenshot(path=str(path))
        else:
            page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 5_000
        self.taken.append(path)
        if self.docs is not None:
            self.docs.mkdir(parents=True, exist_ok=True)
            image = Image.open(path).convert("RGB")
            if image.width > 900:
                image = image.resize((900, round(image.height * 900 / image.width)), Image.LANCZOS)
            image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(self.docs / path.name, optimize=True)


def open_review(browser, url: str, viewport: dict, phone: bool = False):
    page = browser.new_page(viewport=viewport, device_scale_factor=1, is_mobile=phone, has_touch=phone,
                            accept_downloads=True)
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.get_by_role("tab", name="Review").click()
    return page


def field(page, elem_id: str):
    return page.locator(f"#{elem_id}").locator("input, textarea").first


def sign_in(page, reviewer: str, credential: str) -> None:
    field(page, "review-id").fill(reviewer)
    field(page, "review-credential").fill(credential)
    page.click("#review-sign-in")
    page.wait_for_selector(f"#review-status :text('({reviewer})')")
    box = page.locator("#review-credential").locator("input, textarea")
    assert box.count() == 0 or box.first.input_value() == ""  # never kept in the field


def shows(page, selector: str, text: str) -> None:
    """Wait until the element's visible text contains ``text`` (tables keep hidden copies of their cells)."""
    page.wait_for_function("([sel, text]) => { const e = document.querySelector(sel);"
                           " return !!e && e.innerText.includes(text) }", arg=[selector, text])


def status(page, text: str) -> None:
    page.wait_for_selector(f"#review-status :text('{text}')")


def panels_loaded(page) -> list[dict]:
    """Wait for the four panels' images; their boxes in page coordinates."""
    for selector in PANELS:
        page.locator(selector).scroll_into_view_if_needed()  # images load once on screen
        page.wait_for_function(LOADED, arg=selector)
    return [page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect();"
                                  " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width} }")
            for selector in PANELS]


def checked(page, elem_id: str, value: str) -> bool:
    return page.locator(f"#{elem_id} input[value='{value}']").is_checked()


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_root: Path) -> Path:
    """Step 1, import: the coordinator builds the study database with the command line."""
    root = tmp_path_factory.mktemp("browser_study")
    for label in ("Monkeypox", "Others"):
        (root / "MSLD_v1" / label).mkdir(parents=True)
        for path in sorted((data_root / "MSLD_v1" / label).iterdir())[:2]:
            shutil.copy(path, root / "MSLD_v1" / label)
    db = root / "study.sqlite"
    assert "imported 4 case(s)" in cli("import-cases", "--db", str(db), "--label-from-folder", str(root / "MSLD_v1"))
    cli("add-reviewer", "--db", str(db), "--id", "coord", "--name", "Study coordinator", "--role", "admin",
        "--credential-stdin", stdin="coord-secret-1\n")
    return db


def test_a_reader_study_in_the_browser(study: Path, detector, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), "install Debian's Chromium: apt-get install -y chromium"
    shot = Shots(tmp_path)
    with review_server(detector, study, tmp_path / "uploads") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        # -- the coordinator: progress after the import, two reviewers created
        coord = open_review(browser, url, DESKTOP)
        sign_in(coord, "coord", "coord-secret-1")
        # the coordinator reads nothing: no queue, named apart in the progress, never a reader with 0/4
        shows(coord, "#review-study-summary", "admin(s) without a reading queue, not readers: coord")
        assert "Study coordinator" not in coord.inner_text("#review-study-progress")
        shot(coord, "01_coordinator_after_import", "#review-admin")
        coord.get_by_text("Admin: create a reviewer").click()
        for reviewer, name in (("ana", "Dr Ana"), ("ben", "Dr Ben")):
            field(coord, "review-new-id").fill(reviewer)
            field(coord, "review-new-name").fill(name)
            field(coord, "review-new-credential").fill(f"{reviewer}-secret-1")
            if reviewer == "ben":
                shot(coord, "02_coordinator_creates_a_reviewer", "#review-admin")
            coord.click("#review-create")
            coord.wait_for_selector(f"#review-admin-status :text(\"Created reviewer '{reviewer}'\")")
            assert field(coord, "review-new-credential").input_value() == ""  # cleared, never echoed
            assert field(coord, "review-new-id").input_value() == ""

        # -- reviewer 1 on a desktop, with the keyboard
        ana = open_review(browser, url, DESKTOP)
        sign_in(ana, "ana", "ana-secret-1")
        assert "Keys:" in ana.inner_text("#review-keys")
        assert not any(checked(ana, "review-confidence", str(v)) for v in range(1, 6))  # no default
        ana.keyboard.press("m")
        ana.keyboard.press("Enter")  # no confidence chosen: refused, the form is kept
        status(ana, "Not saved: Choose your confidence")
        assert checked(ana, "review-verdict", "mpox")
        shot(ana, "03_desktop_refused_save_keeps_the_form")
        ana.keyboard.press("4")
        ana.keyboard.press("Enter")
        status(ana, "Saved unaided verdict")
        assert ana.locator("#review-original").count() == 0 or not ana.locator("#review-original").is_visible()
        ana.keyboard.press("n")  # the wrong click, corrected before the model output is shown
        ana.keyboard.press("Enter")
        status(ana, "Corrected your unaided verdict")
        shot(ana, "04_desktop_unaided_corrected")
        ana.keyboard.press("v")
        status(ana, "Model output shown")
        boxes = panels_loaded(ana)
        assert len({round(b["y"]) for b in boxes}) == 1 and all(b["width"] >= 250 for b in boxes)  # one row
        assert "not mpox, confidence 4" in ana.inner_text("#review-unaided")
        assert ana.locator("#review-colour-bar .mim-gradient").count() == 1
        assert ana.locator("#review-model-verdict .mim-verdict").count() == 1
        ana.locator("#review-aid").scroll_into_view_if_needed()
        shot(ana, "05_desktop_aided_screen", "#review-aid")
        for key in ("n", "5", "Enter"):
            ana.keyboard.press(key)
        status(ana, "Saved aided verdict")
        for key in ("u", "3", "Enter", "v"):
            ana.keyboard.press(key)
            if key == "Enter":
                status(ana, "Saved unaided verdict")
        status(ana, "Model output shown")
        for key in ("m", "4", "Enter"):
            ana.keyboard.press(key)
        status(ana, "Saved aided verdict")
        ana.click("#review-sign-out")
        status(ana, "Signed out")
        assert field(ana, "review-credential").input_value() == ""  # the form comes back empty

        # -- reviewer 2 on a phone, with taps: the panels stack, an aided verdict corrected afterwards
        ben = open_review(browser, url, PHONE, phone=True)
        sign_in(ben, "ben", "ben-secret-1")
        ben.locator("#review-verdict").get_by_text("uncertain", exact=True).click()
        ben.locator("#review-confidence").get_by_text("2", exact=True).click()
        ben.click("#review-save")
        status(ben, "Saved unaided verdict")
        ben.click("#review-reveal")
        status(ben, "Model output shown")
        boxes = panels_loaded(ben)
        assert [round(b["x"]) for b in boxes] == [round(boxes[0]["x"])] * 4  # stacked, one above the other
        assert all(b["width"] >= 300 for b in boxes) and sorted(b["y"] for b in boxes) == [b["y"] for b in boxes]
        shot(ben, "06_phone_aided_screen", "#review-aid")
        ben.locator("#review-verdict").get_by_text("mpox", exact=True).click()
        ben.locator("#review-confidence").get_by_text("3", exact=True).click()
        ben.click("#review-save")
        status(ben, "Saved aided verdict")
        ben.get_by_text("My verdicts and corrections").click()
        ben.click("#review-mine")
        shows(ben, "#review-table", "aided")
        ben.locator("#review-fix-ref").locator("input").click()
        ben.get_by_role("option").filter(has_text="aided: mpox").first.click()
        ben.locator("#review-fix-label").get_by_text("not mpox", exact=True).click()
        ben.locator("#review-fix-confidence").get_by_text("4", exact=True).click()
        ben.click("#review-fix")
        ben.wait_for_selector("#review-fix-status :text('Saved correction')")
        shows(ben, "#review-table", "corrected")
        shot(ben, "07_phone_aided_verdict_corrected", "#review-work")

        # -- the coordinator: progress per reader, then the report, downloaded
        coord.click("#review-refresh")
        shows(coord, "#review-study-summary", "ben (Dr Ben, reviewer): unaided 1/4, aided 1/4, 1 correction(s)")
        cells = [c.strip() for c in coord.inner_text("#review-study-progress").split("last activity (UTC)")[1]
                 .splitlines() if c.strip()]  # one cell per line, row after row
        for reader, done in (("ana", ["2", "2", "4", "1"]), ("ben", ["1", "1", "4", "1"])):
            at = cells.index(reader)  # reader, name, role, unaided, aided, of cases, corrections, ...
            assert cells[at + 3:at + 7] == done
        shot(coord, "08_coordinator_progress", "#review-admin")
        phone_coord = open_review(browser, url, PHONE, phone=True)
        sign_in(phone_coord, "coord", "coord-secret-1")
        shows(phone_coord, "#review-study-summary", "ben (Dr Ben, reviewer): unaided 1/4, aided 1/4, 1 correction(s)")
        shot(phone_coord, "09_phone_coordinator_progress", "#review-admin")
        coord.get_by_text("Admin: validation report").click()
        coord.click("#review-export")
        coord.wait_for_selector("#review-report-files a[download='report.html']")
        shot(coord, "10_coordinator_report_ready", "#review-admin")
        with coord.expect_download() as download:
            coord.click("#review-report-files a[download='report.html']")
        report = tmp_path / "report.html"
        download.value.save_as(report)
        text = report.read_text()
        assert "ana" in text and "ben" in text
        for name, viewport in (("11_report_desktop", DESKTOP), ("12_report_phone", PHONE)):
            page = browser.new_page(viewport=viewport, device_scale_factor=1)
            page.goto(report.as_uri())
            shot(page, name, full_page=False)  # its first screen
            page.close()
        browser.close()
    assert len(shot.taken) == 12
