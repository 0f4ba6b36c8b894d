"""Access control and what leaves the server: credentials, sign-in rate limiting, per-reviewer isolation,
the admin-only report, HTML escaping, upload names never used as paths, no EXIF/GPS in stored or served
images. The Review tab is mounted in the demo exactly as ``app.py`` does with MIM_CLINICAL_DB set."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
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
from clinical.review_ui import API_SCREEN, REPORT_FILES as REPORT_NAMES
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
    ben_ids = {row[0] for row in ben.predict(api_name="/review_my_verdicts")[0]["data"]}
    ana = client(url)
    ana.predict("ana", CREDENTIALS["ana"], api_name="/review_sign_in")
    assert ana.predict("not mpox", 2, "", api_name="/review_save")[STATUS].startswith("Saved unaided")
    ana_rows = ana.predict(api_name="/review_my_verdicts")[0]["data"]
    assert ana_rows and not {row[0] for row in ana_rows} & ben_ids

    message, links = ana.predict(api_name="/review_report")
    assert "Only an admin" in message and links == ""
    assert "Only an admin" in client(url).predict(api_name="/review_report")[0]  # not signed in at all
    assert "Only an admin" in ana.predict("eve", "Eve", "admin", "eve-secret-1", api_name="/review_create_reviewer")[0]

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
    message, links = admin.predict(api_name="/review_report")
    files = report_files(links)
    assert "Report for" in message and sorted(files) == ["cases.csv", "metrics.json", "predictions.csv",
                                                          "report.html", "verdicts.csv"]
    assert "ben's note" in files["verdicts.csv"].decode()  # the admin's report holds everyone's verdicts


def report_files(links: str) -> dict[str, bytes]:
    """name -> bytes of the report's download links (data: URLs)."""
    found = re.findall(r'download="([^"]+)" href="data:[^;]+;base64,([^"]+)"', links)
    return {name: base64.b64decode(data) for name, data in found}


def every_text(value) -> str:
    """All strings of an API answer, joined (file paths included)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(every_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return " ".join(every_text(v) for v in value)
    return str(value)


def test_case_and_verdict_references_are_per_reviewer_and_opaque(app, study: Path):
    """A reviewer sees only random references: never the image's sha256 (or a prefix of it), the stored
    PNG's hash, the global verdict ids (a counter that would reveal others' activity) or another
    reviewer's references for the same case."""
    url, _, _ = app
    conn = sqlite3.connect(study)
    files, pngs = zip(*conn.execute("SELECT id, image_sha256 FROM cases WHERE image_sha256 IS NOT NULL"))
    seen: dict[str, str] = {}
    for reviewer in ("ana", "ben"):
        reader = client(url)
        answers = [reader.predict(reviewer, CREDENTIALS[reviewer], api_name="/review_sign_in")]
        answers.append(reader.predict("uncertain", 2, "", api_name="/review_save"))
        table, choices = reader.predict(api_name="/review_my_verdicts")
        text = every_text([answers, table, choices])
        assert not any(h[:8] in text for h in files)  # not even 8 hex digits of the file's sha256
        # Gradio names the photo's URL by the hash of the bytes it serves (anyone can hash a download);
        # no other output carries the stored picture's hash
        words = every_text([[v for i, v in enumerate(a) if i != PHOTO] for a in answers] + [table, choices])
        assert not any(h[:8] in words for h in pngs)
        assert not re.search(r"#\d+", text)  # no "#17"-style global ids
        refs = [row[0] for row in table["data"]]
        assert refs and all(re.fullmatch(r"[0-9a-f]{12}", r) for r in refs)
        assert all(ref in answers[1][STATUS] for ref in refs[-1:])  # the saved verdict is named by its reference
        seen[reviewer] = text
    ids = [str(r[0]) for r in conn.execute("SELECT id FROM verdicts")]
    case_refs = dict(conn.execute("SELECT reviewer_id || '/' || case_id, ref FROM queue"))
    conn.close()
    cases = {key.split("/", 1)[1] for key in case_refs}
    assert all(case_refs[f"ana/{c}"] != case_refs[f"ben/{c}"] for c in cases)  # per reviewer
    for reviewer, text in seen.items():
        other = "ben" if reviewer == "ana" else "ana"
        assert not any(ref in text for key, ref in case_refs.items() if key.startswith(other + "/"))
        assert not set(re.findall(r"\b\d+\b", " ".join(re.findall(r"verdict \S+", text)))) & set(ids)


def test_report_files_only_reach_a_signed_in_admin(app, study: Path):
    """The report is never a file Gradio serves: it is written to a private temporary folder, deleted at
    once, and its bytes reach the signed-in admin only inside the answer to their own request."""
    url, uploads, _ = app
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("mim-report-*"))
    admin = client(url)
    admin.predict("root", CREDENTIALS["root"], api_name="/review_sign_in")
    _, links = admin.predict(api_name="/review_report")
    files = report_files(links)
    assert files["report.html"].startswith(b"<!doctype html>") and b"reviewer_id" in files["verdicts.csv"]
    names = set(REPORT_NAMES)
    assert not [p for p in Path(uploads).rglob("*") if p.name in names]  # nothing in Gradio's served folders
    assert set(temp.glob("mim-report-*")) == before  # the private folder is gone
    for who in ("ben", None):  # a reviewer, and a client that never signed in
        reader = client(url)
        if who:
            reader.predict(who, CREDENTIALS[who], api_name="/review_sign_in")
        message, links = reader.predict(api_name="/review_report")
        assert "Only an admin" in message and links == ""
    event, data = raw_call(url, "review_report", [])
    assert event == "complete" and data[1] == ""


def test_credentials_are_never_echoed_back(app):
    """The sign-in and create-reviewer forms are cleared after every submit; no message quotes them."""
    url, _, _ = app
    credential = API_SCREEN.index("credential")
    reader = client(url)
    failed = reader.predict("ben", "ben-wrong-guess", api_name="/review_sign_in")
    assert failed[credential] == "" and "ben-wrong-guess" not in every_text(failed)
    screen = reader.predict("ben", CREDENTIALS["ben"], api_name="/review_sign_in")
    assert screen[credential] == "" and CREDENTIALS["ben"] not in every_text(screen)
    admin = client(url)
    admin.predict("root", CREDENTIALS["root"], api_name="/review_sign_in")
    short = admin.predict("fay", "Dr Fay", "reviewer", "short7!", api_name="/review_create_reviewer")
    assert "Not created" in short[0] and short[4] == "" and "short7!" not in every_text(short)
    made = admin.predict("fay", "Dr Fay", "reviewer", "fay-secret-1", api_name="/review_create_reviewer")
    assert "Created reviewer 'fay'" in made[0] and list(made[1:]) == ["", "", "reviewer", ""]
    assert "fay-secret-1" not in every_text(made)


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
               "img", "ul", "li", "b", "code", "div"}
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


def test_uploaded_file_names_are_never_used_as_paths(app, detector, tmp_path: Path):
    from demo.app import verdict_label

    url, uploads, _ = app
    choice = verdict_label(detector, default=True)  # the page's only verdict model here
    photo = io.BytesIO()  # not an example photo (those are kept on the server on purpose)
    Image.open(EXAMPLE).rotate(90).save(photo, format="JPEG")
    with httpx.Client(base_url=url, timeout=60) as http:
        response = http.post("gradio_api/upload", files=[
            ("files", ("../../../../evil_upload.jpg", photo.getvalue(), "image/jpeg"))])
    assert response.status_code == 200, response.text
    server_path = Path(response.json()[0]).resolve()
    assert Path(uploads).resolve() in server_path.parents and ".." not in server_path.parts
    event, data = raw_call(url, "analyze", [{"path": str(server_path), "orig_name": "../../../../evil_upload.jpg",
                                             "meta": {"_type": "gradio.FileData"}}, "8 px cells", choice])
    assert event == "complete" and data[6] in ("mpox-like", "not mpox-like"), data
    assert not server_path.exists()  # deleted after the analysis
    outside = [p for p in Path(uploads).parent.rglob("evil_upload.jpg") if Path(uploads) not in p.parents]
    assert outside == []

    secret = tmp_path / "someone_elses_photo.jpg"  # a file on the server, outside the upload folder
    shutil.copy(EXAMPLE, secret)
    event, data = raw_call(url, "analyze", [{"path": str(secret), "meta": {"_type": "gradio.FileData"}},
                                            "8 px cells", choice])
    assert event == "error"  # refused by Gradio before our handler: never read, never analysed
    assert secret.read_bytes() == EXAMPLE.read_bytes()  # and never deleted


def test_no_exif_or_gps_in_stored_or_served_images(app, study: Path, tmp_path: Path):
    url, _, _ = app
    for (png,) in sqlite3.connect(study).execute("SELECT png FROM case_images"):
        assert no_metadata(png)
    reader = client(url)
    screen = reader.predict("ben", CREDENTIALS["ben"], api_name="/review_sign_in")  # a reader: an admin has no queue
    assert no_metadata(Path(screen[PHOTO]).read_bytes())  # the case photo as the browser receives it
    photo = tmp_path / "gps.jpg"
    gps_photo(photo, np.clip(np.random.default_rng(2).normal((190, 130, 110), 25, (96, 128, 3)), 0, 255)
              .astype(np.uint8))
    panels = reader.predict(handle_file(str(photo)), api_name="/analyze")[:4]
    # a noise photo may be refused by the quality gate: then only the original comes back, still clean
    assert panels[0] is not None and all(no_metadata(Path(p).read_bytes()) for p in panels if p is not None)
