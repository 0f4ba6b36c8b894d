"""The demo's Analyse handlers, views and model card, called directly (no server)."""

from __future__ import annotations

import copy
import io
import shutil
from html import escape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo import handlers, views
from demo.model_card import card_markdown, placeholder_warning
from demo.uploads import discard_upload, file_hashes
from mim_core.detector import Verdict
from tests.demo_server import EXAMPLE, bad_inputs
from tests.conftest import located

VERDICTS = {v.value for v in Verdict}


def _upload(root: Path, name: str, data: bytes) -> Path:
    """A file laid out as Gradio stores an upload: <root>/<folder>/<name>."""
    folder = root / f"upload-{len(list(root.iterdir()))}"
    folder.mkdir()
    (folder / name).write_bytes(data)
    return folder / name


def test_analysis_shows_four_panels_and_matches_the_engine(detector, data_root: Path, tmp_path: Path):
    # the first mpox test photo after test[0] that the acquisition gate passes (test[1] is refused as blurred)
    photo = next(located(p) for p in detector.card["split"]["test"][1:]
                 if not detector.analyze(located(p)).verdict.is_refusal)
    upload = _upload(tmp_path, "rash.jpg", photo.read_bytes())
    out = handlers.analyze_outputs(detector, str(upload), None, str(tmp_path))
    *images, score, threshold, verdict, reason, evidence, outcome = out
    size = detector.config.preprocess.size
    assert [im.shape for im in images] == [(size, size, 3)] * 4
    assert all(im.dtype == np.uint8 for im in images)
    engine = detector.analyze(photo)
    assert score == engine.score and threshold == detector.threshold
    assert verdict == engine.verdict.value and reason == engine.reason
    assert evidence["quality"] == engine.quality and evidence["patch_distance"] == engine.summary()["patch_distance"]
    assert np.array_equal(images[0], engine.original)
    assert outcome.analysis is not None and not outcome.unreadable


def test_a_refused_photo_returns_its_quality_values(detector, data_root: Path, tmp_path: Path):
    from mim_core.benchmark.corruptions import gaussian_noise

    photo = np.asarray(Image.open(located(detector.card["split"]["val"][0])).convert("RGB"))
    upload = tmp_path / "night.png"
    Image.fromarray(gaussian_noise(photo, 3, seed=4)).save(upload)
    *images, score, threshold, verdict, reason, evidence, outcome = handlers.analyze_outputs(
        detector, str(upload), None, str(tmp_path))
    assert verdict == Verdict.TOO_NOISY.value and score is None and images[1:] == [None] * 3
    assert evidence["refused"] and evidence["quality"]["noise"] > detector.gate.max_noise


def test_uploads_are_deleted_but_examples_and_outside_files_are_kept(detector, tmp_path: Path):
    root = tmp_path / "cache"
    root.mkdir()
    rotated = io.BytesIO()
    Image.open(EXAMPLE).rotate(90).save(rotated, format="JPEG")
    upload = _upload(root, "patient.jpg", rotated.getvalue())
    handlers.analyze_upload(detector, str(upload), str(root))
    assert not upload.exists() and not upload.parent.exists()

    example_copy = _upload(root, EXAMPLE.name, EXAMPLE.read_bytes())
    handlers.analyze_upload(detector, {"path": str(example_copy)}, str(root), keep=file_hashes([EXAMPLE]))
    assert example_copy.exists()  # the examples are served again on the next click

    outside = tmp_path / "mine.jpg"
    shutil.copy(EXAMPLE, outside)
    discard_upload(str(outside), root)
    assert outside.exists()  # never delete outside Gradio's upload folder


@pytest.mark.parametrize("name", sorted(bad_inputs(EXAMPLE)))
def test_every_bad_input_gets_a_sentence_not_a_traceback(detector, tmp_path: Path, name: str):
    upload = _upload(tmp_path, name, bad_inputs(EXAMPLE)[name])
    *images, score, threshold, verdict, reason, evidence, outcome = handlers.analyze_outputs(
        detector, str(upload), None, str(tmp_path))
    assert images == [None] * 4 and score is None and threshold == detector.threshold
    assert verdict == Verdict.UNUSABLE.value and outcome.unreadable
    expected = {"notes.jpg": "not an image format", "scan.pdf.jpg": "not an image format",
                "iphone.heic.jpg": "not an image format", "truncated.jpg": "damaged or incomplete",
                "one_pixel.png": "too small", "bomb.png": "too large"}[name]
    assert expected in reason and "Traceback" not in reason
    card = handlers.verdict_card(outcome)
    assert "Could not use this file" in card and expected in card
    assert not upload.exists()  # even an unusable upload is deleted


def test_a_50_megapixel_photo_is_analysed_not_refused(detector, tmp_path: Path):
    big = Image.open(EXAMPLE).convert("RGB").resize((8200, 6100), Image.Resampling.NEAREST)
    upload = tmp_path / "u" / "camera.jpg"
    upload.parent.mkdir()
    big.save(upload, quality=70)
    del big
    outcome = handlers.analyze_upload(detector, str(upload), str(tmp_path))
    assert outcome.analysis is not None and outcome.analysis.verdict.value in VERDICTS
    assert outcome.analysis.original.shape == (detector.config.preprocess.size,) * 2 + (3,)
    assert not upload.exists()


def test_animated_image_uses_its_first_frame(detector, tmp_path: Path):
    first = Image.open(EXAMPLE).convert("RGB")
    second = Image.new("RGB", first.size, (20, 200, 20))
    upload = tmp_path / "u" / "anim.gif"
    upload.parent.mkdir()
    first.save(upload, save_all=True, append_images=[second], duration=100, loop=0)
    expected = detector.analyze(Image.open(upload).convert("RGB"))  # the GIF's own (palette) first frame
    outcome = handlers.analyze_upload(detector, str(upload), str(tmp_path))
    assert outcome.analysis is not None and outcome.analysis.score == expected.score


def test_no_photo_and_a_vanished_upload_are_explained(detector, tmp_path: Path):
    empty = handlers.analyze_upload(detector, None, str(tmp_path))
    assert empty.analysis is None and not empty.unreadable and empty.message == handlers.EMPTY_MESSAGE
    assert handlers.api_values(empty, 1.0)[2] == ""
    gone = handlers.analyze_upload(detector, str(tmp_path / "x" / "gone.jpg"), str(tmp_path))
    assert gone.unreadable and "no longer on the server" in gone.message


def test_a_repeated_event_for_a_deleted_upload_gets_the_same_answer(detector, tmp_path: Path):
    # browsers fire a second change event when the upload is not a displayable image
    upload = _upload(tmp_path, "scan.jpg", bad_inputs(EXAMPLE)["scan.pdf.jpg"])
    first = handlers.analyze_upload(detector, str(upload), str(tmp_path))
    again = handlers.analyze_upload(detector, str(upload), str(tmp_path), previous=first)
    assert again == first and "not an image format" in again.message
    other = handlers.analyze_upload(detector, str(tmp_path / "y" / "other.jpg"), str(tmp_path), previous=first)
    assert "no longer on the server" in other.message


def test_mask_scale_choice_changes_the_masked_and_inpainted_panels_not_the_score_map(detector, tmp_path: Path):
    detector = detector.with_measure(scales=())  # a measure over every scale of the bank, so there is a choice
    upload = _upload(tmp_path, "a.jpg", EXAMPLE.read_bytes())
    outcome = handlers.analyze_upload(detector, str(upload), str(tmp_path))
    labels = handlers.scale_labels(detector.scales)
    assert handlers.default_scale_label(detector.scales) in labels
    views_by_scale = [handlers.panels(outcome, label) for label in labels]
    for i, (original, masked, inpainted, heatmap) in enumerate(views_by_scale):
        assert np.array_equal(original, outcome.analysis.original)
        assert np.array_equal(masked, outcome.analysis.masked[i])
        assert np.array_equal(inpainted, outcome.analysis.inpainted[i])
        assert np.array_equal(heatmap, outcome.analysis.heatmap_overlay())  # the score's own map, every scale
    assert not np.array_equal(views_by_scale[0][1], views_by_scale[-1][1])
    before, after = handlers.slider(outcome, labels[0])
    assert np.array_equal(before, outcome.analysis.original) and np.array_equal(after, outcome.analysis.inpainted[0])


def test_verdict_card_says_what_to_do_and_escapes_text():
    for verdict in Verdict:
        html = views.verdict_html(verdict, "because <b>x</b>")
        assert f'data-verdict="{verdict.value}"' in html and "What to do next" in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "not a diagnosis" in views.NEXT_STEPS[Verdict.MPOX_LIKE]
    assert "does not rule out mpox" in views.NEXT_STEPS[Verdict.NOT_MPOX_LIKE]
    assert "<script>" not in views.unreadable_html("<script>alert(1)</script>")
    assert "Research aid, not a diagnosis" in views.notice_html()


def test_score_bar_places_score_and_threshold_on_one_axis():
    below = views.score_bar_html(0.5, 1.5, [0.2, 1.5])
    assert "at or below the threshold" in below and 'data-score="0.500000"' in below
    above = views.score_bar_html(2.0, 1.5, [])
    assert "above the threshold" in above and "at or below the threshold <" not in above
    assert "No score" in views.score_bar_html(float("nan"), 1.5)
    left = lambda html, cls: float(html.split(f'class="{cls}" style="left:')[1].split("%")[0])  # noqa: E731
    assert 0 <= left(below, "mim-marker") < left(below, "mim-threshold")
    assert left(above, "mim-threshold") < left(above, "mim-marker") <= 100


def test_colour_bar_uses_the_fixed_score_map_scale_and_says_what_its_ends_mean(detector):
    measure = detector.config.measure
    vmax = measure.heatmap_max
    html = views.colour_bar_html(vmax, True, measure.map)
    assert f'data-vmin="{-vmax:g}"' in html and f'data-vmax="{vmax:g}"' in html
    assert "reproduced worse than the reference" in html and "reproduced better than the reference" in html
    assert "as well reproduced as the reference" in html and html.count("rgb(") == 11
    plain = views.colour_bar_html(0.25, False, "l1")
    assert 'data-vmin="0"' in plain and "0.25: very different" in plain


def test_model_card_is_rendered_from_the_card_file(detector):
    card = detector.card
    text = card_markdown(card)
    assert f"{card['threshold']['value']:.5g}" in text and card["threshold"]["method"] in text
    for limitation in card["limitations"]:
        assert limitation.replace("|", "\\|") in text
    for name in card["evaluation"].get("per_class_auroc", {}):
        assert name in text
    assert card["weights_sha256"] in text
    assert f"train {len(card['split']['train'])}" in text
    # a placeholder, or a model that its own evaluation shows losing to a control or beating it by less
    # than +0.10, is flagged; a trained model that clears every control by that margin is not
    margins = card["evaluation"]["margins"]
    short = min(margins["mean_dermnet_test"], margins["others"]) < 0.10
    assert (placeholder_warning(card) is not None) == (card["training"]["steps"] < 100 or short)
    trained = copy.deepcopy(card)
    trained.pop("cross_source", None)  # its own warning sentence: tests/test_demo_model_tab.py
    trained["training"]["steps"] = 3000
    trained["evaluation"]["margins"].update(mean_dermnet_test=0.12, others=0.11)
    assert placeholder_warning(trained) is None and "Warning" not in card_markdown(trained)
    trained["evaluation"]["margins"]["others"] = 0.04
    assert "by only +0.04" in placeholder_warning(trained)
    trained["evaluation"]["margins"]["others"] = -0.01
    assert "does not beat simple checks" in placeholder_warning(trained)
    # a sparse card still renders
    assert "Known limitations" in card_markdown({"name": "x"})


def test_an_unknown_mask_scale_is_an_error_naming_the_scales_not_another_scale(detector, tmp_path: Path):
    assert detector.scales == (8,)  # the shipped measure analyses the 8 px scale only
    with pytest.raises(handlers.ScaleError, match="only 8 px cells"):
        handlers.scale_index("16 px cells", detector.scales)
    assert handlers.scale_index(None, detector.scales) == 0 and handlers.scale_index("8 px cells", (8,)) == 0
    upload = _upload(tmp_path, "rash.jpg", EXAMPLE.read_bytes())
    *images, score, threshold, verdict, reason, evidence, outcome = handlers.analyze_outputs(
        detector, str(upload), "16 px cells", str(tmp_path))
    assert images == [None] * 4 and score is None and verdict == "" and outcome.analysis is None
    assert reason == "This model analyses only 8 px cells, not '16 px cells'." and not evidence["refused"]
    assert escape(reason) in handlers.verdict_card(outcome) and not upload.exists()  # deleted all the same
    several = handlers.scale_message("64 px cells", (8, 16, 32))
    assert several == "This model analyses 8 px cells, 16 px cells or 32 px cells, not '64 px cells'."
    # the rescale event of an analysed photo: an unknown label shows no masked / inpainted panels
    done = handlers.analyze_upload(detector, str(_upload(tmp_path, "b.jpg", EXAMPLE.read_bytes())), str(tmp_path))
    original, masked, inpainted, heatmap = handlers.panels(done, "16 px cells")
    assert original is not None and heatmap is not None and masked is None and inpainted is None
    assert handlers.slider(done, "16 px cells") is None


@pytest.mark.parametrize("name", ["notes.jpg", "truncated.jpg", "bomb.png"])
def test_a_bad_upload_empties_the_photo_box_and_keeps_its_message(detector, tmp_path: Path, name: str):
    """The box would show a file that is no photo as a broken image: the answer asks for it empty, and the
    change event that emptying fires keeps the answer instead of resetting it."""
    upload = _upload(tmp_path, name, bad_inputs(EXAMPLE)[name])
    outcome = handlers.analyze_outputs(detector, str(upload), None, str(tmp_path))[-1]
    assert outcome.unreadable and handlers.photo_value(outcome) is None
    emptied = handlers.analyze_upload(detector, None, str(tmp_path), previous=outcome)
    assert emptied.message == outcome.message and emptied.unreadable
    assert handlers.photo_value(emptied) is handlers.KEEP_PHOTO  # nothing left to empty
    cleared = handlers.analyze_upload(detector, None, str(tmp_path), previous=emptied)  # the user empties it
    assert cleared.message == handlers.EMPTY_MESSAGE and not cleared.unreadable
    photo = handlers.analyze_upload(detector, str(_upload(tmp_path, "a.jpg", EXAMPLE.read_bytes())), str(tmp_path))
    assert handlers.photo_value(photo) is handlers.KEEP_PHOTO  # a photo stays in the box
