"""How the demo app is assembled: endpoints, queue, extra tabs, launch settings, the root app.py."""

from __future__ import annotations

import importlib.util

import gradio as gr
import torch

from demo.app import DEMO_DIR, build_demo, launch_options
from demo.ui import MODEL_QUEUE, DemoContext
from tests.conftest import REPO, SHIPPED_WEIGHTS


def _tab_labels(demo: gr.Blocks) -> list[str]:
    return [c["props"]["label"] for c in demo.config["components"] if c.get("type") == "tabitem"]


def test_endpoints_have_stable_names_and_share_one_model_queue(detector):
    demo = build_demo(detector=detector)
    endpoints = demo.get_api_info()["named_endpoints"]
    assert {"/analyze", "/analyze_batch", "/model_card"} <= set(endpoints)
    returns = [r["label"] for r in endpoints["/analyze"]["returns"]]
    assert returns[4:8] == ["Score", "Threshold", "Verdict", "Reason"] and len(returns) == 9
    assert returns[8].startswith("Measurements")
    model_fns = [fn for fn in demo.fns.values() if fn.api_name in ("analyze", "analyze_batch")]
    assert len(model_fns) == 2
    assert all(fn.concurrency_id == MODEL_QUEUE and fn.concurrency_limit == 1 for fn in model_fns)
    assert demo._queue.max_size is not None  # a bounded queue: overload is refused, not piled up
    assert demo.delete_cache is not None  # rendered results (derived from patient photos) expire
    assert _tab_labels(demo) == ["Analyse", "Batch", "Model"]


def test_the_verdict_comes_right_after_the_photo_and_the_numbers_stay_closed(detector):
    demo = build_demo(detector=detector)
    order = [c["props"].get("elem_id") for c in demo.config["components"]]
    ids = ["mim-photo", "mim-verdict-card", "mim-score-bar", "mim-legend", "mim-original", "mim-heatmap",
           "mim-checks", "mim-details", "mim-slider"]
    assert [order.index(i) for i in ids] == sorted(order.index(i) for i in ids)
    details = next(c for c in demo.config["components"] if c["props"].get("elem_id") == "mim-details")
    assert details["props"]["open"] is False


def test_extra_tabs_are_built_between_batch_and_model(detector):
    seen: list[DemoContext] = []

    def review_tab(ctx: DemoContext) -> None:
        seen.append(ctx)
        with gr.Tab("Review"):
            gr.Markdown("review")

    def about_tab() -> None:
        with gr.Tab("About"):
            gr.Markdown("about")

    demo = build_demo(detector=detector, extra_tabs=[review_tab, about_tab])
    assert _tab_labels(demo) == ["Analyse", "Batch", "Review", "About", "Model"]
    assert seen[0].detector is detector


def test_threads_are_capped_when_the_model_is_loaded():
    before = torch.get_num_threads()
    try:
        demo = build_demo(SHIPPED_WEIGHTS, threads=1)
        assert torch.get_num_threads() == 1
        menu = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "mim-verdict-model")
        labels = [c[0] for c in menu.choices]
        assert menu.value == labels[0] == "Linear probe (default)" and menu.visible
        assert "MIM alone" in labels and len(labels) == len(set(labels)) >= 4
    finally:
        torch.set_num_threads(before)


def test_launch_options_keep_patient_data_out_of_the_browser_history():
    options = launch_options(server_port=1234)
    assert options["run_history"] is False and options["ssr_mode"] is False
    assert options["server_port"] == 1234 and "server_name" not in options  # Spaces sets GRADIO_SERVER_NAME
    assert all(path.is_file() for path in options["css_paths"]) and options["css_paths"][0].parent == DEMO_DIR


def _import_root_app():
    spec = importlib.util.spec_from_file_location("mim_root_app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # builds, does not launch (launch is under __main__)
    return module


def test_root_app_py_makes_a_module_level_demo(monkeypatch):
    monkeypatch.setenv("MIM_THREADS", str(torch.get_num_threads()))
    monkeypatch.delenv("MIM_CLINICAL_DB", raising=False)
    module = _import_root_app()
    assert isinstance(module.demo, gr.Blocks)
    assert "/analyze" in module.demo.get_api_info()["named_endpoints"]
    assert "Review" not in _tab_labels(module.demo)  # the clinical tab is opt-in


def test_root_app_mounts_the_review_tab_when_a_study_database_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("MIM_THREADS", str(torch.get_num_threads()))
    monkeypatch.setenv("MIM_CLINICAL_DB", str(tmp_path / "study.sqlite"))
    module = _import_root_app()
    assert _tab_labels(module.demo) == ["Analyse", "Batch", "Review", "Model"]
