"""The demo's verdict path: MIM's checks and panels, the verdict model's score and verdict."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from demo import handlers, views
from demo.app import DEFAULT_VERDICT_WEIGHTS, build_demo
from demo.model_card import card_markdown
from mim_core import Screening, Verdict
from mim_core.data import decode_inputs, preprocess
from mim_core.screening import verdict_options
from tests.conftest import MSID_ROOT, REPO, SHIPPED_WEIGHTS

HEALTHY = REPO.parent / "shared" / "healthy_skin_dev" / "Normal"


@pytest.fixture(scope="module")
def photos(data_root) -> list:
    """Mpox of both sources, DermNet, healthy skin, and a flat picture the gates refuse."""
    mpox = sorted((data_root / "MSLD_v1" / "Monkeypox").iterdir())[:2] + sorted((MSID_ROOT / "MSID" / "Monkeypox").iterdir())[:2]
    others = sorted((data_root / "DermNetNZ" / "Scabies").iterdir())[:2] + sorted(HEALTHY.iterdir())[:3]
    return [*mpox, *others, np.full((200, 200, 3), 128, np.uint8)]


def test_the_verdict_is_the_verdict_models_and_the_panels_are_mims(screening, detector, photos):
    analyses = screening.analyze_batch(photos)
    alone = detector.analyze_batch(photos)
    own = screening.verdict_model.config.preprocess  # the verdict model reads its own view of each photo
    probe = screening.verdict_model.score_views(torch.stack([preprocess(p, own) for p in decode_inputs(photos)]))
    assert analyses[-1].verdict is Verdict.UNUSABLE and analyses[-1].verdict is alone[-1].verdict
    judged = 0
    for a, m, p in zip(analyses, alone, probe):
        assert a.verdict.is_refusal == m.verdict.is_refusal  # the same gates refuse the same photos
        if a.verdict.is_refusal:
            assert not np.isfinite(a.score) and a.inpainted is None
            continue
        judged += 1
        assert a.score == pytest.approx(p, abs=1e-6) and a.threshold == screening.threshold
        assert a.inpainting_score == pytest.approx(m.score, abs=1e-6)
        assert a.heatmap.mean() == pytest.approx(a.inpainting_score, abs=1e-4)  # the panels are MIM's
        assert np.array_equal(a.inpainted, m.inpainted)
        expected = Verdict.MPOX_LIKE if p >= screening.threshold else Verdict.NOT_MPOX_LIKE
        if expected is Verdict.MPOX_LIKE and a.patch_distance > screening.appearance.no_rash_threshold:
            expected = Verdict.NO_RASH
        assert a.verdict is expected
        assert a.summary()["inpainting_score"] == pytest.approx(m.score, abs=1e-5)
    assert judged >= 6


def test_a_verdict_model_that_reads_its_own_view_needs_it(screening, detector, photos):
    """The probe reads a larger view than MIM's: handed MIM's views alone, the screening refuses rather than score
    the wrong picture; handed both, it answers as analyze_batch does."""
    assert screening.verdict_model.config.preprocess.size > detector.config.preprocess.size
    views_, resolutions = detector.views(photos[:2])
    with pytest.raises(ValueError, match="own view"):
        screening.analyze_views(views_, resolutions)
    own = torch.stack([preprocess(p, screening.verdict_model.config.preprocess) for p in decode_inputs(photos[:2])])
    by_views = screening.analyze_views(views_, resolutions, own)
    batch = screening.analyze_batch(photos[:2])
    assert [a.score for a in by_views] == pytest.approx([a.score for a in batch], abs=1e-6)


def test_the_score_bar_puts_the_mpox_side_left_in_either_direction():
    probability = views.score_bar_html(0.8, 0.3, [0.5, 0.9], direction="higher = more mpox-like")
    assert "at or above the threshold" in probability and "Mpox-like at or above" in probability
    assert "below the threshold" in views.score_bar_html(0.1, 0.3, [], direction="higher = more mpox-like")
    # the marker of a very mpox-like probability sits left of the threshold, like a low MIM score
    def left(html: str, cls: str) -> float:
        return float(html.split(f'class="{cls}" style="left:')[1].split("%")[0])
    assert left(probability, "mim-marker") < left(probability, "mim-threshold")
    mim = views.score_bar_html(-0.5, -0.2, [], direction="higher = less mpox-like")
    assert left(mim, "mim-marker") < left(mim, "mim-threshold")


def test_the_demo_runs_the_screening_and_says_who_gives_the_verdict(screening, data_root, tmp_path):
    demo = build_demo(detector=screening)
    photo = sorted((data_root / "MSLD_v1" / "Monkeypox").iterdir())[0]
    outputs = handlers.analyze_outputs(screening, str(photo), None, str(tmp_path))
    score, threshold, verdict, reason, evidence = outputs[4:9]
    assert threshold == screening.threshold and 0 <= score <= 1 and evidence["inpainting_score"] is not None
    assert reason in {"Its features resemble those of the mpox photos the verdict model learned from.",
                      "Its features resemble those of the other skin conditions the verdict model learned from.",
                      } or verdict == Verdict.NO_RASH.value
    text = card_markdown(screening.card, screening.gate, screening.scales, verdict_card=screening.verdict_card)
    assert "## Who gives the verdict" in text and screening.verdict_card["weights_sha256"] in text
    assert f"{screening.threshold:.5g}" in text
    assert "Who gives the verdict" not in card_markdown(screening.card)
    api = next(fn for fn in demo.fns.values() if fn.api_name == "model_card")
    assert api.fn()["verdict_model"]["name"] == screening.verdict_card["name"]


def test_the_shipped_app_gives_the_probes_verdict_by_default():
    source = (REPO / "app.py").read_text()
    assert "MIM_VERDICT_WEIGHTS" in source and DEFAULT_VERDICT_WEIGHTS.is_file()
    card = json.loads(DEFAULT_VERDICT_WEIGHTS.with_suffix(".json").read_text())
    assert card["kind"] == "classifier" and SHIPPED_WEIGHTS.is_file()
    winner = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())["cross_source"]["winner"]["method"]
    assert card["config"]["arch"].endswith("_probe") and winner == "probe"  # the default follows the dev winner


def test_the_page_offers_mim_alone_and_every_classifier_card_that_sees_mims_view(detector):
    options = verdict_options(detector, REPO / "weights")
    names = {json.loads(p.read_text()).get("name") for p in (REPO / "weights").glob("*.json")}
    assert next(iter(options.values())) is detector  # MIM alone first
    assert set(options) <= names and {"effnet-probe", "effnet-knn", "effnet-patchcore"} <= set(options)
    for analyser in list(options.values())[1:]:
        assert isinstance(analyser, Screening) and analyser.mim is detector  # one MIM behind every verdict


def test_changing_who_gives_the_verdict_analyses_the_same_photo_again(detector, data_root, tmp_path):
    options = verdict_options(detector, REPO / "weights")
    choices = {name: options[name] for name in ("mim-gan", "effnet-probe", "effnet-knn")}
    photo = tmp_path / "photo.jpg"  # a copy: the upload is deleted after the analysis
    photo.write_bytes(sorted((data_root / "MSLD_v1" / "Monkeypox").iterdir())[0].read_bytes())
    first = handlers.analyze_outputs(choices["effnet-probe"], str(photo), None, str(tmp_path), choices=choices,
                                     choice="effnet-probe")
    assert not photo.exists()
    # the session keeps the views the offered models read (MIM's 128 px, the probe's 224 px), not the upload
    assert sorted(v.shape[-1] for v in first[-1].views.values()) == [128, 224]
    mim = handlers.reanalyze_outputs(detector, first[-1], None, choices, "mim-gan")
    knn = handlers.reanalyze_outputs(detector, first[-1], None, choices, "effnet-knn")
    assert mim[5] == detector.threshold and knn[5] == choices["effnet-knn"].threshold != first[5]
    # MIM alone scores the stored view as the probe's inpainting score did: the same view, analysed again
    assert mim[4] == pytest.approx(first[8]["inpainting_score"], abs=1e-6)
    assert knn[6] in {Verdict.MPOX_LIKE.value, Verdict.NOT_MPOX_LIKE.value, Verdict.NO_RASH.value}
    assert "further from every mpox photo" in knn[7] or knn[6] != Verdict.NOT_MPOX_LIKE.value  # one-class words
    again = handlers.reanalyze_outputs(detector, first[-1], None, choices, "effnet-probe")
    assert again[4] == pytest.approx(first[4], abs=1e-6)  # the probe's own stored view gives its first answer
    mim_view_only = replace(first[-1], views={k: v for k, v in first[-1].views.items() if v.shape[-1] == 128})
    missing = handlers.reanalyze_outputs(detector, mim_view_only, None, choices, "effnet-probe")
    assert missing[-1].analysis is None and missing[7] == handlers.SEND_AGAIN  # a sentence, not a traceback
    unknown = handlers.reanalyze_outputs(detector, first[-1], None, choices, "a model we do not have")
    assert unknown[-1].analysis is None and "choose one of: mim-gan, effnet-probe, effnet-knn" in unknown[7]
    refused = handlers.analyze_outputs(detector, str(photo), None, str(tmp_path), choices=choices, choice="nope")
    assert refused[-1].analysis is None and "No verdict model is called 'nope'" in refused[7]
