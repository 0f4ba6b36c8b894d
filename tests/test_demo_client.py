"""The demo served on a free loopback port and driven through its API with gradio_client."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from mim_core.detector import Verdict
from tests.demo_server import EXAMPLE, bad_inputs, files_with_content, running_demo
from tests.conftest import located

VERDICTS = {v.value for v in Verdict}



@pytest.fixture(scope="module")
def detector(detector):
    """The shipped model measured over every scale of its mask bank, so the demo offers a scale choice
    (the shipped measure uses the 8 px scale alone)."""
    return detector.with_measure(scales=())

@pytest.fixture(scope="module")
def server(detector, tmp_path_factory):
    uploads = tmp_path_factory.mktemp("server_uploads")
    with running_demo(detector, uploads) as (url, _demo):
        yield url, uploads


@pytest.fixture(scope="module")
def client(server, tmp_path_factory) -> Client:
    return Client(server[0], verbose=False, download_files=str(tmp_path_factory.mktemp("client_downloads")))


def test_analyze_an_example_returns_panels_score_threshold_and_verdict(client, detector):
    original, masked, inpainted, heatmap, score, threshold, verdict, reason, evidence = client.predict(
        handle_file(str(EXAMPLE)), api_name="/analyze")
    size = detector.config.preprocess.size
    panels = [np.asarray(Image.open(p).convert("RGB")) for p in (original, masked, inpainted, heatmap)]
    assert [p.shape for p in panels] == [(size, size, 3)] * 4
    engine = detector.analyze(EXAMPLE)
    assert np.array_equal(panels[0], engine.original)  # PNG is lossless: the model's view, pixel for pixel
    assert np.array_equal(panels[3], engine.heatmap_overlay())
    assert score == engine.score and threshold == detector.threshold
    assert verdict == engine.verdict.value in VERDICTS and reason == engine.reason
    summary = engine.summary()
    assert evidence == {"refused": False, "quality": summary["quality"], "patch_distance": summary["patch_distance"]}
    assert set(evidence["quality"]) >= {"noise", "sharpness", "coarse_sharpness", "resolution", "mean_luma"}


def test_mask_scale_is_an_api_parameter(client, detector):
    small = client.predict(handle_file(str(EXAMPLE)), "8 px cells", api_name="/analyze")
    large = client.predict(handle_file(str(EXAMPLE)), "32 px cells", api_name="/analyze")
    assert small[4] == large[4]  # same score: the score always uses every scale
    masked = [np.asarray(Image.open(r[1])) for r in (small, large)]
    assert not np.array_equal(*masked)


def test_an_unknown_mask_scale_gets_a_reason_naming_the_scales_not_other_images(client, server, tmp_path: Path):
    photo = tmp_path / "rash.jpg"  # not an example photo (those are kept on the server on purpose)
    Image.open(EXAMPLE).rotate(90).save(photo, format="JPEG")
    *images, score, _threshold, verdict, reason, evidence = client.predict(handle_file(str(photo)), "64 px cells",
                                                                           api_name="/analyze")
    assert images == [None] * 4 and score is None and verdict == "" and not evidence["refused"]
    assert reason == "This model analyses 8 px cells, 16 px cells or 32 px cells, not '64 px cells'."
    assert files_with_content(server[1], photo.read_bytes()) == []  # the upload is deleted all the same


def test_uploaded_photo_is_deleted_from_the_server(client, server, data_root: Path, detector):
    photo = located(detector.card["split"]["test"][2])  # not one of the examples
    result = client.predict(handle_file(str(photo)), api_name="/analyze")
    assert result[6] in VERDICTS
    assert files_with_content(server[1], photo.read_bytes()) == []


def test_bad_file_gets_a_message_and_the_app_keeps_serving(client, tmp_path: Path):
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(bad_inputs(EXAMPLE)["scan.pdf.jpg"])
    *images, score, threshold, verdict, reason, evidence = client.predict(handle_file(str(bad)), api_name="/analyze")
    assert images == [None] * 4 and score is None and evidence["refused"] and evidence["quality"] == {}
    assert verdict == Verdict.UNUSABLE.value and "not an image format" in reason
    again = client.predict(handle_file(str(EXAMPLE)), api_name="/analyze")
    assert again[6] in VERDICTS and again[4] is not None


def test_batch_of_two_photos_and_one_bad_file(client, data_root: Path, detector, tmp_path: Path):
    photos = [located(p) for p in detector.card["split"]["test"][3:5]]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(bad_inputs(EXAMPLE)["truncated.jpg"])
    summary, table, csv_path = client.predict([handle_file(str(p)) for p in [*photos, bad]],
                                              api_name="/analyze_batch")
    assert "3 photo(s)" in summary
    rows = [dict(zip(table["headers"], r)) for r in table["data"]]  # columns by name: their order is layout
    assert [r["file"] for r in rows] == [photos[0].name, photos[1].name, "broken.jpg"]
    for row, photo in zip(rows, photos):
        assert row["score"] == pytest.approx(detector.analyze(photo).score, abs=1e-4) and row["verdict"] in VERDICTS
    assert rows[2]["verdict"] == Verdict.UNUSABLE.value and "damaged" in rows[2]["reason"]
    with open(csv_path, newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [r["file"] for r in records] == [r["file"] for r in rows]
    assert float(records[0]["score"]) == pytest.approx(detector.analyze(photos[0]).score, abs=1e-6)


def test_model_card_endpoint_returns_the_shipped_card(client, detector):
    assert client.predict(api_name="/model_card") == detector.card
