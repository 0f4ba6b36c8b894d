"""The Review tab driven through gradio_client: sign in, unaided verdict, aided verdict, resume, isolation."""

import os
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402
from PIL import Image  # noqa: E402

from clinical.cases import collect_images, import_images  # noqa: E402
from clinical.review_ui import build_review_tab  # noqa: E402
from clinical.store import Store  # noqa: E402

STATUS, PROGRESS, PHOTO, MIM_TEXT, GALLERY = range(5)  # API outputs of the screen (states and layout hidden)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory, detector):
    root = tmp_path_factory.mktemp("review")
    rng = np.random.default_rng(5)
    for label in ("Monkeypox", "Others"):
        (root / "ds" / label).mkdir(parents=True)
    for i in range(3):  # skin-toned noise, 3 cases
        pixels = np.clip(rng.normal((190, 130, 110), 25, (96, 96, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "ds" / ("Monkeypox" if i < 2 else "Others") / f"{i}.png")
    db = root / "study.sqlite"
    store = Store(db)
    import_images(store, collect_images([root / "ds"]))
    store.create_reviewer("ana", "Dr Ana", "reviewer", "ana-secret-1")
    store.create_reviewer("ben", "Dr Ben", "reviewer", "ben-secret-1")
    store.create_reviewer("root", "Study admin", "admin", "root-secret-1")
    with gr.Blocks() as blocks:
        with gr.Tabs():
            handlers = build_review_tab(db, detector)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", store, handlers
    blocks.close()


def client(url: str) -> Client:
    return Client(url, verbose=False)


def test_sign_in_unaided_then_aided_then_resume(app):
    url, store, _ = app
    ana = client(url)
    assert "Sign-in failed" in ana.predict("ana", "not-her-secret", api_name="/review_sign_in")[STATUS]
    screen = ana.predict("ana", "ana-secret-1", api_name="/review_sign_in")
    assert "Signed in as **Dr Ana**" in screen[STATUS]
    assert "Case 1 of 3" in screen[PROGRESS] and "step 1 of 2" in screen[PROGRESS]
    assert Path(screen[PHOTO]).is_file() and screen[GALLERY] == [] and screen[MIM_TEXT] == ""  # model hidden

    screen = ana.predict("mpox", 4, "vesicles", api_name="/review_save")
    assert screen[STATUS].startswith("Saved unaided verdict") and "mpox, confidence 4" in screen[STATUS]
    assert "Case 1 of 3" in screen[PROGRESS] and "step 2 of 2" in screen[PROGRESS]
    assert "score" in screen[MIM_TEXT] and len(screen[GALLERY]) == 8  # the MIM panels are revealed now

    screen = ana.predict("not mpox", 2, "", api_name="/review_save")
    assert screen[STATUS].startswith("Saved aided verdict") and "not mpox, confidence 2" in screen[STATUS]
    assert "Case 2 of 3" in screen[PROGRESS] and "1 case(s) complete" in screen[PROGRESS]
    screen = ana.predict("uncertain", 3, "", api_name="/review_save")
    assert screen[STATUS].startswith("Saved unaided verdict")

    # interrupted: a new browser session signs in and resumes at case 2, aided step
    again = client(url)
    assert again.predict(api_name="/review_my_verdicts")["data"] == []  # nothing before sign-in
    screen = again.predict("ana", "ana-secret-1", api_name="/review_sign_in")
    assert "Case 2 of 3" in screen[PROGRESS] and "step 2 of 2" in screen[PROGRESS] and len(screen[GALLERY]) == 8
    assert again.predict("mpox", 5, "", api_name="/review_save")[STATUS].startswith("Saved aided verdict")

    rows = store.query("SELECT phase, label, confidence, lead_time_s, model_version, session_id FROM verdicts "
                       "WHERE reviewer_id = 'ana' ORDER BY id")
    assert [(r["phase"], r["label"], r["confidence"]) for r in rows] == [
        ("unaided", "mpox", 4), ("aided", "not mpox", 2), ("unaided", "uncertain", 3), ("aided", "mpox", 5)]
    assert all(r["lead_time_s"] is not None and r["model_version"].startswith("mim-gan") for r in rows)
    assert len({r["session_id"] for r in rows}) == 2  # two sessions, one queue
    mine = again.predict(api_name="/review_my_verdicts")["data"]
    assert [(row[2], row[3]) for row in mine] == [(r["phase"], r["label"]) for r in rows]


def test_a_reviewer_cannot_read_another_reviewers_verdicts(app):
    url, store, _ = app
    ana = client(url)
    ana.predict("ana", "ana-secret-1", api_name="/review_sign_in")
    ben = client(url)
    screen = ben.predict("ben", "ben-secret-1", api_name="/review_sign_in")
    assert "Case 1 of 3" in screen[PROGRESS] and "0 case(s) complete" in screen[PROGRESS]  # ana's reads don't count
    ben.predict("ungradable", 1, "blurred", api_name="/review_save")
    ben_rows = ben.predict(api_name="/review_my_verdicts")["data"]
    ana_rows = ana.predict(api_name="/review_my_verdicts")["data"]
    assert [(r[2], r[3]) for r in ben_rows] == [("unaided", "ungradable")]
    ben_ids = {r[0] for r in ben_rows}
    assert ana_rows and not ben_ids & {r[0] for r in ana_rows}
    assert store.query("SELECT count(*) AS n FROM verdicts WHERE reviewer_id = 'ana'")[0]["n"] == len(ana_rows)
    assert "Signed out" in ben.predict(api_name="/review_sign_out")[STATUS]
    assert ben.predict(api_name="/review_my_verdicts")["data"] == []  # the session is closed server-side too


def test_only_an_admin_creates_reviewers_and_stale_saves_are_refused(app):
    url, store, handlers = app
    ben = client(url)
    ben.predict("ben", "ben-secret-1", api_name="/review_sign_in")
    assert "Only an admin" in ben.predict("cy", "Dr Cy", "reviewer", "cy-secret-1", api_name="/review_create_reviewer")
    admin = client(url)
    admin.predict("root", "root-secret-1", api_name="/review_sign_in")
    assert "Created reviewer 'cy'" in admin.predict("cy", "Dr Cy", "reviewer", "cy-secret-1",
                                                    api_name="/review_create_reviewer")
    screen = handlers.sign_in("cy", "cy-secret-1")  # the handlers directly: a double click on Save
    token, current, shown_at = screen[0], screen[1], screen[2]
    first = handlers.save(token, current, shown_at, "mpox", 3, "")
    second = handlers.save(token, current, shown_at, "mpox", 3, "")
    assert first[3].startswith("Saved unaided verdict") and second[3].startswith("Not saved")
    assert store.query("SELECT count(*) AS n FROM verdicts WHERE reviewer_id = 'cy'")[0]["n"] == 1
