"""The washout design: every case unaided first, aided readings opening `washout_days` later in a second
random order without the unaided verdict on screen; set with `python -m clinical design`."""

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clinical import review
from clinical.design import set_washout, washout_days
from clinical.reader_study import design_section
from clinical.merge import merge
from clinical.review_ui import SCREEN, ReviewHandlers
from clinical.store import ClinicalError, Store
from tests.conftest import REPO
from tests.clinical_study import study_store


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clinical", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def study(tmp_path: Path, data_root: Path) -> Path:
    study_store(tmp_path, data_root, 2, {"ana": ("Dr Ana", "reviewer")})
    return tmp_path / "study.sqlite"


def test_the_design_command(study: Path):
    assert cli("design", "--db", str(study)).stdout.startswith("design: sequential reading")
    result = cli("design", "--db", str(study), "--washout-days", "28")
    assert result.returncode == 0 and result.stdout.startswith("design: washout of 28 day(s)")
    result = cli("design", "--db", str(study), "--washout-days", "-1")
    assert result.returncode == 2 and result.stderr == "error: The washout must be a number of days from 0 to 365.\n"
    store = Store(study)
    assert washout_days(store) == 28
    assert store.query("SELECT key, value FROM study_settings") == [{"key": "washout_days", "value": "28"}]


def test_washout_reading_order_waiting_and_the_aided_screen(study: Path, detector):
    store = Store(study)
    set_washout(store, 7)
    handlers = ReviewHandlers(study, detector)
    _, ana = store.sign_in("ana", "ana-secret-1")
    queue = store.queue("ana")
    for case in queue:  # all four unaided readings first, no reveal step between them
        item = review.next_item(store, ana)
        assert (item.case_id, item.step, item.unaided) == (case, "unaided", None)
        review.record_verdict(store, ana, [case, "unaided"], "mpox", 3, 5.0, "")
    first_ref = store.verdicts_of(ana)[0]["ref"]
    assert "Saved correction" in review.correct(store, ana, first_ref, "not mpox", 3, "")  # not shown yet
    assert review.next_item(store, ana) is None
    assert "Your aided reading opens on" in review.progress_text(store, ana, None)
    later = datetime.now(timezone.utc) + timedelta(days=7, minutes=1)
    order = [review.next_item(store, ana, now=later).case_id]
    assert order[0] == review.aided_order("ana", queue)[0] and review.aided_order("ana", queue) != queue
    assert review.aided_opens_at(store, ana, now=later) is None

    set_washout(store, 1e-5)  # under a second: the real clock, instead of waiting a week
    time.sleep(1.0)
    screen = dict(zip(SCREEN, handlers.sign_in("ana", "ana-secret-1")))
    assert screen["current"] == [order[0], "aided"] and screen["original"] is not None
    assert screen["unaided"] == "" and screen["label"] is None  # the unaided verdict is not shown
    assert store.model_shown("ana") == {order[0]}  # recorded with the screen
    unaided = next(v["ref"] for v in store.verdicts_of(ana) if v["case_id"] == order[0] and v["phase"] == "unaided"
                   and v["superseded_by"] is None)
    with pytest.raises(ClinicalError, match="once the model output has been shown"):
        review.correct(store, ana, unaided, "uncertain", 2, "")
    saved = dict(zip(SCREEN, handlers.save(screen["token"], screen["current"], screen["shown_at"], "mpox", 4, "")))
    assert saved["status"].startswith("Saved aided verdict") and saved["current"][1] == "aided"
    assert saved["current"][0] == review.aided_order("ana", queue)[1]
    with pytest.raises(ClinicalError, match="cannot change once aided verdicts"):
        set_washout(store, 0)


def test_report_states_the_washout(study: Path):
    store = Store(study)
    assert design_section(store, [])["washout"].startswith("sequential reading")
    set_washout(store, 14)
    design = design_section(store, [])
    assert design["washout"].startswith("washout of 14 day(s)") and design["settings"] == {"washout_days": "14"}


def test_merge_refuses_sites_with_different_designs(study: Path, tmp_path: Path):
    other = tmp_path / "SITE_B.db"
    Store(other)
    set_washout(Store(study), 14)
    with pytest.raises(ClinicalError, match=r"different designs \(washout days study: 14, SITE_B: 0\)"):
        merge([study, other], tmp_path / "STUDY.db")
    assert not (tmp_path / "STUDY.db").exists()
