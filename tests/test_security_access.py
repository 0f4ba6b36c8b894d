"""Access control and what leaves the server: credentials, sign-in rate limiting, per-reviewer isolation,
the admin-only report, HTML escaping, upload names never used as paths, no EXIF/GPS in stored or served
images. The Review tab is mounted in the demo exactly as ``app.py`` does with MIM_CLINICAL_DB set."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from clinical import models, signin
from clinical.cases import collect_images, import_images
from clinical.report import write_report
from clinical.store import ClinicalError, Store
from tests.conftest import REPO
from tests.demo_server import EXAMPLE, free_port

STATUS, PROGRESS, PHOTO = range(3)  # API outputs of the review screen
CREDENTIALS = {"ana": "ana-secret-1", "ben": "ben-secret-1", "dee": "dee-secret-1", "root": "root-secret-1"}
NASTY = "$$<script>alert(1)</script>"  # a reviewer id: HTML, and mathtext that matplotlib cannot parse
NASTY_NAME = '<img src=x onerror="alert(2)">'
NASTY_COMMENT = "</td></tr></table><script>alert(3)</script>=HYPERLINK(\"http://x\")"


def gps_photo(path: Path, pixels: np.ndarray) -> None:
    """A JPEG with EXIF orientation 6, a GPS position and a camera model."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "SecretCam 3000"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif, quality=95)


def no_metadata(data: bytes) -> bool:
    image = Image.open(io.BytesIO(data))
    return (not image.getexif() and not set(image.info) - {"dpi"} and b"SecretCam" not in data
            and b"Exif" not in data)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("access")
    rng = np.random.default_rng(11)
    skin = lambda: np.clip(rng.normal((190, 130, 110), 25, (96, 128, 3)), 0, 255).astype(np.uint8)  # noqa: E731
    gps_photo(root / "ds" / "Monkeypox" / "gps.jpg", skin())
    Image.fromarray(skin()).save(root / "ds" / "Monkeypox" / "..\\..\\evil.png")
    (root / "ds" / NASTY_NAME).mkdir()
    Image.fromarray(skin()).save(root / "ds" / NASTY_NAME / "line\nbreak.png")
    store = Store(root / "study.sqlite")
    import_images(store, collect_images([root / "ds"]))
    for reviewer, credential in CREDENTIALS.items():
        store.create_reviewer(reviewer, None, "admin" if reviewer == "root" else "reviewer", credential)
    return root / "study.sqlite"


@pytest.fixture(scope="module")
def app(study: Path, detector, tmp_path_factory):
    """The demo with the Review tab, on a loopback port; yields (url, upload folder, review handlers)."""
    from clinical.review_ui import build_review_tab
    from demo.app import build_demo, launch_options

    uploads = tmp_path_factory.mktemp("uploads")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    built = {}
    demo = build_demo(detector=detector, extra_tabs=[
        lambda ctx: built.setdefault("review", build_review_tab(study, ctx.detector))])
    built["review"].report_boot = 100
    _, url, _ = demo.launch(**launch_options(server_name="127.0.0.1", server_port=free_port(),
                                             prevent_thread_lock=True, quiet=True))
    yield url, uploads, built["review"]
    demo.close()
    if previous is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


def client(url: str) -> Client:
    return Client(url, verbose=False)


def raw_call(url: str, api_name: str, data: list) -> tuple[str, object]:
    """Call an endpoint over plain HTTP as a hostile client would: (event, data) of its last message."""
    with httpx.Client(base_url=url, timeout=120) as http:
        response = http.post(f"gradio_api/call/{api_name}", json={"data": data})
        if response.status_code != 200:
            return "http", response.status_code
        event_id = response.json()["event_id"]
        text = http.get(f"gradio_api/call/{api_name}/{event_id}").text
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    payloads = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("data: ")]
    return events[-1], json.loads(payloads[-1]) if payloads and payloads[-1] != "null" else None


def test_credentials_are_stored_as_scrypt_hashes_only(study: Path):
    hashes = [r[0] for r in sqlite3.connect(study).execute("SELECT credential_hash FROM reviewers")]
    assert hashes and all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    raw = study.read_bytes() + (Path(f"{study}-wal").read_bytes() if Path(f"{study}-wal").exists() else b"")
    assert not any(secret.encode() in raw for secret in CREDENTIALS.values())


def test_sign_in_is_rate_limited_per_reviewer_and_the_limit_persists(app, study: Path):
    url, _, _ = app
    dee = client(url)
    for _ in range(signin.MAX_FAILURES):
        assert "Sign-in failed" in dee.predict("dee", "wrong-guess-1", api_name="/review_sign_in")[STATUS]
    refused = dee.predict("dee", CREDENTIALS["dee"], api_name="/review_sign_in")[STATUS]
    assert "Too many failed sign-ins" in refused and "Signed in" not in refused  # even the right credential
    assert "Signed in as" in client(url).predict("ben", CREDENTIALS["ben"], api_name="/review_sign_in")[STATUS]
    for _ in range(signin.MAX_FAILURES):  # unknown ids are limited the same way (nothing to enumerate)
        client(url).predict("nobody", "wrong-guess-1", api_name="/review_sign_in")
    assert "Too many failed" in client(url).predict("nobody", "x" * 9, api_name="/review_sign_in")[STATUS]

    with pytest.raises(ClinicalError, match="Too many failed sign-ins"):
        Store(study).sign_in("dee", CREDENTIALS["dee"])  # a restarted server (new Store) is still locked
    conn = sqlite3.connect(study)  # the window passes: move the failures 15 minutes into the past
    past = (datetime.now(timezone.utc) - timedelta(seconds=signin.WINDOW_S)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with conn:
        conn.execute("UPDATE sign_in_failures SET at = ? WHERE reviewer_id = 'dee'", [past])
    conn.close()
    assert "Signed in as" in client(url).predict("dee", CREDENTIALS["dee"], api_name="/review_sign_in")[STATUS]

    for _ in range(signin.MAX_FAILURES):  # locked again; the study admin resets the credential
        client(url).predict("dee", "wrong-guess-1", api_name="/review_sign_in")
    reset = subprocess.run([sys.executable, "-m", "clinical", "add-reviewer", "--db", str(study), "--id", "dee",
                            "--credential-stdin"], input="dee-new-secret\n", cwd=REPO, capture_output=True,
                           text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert reset.returncode == 0, reset.stderr
    assert "Signed in as" in client(url).predict("dee", "dee-new-secret", api_name="/review_sign_in")[STATUS]


def test_a_reviewer_cannot_read_or_write_others_verdicts_or_the_report(app, study: Path):
    url, _, handlers = app
    ben = client(url)
    ben.predict("ben", CREDENTIALS["ben"], api_name="/review_sign_in")
    assert ben.predict("mpox", 4, "ben's note", api_name="/review_save")[STATUS].startswith("Saved unaided")
    ben_ids = {row[0] for row in ben.predict(api_name="/review_my_verdicts")["data"]}
    ana = client(url)
    ana.predict("ana", CREDENTIALS["ana"], api_name="/review_sign_in")
    assert ana.predict("not mpox", 2, "", api_name="/review_save")[STATUS].startswith("Saved unaided")
    ana_rows = ana.predict(api_name="/review_my_verdicts")["data"]
    assert ana_rows and not {row[0] for row in ana_rows} & ben_ids

    message, files = ana.predict(api_name="/review_report")
    assert "Only an admin" in message and files is None
    assert "Only an admin" in client(url).predict(api_name="/review_report")[0]  # not signed in at all
    assert "Only an admin" in ana.predict("eve", "Eve", "admin", "eve-secret-1", api_name="/review_create_reviewer")

    # A hostile client sends ben's real session token as the State value: Gradio ignores it.
    token = handlers.sign_in("ben", CREDENTIALS["ben"])[0]
    event, data = raw_call(url, "review_my_verdicts", [token])
    assert event == "complete" and data[0]["data"] == []  # answered as for a client that never signed in
    before = sqlite3.connect(study).execute("SELECT count(*) FROM verdicts").fetchone()[0]
    raw_call(url, "review_save", [token, None, None, "mpox", 5, "forged"])
    raw_call(url, "review_save", ["mpox", 5, "forged"])
    assert sqlite3.connect(study).execute("SELECT count(*) FROM verdicts").fetchone()[0] == before

    admin = client(url)
    admin.predict("root", CREDENTIALS["root"], api_name="/review_sign_in")
    message, files = admin.predict(api_name="/review_report")
    assert "Report written" in message and sorted(Path(f).name for f in files) == [
        "metrics.json", "predictions.csv", "report.html", "verdicts.csv"]
    verdicts_csv = Path(next(f for f in files if f.endswith("verdicts.csv"))).read_text()
    assert "ben's note" in verdicts_csv  # the admin's report holds everyone's verdicts


class TagCollector(HTMLParser):
    """Every start tag and attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


class Constant:
    """A toy model whose name is hostile, for the report's model tables and ROC legend."""

    def __init__(self, weights: Path, card: dict) -> None:
        self.card = card

    def score(self, image: Image.Image) -> tuple[float, str]:
        value = float(np.asarray(image)[..., 0].mean())
        return value, "mpox-like"


def test_names_and_comments_are_escaped_in_the_html_report(study: Path, tmp_path: Path):
    db = tmp_path / "copy.sqlite"
    shutil.copy(study, db)
    if Path(f"{study}-wal").exists():
        shutil.copy(f"{study}-wal", f"{db}-wal")
    store = Store(db)
    store.create_reviewer(NASTY, NASTY_NAME, "reviewer", "nasty-secret-1")
    _, session = store.sign_in(NASTY, "nasty-secret-1")
    for case in store.cases(usable_only=True):
        for phase in ("unaided", "aided"):
            store.add_verdict(session, case["id"], phase, "mpox" if phase == "aided" else "not mpox", 3,
                              comment=NASTY_COMMENT)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "toy.bin").write_bytes(b"toy")
    (weights / "toy.json").write_text(json.dumps({"name": NASTY + NASTY_NAME, "kind": "hostile-toy",
                                                  "weights_file": "toy.bin", "threshold": {"value": 150.0},
                                                  "score_direction": "higher = more mpox-like"}))
    models.register_scorer("hostile-toy", Constant)
    models.run_models(store, weights, log=lambda line: None)
    out = tmp_path / "report"
    write_report(store, out, n_boot=50)  # the '$$' name would crash matplotlib's mathtext if unescaped
    html = (out / "report.html").read_text()
    collector = TagCollector()
    collector.feed(html)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table", "tr", "th", "td",
               "img", "ul", "li", "b", "code"}
    assert {tag for tag, _ in collector.tags} <= allowed
    assert [a for _, attrs in collector.tags for a in attrs if a.startswith("on")] == []
    images = [attrs for tag, attrs in collector.tags if tag == "img"]
    assert len(images) == 1 and images[0]["src"].startswith("data:image/png;base64,")  # the ROC plot only
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "metrics.json", "predictions.csv", "report.html",
                                                     "verdicts.csv"]  # case file names never became paths
    with (out / "verdicts.csv").open(newline="") as handle:
        comments = {row["comment"] for row in csv.DictReader(handle) if row["reviewer_id"] == NASTY}
    assert comments == {NASTY_COMMENT}  # the data itself is kept as written


def test_uploaded_file_names_are_never_used_as_paths(app, tmp_path: Path):
    url, uploads, _ = app
    photo = io.BytesIO()  # not an example photo (those are kept on the server on purpose)
    Image.open(EXAMPLE).rotate(90).save(photo, format="JPEG")
    with httpx.Client(base_url=url, timeout=60) as http:
        response = http.post("gradio_api/upload", files=[
            ("files", ("../../../../evil_upload.jpg", photo.getvalue(), "image/jpeg"))])
    assert response.status_code == 200, response.text
    server_path = Path(response.json()[0]).resolve()
    assert Path(uploads).resolve() in server_path.parents and ".." not in server_path.parts
    event, data = raw_call(url, "analyze", [{"path": str(server_path), "orig_name": "../../../../evil_upload.jpg",
                                             "meta": {"_type": "gradio.FileData"}}, "16 px cells"])
    assert event == "complete" and data[6] in ("mpox-like", "not mpox-like"), data
    assert not server_path.exists()  # deleted after the analysis
    outside = [p for p in Path(uploads).parent.rglob("evil_upload.jpg") if Path(uploads) not in p.parents]
    assert outside == []

    secret = tmp_path / "someone_elses_photo.jpg"  # a file on the server, outside the upload folder
    shutil.copy(EXAMPLE, secret)
    event, data = raw_call(url, "analyze", [{"path": str(secret), "meta": {"_type": "gradio.FileData"}},
                                            "16 px cells"])
    assert event == "error"  # refused by Gradio before our handler: never read, never analysed
    assert secret.read_bytes() == EXAMPLE.read_bytes()  # and never deleted


def test_no_exif_or_gps_in_stored_or_served_images(app, study: Path, tmp_path: Path):
    url, _, _ = app
    for (png,) in sqlite3.connect(study).execute("SELECT png FROM case_images"):
        assert no_metadata(png)
    reader = client(url)
    screen = reader.predict("root", CREDENTIALS["root"], api_name="/review_sign_in")
    assert no_metadata(Path(screen[PHOTO]).read_bytes())  # the case photo as the browser receives it
    photo = tmp_path / "gps.jpg"
    gps_photo(photo, np.clip(np.random.default_rng(2).normal((190, 130, 110), 25, (96, 128, 3)), 0, 255)
              .astype(np.uint8))
    panels = reader.predict(handle_file(str(photo)), api_name="/analyze")[:4]
    assert all(no_metadata(Path(p).read_bytes()) for p in panels)
