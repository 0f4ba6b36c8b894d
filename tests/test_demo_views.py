"""The Analyse tab's pieces: one colour language for "more / less mpox-like", one-sentence next steps,
and the photo checks in words (numbers only in the closed details section)."""

from __future__ import annotations

import re

import numpy as np

from demo import views
from demo.measurements import measurements_html, readings
from mim_core import Verdict
from mim_core.gate import GateThresholds
from mim_core.measure import colorize_heatmap


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", css))


def test_score_bar_verdict_card_and_score_map_share_one_colour_per_direction():
    more, less = (colorize_heatmap(np.array([[v]]), 1.0, True)[0, 0] for v in (-0.8, 0.8))
    assert _rgb(views.MPOX_TONE[0]) == tuple(more) and _rgb(views.OTHER_TONE[0]) == tuple(less)
    assert more[0] > more[2] + 60 and less[2] > less[0] + 60  # orange = more mpox-like, blue = less
    bar = views.score_bar_html(-0.5, -0.2, [-0.3])
    assert 'class="mim-side-mpox" style="width:' in bar and views.MPOX_TONE[1] in bar and views.OTHER_TONE[1] in bar
    assert views.MPOX_TONE[0] in views.verdict_html(Verdict.MPOX_LIKE, "why")
    assert views.OTHER_TONE[0] in views.verdict_html(Verdict.NOT_MPOX_LIKE, "why")
    legend = views.legend_html()
    assert views.MPOX_TONE[0] in legend and views.OTHER_TONE[0] in legend
    assert "orange</strong> = more mpox-like" in legend and "blue</strong> = less mpox-like" in legend


def test_each_next_step_is_one_sentence_of_action():
    for verdict in Verdict:
        step = views.NEXT_STEPS[verdict]
        assert step.endswith(".") and not re.search(r"[.!?] [A-Z]", step), step  # one sentence
        assert len(step) <= 140, step
    assert "not a diagnosis" in views.NEXT_STEPS[Verdict.MPOX_LIKE]
    assert "does not rule out mpox" in views.NEXT_STEPS[Verdict.NOT_MPOX_LIKE]
    assert views.UNREADABLE_NEXT_STEP.endswith(".") and views.UNREADABLE_NEXT_STEP.count(".") == 1


def test_the_verdict_card_shows_no_measurement_unless_asked_and_then_only_closed():
    quality = {"noise": 0.05, "sharpness": 0.2}
    assert not re.search(r"\d\.\d", views.verdict_html(Verdict.TOO_NOISY, "grainy"))
    shown = views.verdict_html(Verdict.TOO_NOISY, "grainy", quality)
    assert '<details class="mim-quality">' in shown and "noise 0.05" in shown


def test_photo_checks_say_in_words_which_check_failed(detector):
    gate = detector.gate
    clean = {"noise": gate.clean_noise / 2, "mean_luma": 0.5, "clipped": 0.0, "resolution": 1.0, "blockiness": 0.0,
             "photo_blockiness": 0.0, "sharpness": 1.0, "coarse_sharpness": 1.0, "detail": 0.01}
    passed = readings(clean, gate, 0.1, 0.25, 0.39)
    assert [r.topic for r in passed] == ["Grain", "Light", "Pixels", "Compression", "Sharpness", "Fine detail",
                                         "Like the training photos"]
    assert all(r.ok for r in passed)
    blocky = readings(clean | {"blockiness": gate.max_blockiness * 2}, gate, 0.3, 0.25, 0.39)
    assert [r.topic for r in blocky if not r.ok] == ["Compression", "Like the training photos"]
    html = measurements_html(blocky)
    assert "JPEG blocks visible" in html and "(failed)" in html and not re.search(r"\d\.\d", html)
    dark = readings({"mean_luma": gate.min_mean_luma / 2}, GateThresholds())
    assert dark[0].words == "too dark" and measurements_html([]) == ""
