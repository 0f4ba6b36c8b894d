"""The Review tab driven through gradio_client and its handlers: sign in, unaided verdict, correction,
reveal, aided verdict, resume, isolation; a refused save keeps the form and the timer; the model runs
once per case; confidence has no default."""

import os
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402

from clinical.cases import collect_images, import_images  # noqa: E402
from clinical.review_ui import API_SCREEN, SCREEN, build_review_tab  # noqa: E402
from clinical.store import Store  # noqa: E402
from tests.clinical_study import real_study  # noqa: E402

STATUS, PROGRESS, PHOTO, UNAIDED = (API_SCREEN.index(n) for n in ("status", "progress", "photo", "unaided"))
PANELS = [API_SCREEN.index(n) for n in ("original", "masked", "inpainted", "score_map")]
CARD, COLOUR_BAR, CONFIDENCE = (API_SCREEN.index(n) for n in ("verdict_card", "colour_bar", "confidence"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CountingDetector:
    """The real detector, counting its analyses."""

    def __init__(self, detector) -> None:
        self.detector, self.calls = detector, []

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def analyze(self, image):
        self.calls.append(image)
        return self.detector.analyze(image)


@pytest.fixture(scope="module")
def app(tmp_path_factory, detector, data_root):
    root = tmp_path_factory.mktemp("review")
    db = root / "study.sqlite"
    store = Store(db)
    import_images(store, collect_images([real_study(root, data_root, 2)]))  # 4 cases, 3 read below
    store.create_reviewer("ana", "Dr Ana", "reviewer", "ana-secret-1")
    store.create_reviewer("ben", "Dr Ben", "reviewer", "ben-secret-1")
    store.create_reviewer("root", "Study admin", "admin", "root-secret-1")
    counting = CountingDetector(detector)
    with gr.Blocks() as blocks:
        with gr.Tabs():
            handlers = build_review_tab(db, counting)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", store, handlers, counting
    blocks.close()


def client(url: str) -> Client:
    return Client(url, verbose=False)


def test_sign_in_unaided_correction_reveal_aided_then_resume(app):
    url, store, _, _ = app
    ana = client(url)
    assert "Sign-in failed" in ana.predict("ana", "not-her-secret", api_name="/review_sign_in")[STATUS]
    screen = ana.predict("ana", "ana-secret-1", api_name="/review_sign_in")
    assert "Signed in as **Dr Ana**" in screen[STATUS] and screen[CONFIDENCE] is None  # no default confidence
    assert "Case 1 of 4" in screen[PROGRESS] and "step 1 of 2" in screen[PROGRESS]
    assert Path(screen[PHOTO]).is_file() and all(screen[i] is None for i in PANELS)  # the model is hidden
    assert screen[CARD] == "" and screen[UNAIDED] == ""

    screen = ana.predict("mpox", 4, "vesicles", api_name="/review_save")
    assert screen[STATUS].startswith("Saved unaided verdict") and "mpox, confidence 4" in screen[STATUS]
    assert "step 1 of 2 saved" in screen[PROGRESS] and all(screen[i] is None for i in PANELS)  # still hidden
    screen = ana.predict("not mpox", 4, "vesicles", api_name="/review_save")  # the wrong click, corrected
    assert screen[STATUS].startswith("Corrected your unaided verdict") and "now not mpox" in screen[STATUS]
    screen = ana.predict(api_name="/review_reveal")
    assert "Model output shown" in screen[STATUS] and "step 2 of 2" in screen[PROGRESS]
    assert all(Path(screen[i]).is_file() for i in PANELS)  # original, masked, inpainted, score map
    assert "mim-colourbar" in screen[COLOUR_BAR] and "data-verdict" in screen[CARD]
    assert "Your unaided verdict (corrected):** not mpox, confidence 4" in screen[UNAIDED]

    screen = ana.predict("not mpox", 2, "", api_name="/review_save")
    assert screen[STATUS].startswith("Saved aided verdict") and "not mpox, confidence 2" in screen[STATUS]
    assert "Case 2 of 4" in screen[PROGRESS] and "1 case(s) complete" in screen[PROGRESS]
    assert ana.predict("uncertain", 3, "", api_name="/review_save")[STATUS].startswith("Saved unaided verdict")
    assert "Model output shown" in ana.predict(api_name="/review_reveal")[STATUS]

    # interrupted: a new browser session signs in and resumes at case 2, aided step, model output shown
    again = client(url)
    assert again.predict(api_name="/review_my_verdicts")[0]["data"] == []  # nothing before sign-in
    screen = again.predict("ana", "ana-secret-1", api_name="/review_sign_in")
    assert "Case 2 of 4" in screen[PROGRESS] and "step 2 of 2" in screen[PROGRESS]
    assert all(Path(screen[i]).is_file() for i in PANELS)
    assert again.predict("mpox", 5, "", api_name="/review_save")[STATUS].startswith("Saved aided verdict")

    rows = store.query("SELECT phase, label, confidence, lead_time_s, model_version, session_id, supersedes "
                       "FROM verdicts WHERE reviewer_id = 'ana' ORDER BY id")
    assert [(r["phase"], r["label"], r["confidence"], r["supersedes"] is not None) for r in rows] == [
        ("unaided", "mpox", 4, False), ("unaided", "not mpox", 4, True), ("aided", "not mpox", 2, False),
        ("unaided", "uncertain", 3, False), ("aided", "mpox", 5, False)]
    assert all(r["lead_time_s"] is not None and r["model_version"].startswith("mim-gan") for r in rows)
    assert len({r["session_id"] for r in rows}) == 2  # two sessions, one queue
    table, _ = again.predict(api_name="/review_my_verdicts")
    assert [(row[2], row[3], row[7]) for row in table["data"]] == [
        ("unaided", "mpox", "corrected"), ("unaided", "not mpox", "current"), ("aided", "not mpox", "current"),
        ("unaided", "uncertain", "current"), ("aided", "mpox", "current")]
    assert table["data"][1][6] == table["data"][0][0]  # the correction names the verdict it replaces


def test_a_refused_save_keeps_the_form_and_timer_and_the_model_runs_once_per_case(app):
    url, store, handlers, counting = app
    screen = dict(zip(SCREEN, handlers.sign_in("ben", "ben-secret-1")))
    token, current, shown_at = screen["token"], screen["current"], screen["shown_at"]
    assert screen["confidence"] is None and screen["label"] is None
    for label, confidence, why in ((None, None, "Choose a verdict"), ("mpox", None, "Choose your confidence"),
                                   (None, 3, "Choose a verdict")):
        refused = dict(zip(SCREEN, handlers.save(token, current, shown_at, label, confidence, "keep me")))
        assert refused["status"].startswith(f"Not saved: {why}")
        skipped = {name for name, value in refused.items() if value == gr.skip()}
        assert skipped == set(SCREEN) - {"status"}  # form, comment, timer, photo and panels untouched
    saved = dict(zip(SCREEN, handlers.save(token, current, shown_at, "mpox", 3, "keep me")))
    lead = store.query("SELECT lead_time_s FROM verdicts WHERE reviewer_id = 'ben'")[0]["lead_time_s"]
    assert saved["status"].startswith("Saved unaided") and lead is not None  # timed from the first display

    png = store.case_png(current[0])
    runs = lambda: sum(call == png for call in counting.calls)  # noqa: E731 - analyses of this case
    shown = dict(zip(SCREEN, handlers.reveal(token, saved["current"])))
    assert shown["original"] is not None and runs() == 1  # once per case (shared by every reviewer)
    again = dict(zip(SCREEN, handlers.save(token, shown["current"], shown["shown_at"], None, 4, "")))
    assert again["status"].startswith("Not saved") and again["original"] == gr.skip()
    resumed = dict(zip(SCREEN, handlers.sign_in("ben", "ben-secret-1")))  # another tab, same case
    assert resumed["original"] is not None and runs() == 1  # from the cache
    client(url).predict("ben", "ben-secret-1", api_name="/review_sign_in")  # and through the API
    assert runs() == 1
    assert handlers.save(token, shown["current"], shown["shown_at"], "mpox", 4, "")[SCREEN.index("status")] \
        .startswith("Saved aided")


def test_a_reviewer_cannot_read_another_reviewers_verdicts(app):
    url, store, _, _ = app
    ana = client(url)
    ana.predict("ana", "ana-secret-1", api_name="/review_sign_in")
    ben = client(url)
    screen = ben.predict("ben", "ben-secret-1", api_name="/review_sign_in")
    assert "1 case(s) complete" in screen[PROGRESS]  # ana's reads don't count
    ben.predict("ungradable", 1, "blurred", api_name="/review_save")
    ben_rows = ben.predict(api_name="/review_my_verdicts")[0]["data"]
    ana_rows = ana.predict(api_name="/review_my_verdicts")[0]["data"]
    assert [(r[2], r[3]) for r in ben_rows][-1] == ("unaided", "ungradable")
    assert ana_rows and not {r[0] for r in ben_rows} & {r[0] for r in ana_rows}
    assert not {r[1] for r in ben_rows} & {r[1] for r in ana_rows}  # case references differ per reviewer too
    assert store.query("SELECT count(*) AS n FROM verdicts WHERE reviewer_id = 'ana'")[0]["n"] == len(ana_rows)
    assert "Signed out" in ben.predict(api_name="/review_sign_out")[STATUS]
    assert ben.predict(api_name="/review_my_verdicts")[0]["data"] == []  # the session is closed server-side too


def test_only_an_admin_creates_reviewers_sees_progress_and_stale_saves_are_refused(app):
    url, store, handlers, _ = app
    ben = client(url)
    ben.predict("ben", "ben-secret-1", api_name="/review_sign_in")
    assert "Only an admin" in ben.predict("cy", "Dr Cy", "reviewer", "cy-secret-1",
                                          api_name="/review_create_reviewer")[0]
    lines, table = ben.predict(api_name="/review_study_progress")
    assert lines == "" and table["data"] == []
    admin = client(url)
    admin.predict("root", "root-secret-1", api_name="/review_sign_in")
    created = admin.predict("cy", "Dr Cy", "reviewer", "cy-secret-1", api_name="/review_create_reviewer")
    assert "Created reviewer 'cy'" in created[0] and list(created[1:]) == ["", "", "reviewer", ""]
    lines, table = admin.predict(api_name="/review_study_progress")
    progress = {row[0]: row for row in table["data"]}
    assert "**ana** (Dr Ana, reviewer): unaided 2/4, aided 2/4, 1 correction(s)" in lines
    assert progress["ana"][3:7] == [2, 2, 4, 1] and progress["cy"][3:5] == [0, 0]  # unaided, aided, cases, fixes
    screen = handlers.sign_in("cy", "cy-secret-1")  # the handlers directly: a double click on Save
    token, current, shown_at = screen[0], screen[1], screen[2]
    first = handlers.save(token, current, shown_at, "mpox", 3, "")
    second = handlers.save(token, current, shown_at, "mpox", 3, "")
    status = SCREEN.index("status")
    assert first[status].startswith("Saved unaided verdict") and second[status].startswith("Not saved")
    assert "no longer the current one" in second[status]
    assert store.query("SELECT count(*) AS n FROM verdicts WHERE reviewer_id = 'cy'")[0]["n"] == 1
