"""Who is a reader: every reviewer; an admin (study coordinator) only when given a reading queue or once
they have verdicts. A coordinator who reads nothing gets no queue and is not listed as a reader."""

import subprocess
import sys
from pathlib import Path

import pytest

from clinical.review import next_item, progress_text
from clinical.status import format_table, reader_progress, summary_lines
from clinical.store import Store
from tests.clinical_study import signed_in, study_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path, data_root: Path) -> Store:  # 6 real photos, 6 usable cases
    return study_store(tmp_path, data_root, 3, {"ana": ("Dr Ana", "reviewer"), "coord": ("Coordinator", "admin")})


def queue_rows(store: Store, rid: str) -> int:
    return store.query("SELECT count(*) AS n FROM queue WHERE reviewer_id = ?", [rid])[0]["n"]


def test_an_admin_who_reads_nothing_gets_no_queue_and_is_no_reader(store: Store):
    coord = signed_in(store, "coord")
    assert next_item(store, coord) is None and store.queue("coord") == []
    assert queue_rows(store, "coord") == 0
    assert "without a reading queue" in progress_text(store, coord, None)
    progress = reader_progress(store)
    assert [r["reader"] for r in progress["readers"]] == ["ana"] and progress["admins_not_reading"] == ["coord"]
    assert "**coord**" not in summary_lines(progress)
    table = format_table(progress)
    assert table.splitlines()[0] == ("6 usable case(s); 0 reader(s) with verdicts; admin(s) without a reading "
                                     "queue, not readers: coord")
    assert not any(line.startswith("coord") for line in table.splitlines()[1:])


def test_reviewers_keep_their_queue(store: Store):
    ana = signed_in(store, "ana")
    item = next_item(store, ana)
    assert item is not None and item.total == 6 and queue_rows(store, "ana") == 6


def test_an_admin_given_a_queue_or_with_verdicts_is_a_reader(store: Store):
    store.set_reads("coord")
    coord = signed_in(store, "coord")
    assert next_item(store, coord).total == 6 and queue_rows(store, "coord") == 6
    assert [r["reader"] for r in reader_progress(store)["readers"]] == ["ana", "coord"]

    store.create_reviewer("boss", "Boss", "admin", "boss-secret-1")  # no queue, but records a verdict anyway
    boss = signed_in(store, "boss")
    store.add_verdict(boss, store.cases()[0]["id"], "unaided", "mpox", 3)
    assert store.is_reader("boss") and len(store.queue("boss")) == 6
    progress = reader_progress(store)
    assert [r["reader"] for r in progress["readers"]] == ["ana", "boss", "coord"]
    assert progress["admins_not_reading"] == []


def test_a_queue_made_before_the_fix_does_not_make_an_admin_a_reader(store: Store):
    """Older versions gave every admin who signed in a queue: those rows alone do not make them a reader."""
    with store.write() as db:
        db["queue"].insert_all({"reviewer_id": "coord", "position": i, "case_id": c["id"], "ref": f"old{i}"}
                               for i, c in enumerate(store.cases()))
    assert [r["reader"] for r in reader_progress(store)["readers"]] == ["ana"]
    assert store.queue("coord") == []


def test_add_reviewer_reads_flag(store: Store):
    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "clinical", "add-reviewer", "--db", str(store.path), *args,
                               "--credential-stdin"], input="lead-secret-1\n", cwd=REPO, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "created admin lead (not a reader)" in cli("--id", "lead", "--role", "admin")
    assert not store.is_reader("lead")
    assert "lead now has a reading queue" in cli("--id", "lead", "--reads")
    assert store.is_reader("lead") and len(store.queue("lead")) == 6
