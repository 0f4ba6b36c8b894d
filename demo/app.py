"""The MIM web demo: ``build_demo()`` returns the Gradio Blocks app; ``launch_options()`` the settings
to launch it with (Gradio 6 takes theme and CSS at launch).

    from demo.app import build_demo, launch_options
    build_demo().launch(**launch_options())

Tabs: Analyse (one photo), Batch (many photos or a zip), any extra tabs (e.g. the clinical module's
Review tab), Model (the model card). The model is loaded once here; the only per-user data lives in
each session's ``gr.State`` and in uploads, which are deleted after use.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gradio as gr
from gradio.utils import get_upload_folder

from mim_core import Analyser, MIMDetector, Screening, cli
from mim_core.baselines.classifier import ClassifierDetector
from mim_core.checkpoint import load_card
from mim_core.screening import verdict_options

from . import gradio_cache, gradio_files, views
from .model_card import placeholder_warning
from .ui import DemoContext, analyse_tab, batch_tab, model_card_api, model_tab
from .uploads import file_hashes

DEMO_DIR = Path(__file__).resolve().parent
REPO = DEMO_DIR.parent
DEFAULT_WEIGHTS = REPO / "weights" / "mim_gan.pt"
# The verdict comes from the model that won the cross-source dev protocol (docs/cross_source.md).
DEFAULT_VERDICT_WEIGHTS = cli.DEFAULT_VERDICT_WEIGHTS
EXAMPLES_DIR = DEMO_DIR / "examples"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}

# Cached outputs (crops of patient photos, CSVs) older than CACHE_AGE_S are deleted every CACHE_EVERY_S.
CACHE_EVERY_S, CACHE_AGE_S = 300, 900
MAX_QUEUE = 64  # requests waiting beyond this are turned away with "queue full" rather than piling up
MAX_FILE_SIZE = "100mb"

# A builder of one extra tab: called inside the app's gr.Tabs, it creates a ``with gr.Tab(...):`` block
# and wires its events. It takes no argument, or one DemoContext (the loaded model and settings).
TabBuilder = Callable[..., None]


def example_photos(folder: Path = EXAMPLES_DIR) -> list[str]:
    return sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in EXAMPLE_SUFFIXES)


def _attribution(folder: Path = EXAMPLES_DIR) -> str:
    path = folder / "ATTRIBUTION.md"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _header(detector: Analyser) -> str:
    """The page's title and what it does, in two sentences (the second names who gives the verdict)."""
    seen = ("See what the model sees: it hides patches of a skin photo, fills them back in the way it learned from "
            "mpox photos, and measures how different the fill is.")
    verdict = (" The verdict comes from a second model that recognises mpox photos from sources it never saw better."
               if isinstance(detector, Screening) else " Skin it reproduces as well as mpox is called *mpox-like*.")
    return f"# MIM: Mask, Inpainting, and Measure\n{seen}{verdict}"


# What the "Who gives the verdict" menu calls each card, by its architecture (other cards: their name).
VERDICT_LABELS = {
    "efficientnet_lite0_probe": "Linear probe",
    "efficientnet_lite0_knn": "Nearest mpox photo",
    "efficientnet_lite0_patchcore": "PatchCore",
    "mobilenet_v3_small": "MobileNet-V3 from scratch",
}


def verdict_label(analyser: Analyser, default: bool = False) -> str:
    """A menu label for who gives the verdict: MIM alone, or the verdict model's kind in words."""
    if isinstance(analyser, Screening):
        card = analyser.verdict_card
        arch = (card.get("config") or {}).get("arch")
        label = VERDICT_LABELS.get(arch, f"Classifier {card.get('name', arch)}")
    else:
        label = "MIM alone"
    return label + (" (default)" if default else "")


def verdict_choices(mim_weights: str | os.PathLike, verdict_weights: str | os.PathLike | None, threads: int,
                    precision: str) -> tuple[Analyser, dict[str, Analyser]]:
    """(the default analyser, {menu label: analyser}): MIM alone and MIM with each classifier card beside its
    weights; the default gives the verdict of ``verdict_weights`` (None: MIM's own), wherever that card lives."""
    mim = MIMDetector.load(mim_weights, threads=threads, precision=precision)
    options = verdict_options(mim, Path(mim_weights).parent)
    if verdict_weights is None:
        default: Analyser = mim
    else:
        name = str(load_card(verdict_weights).get("name"))
        default = options.get(name) or Screening(mim, ClassifierDetector.load(verdict_weights))
    choices = {verdict_label(a, a is default): a for a in [default, *(a for a in options.values() if a is not default)]}
    return default, choices


def _call_builder(builder: TabBuilder, ctx: DemoContext) -> None:
    takes_context = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                        for p in inspect.signature(builder).parameters.values())
    builder(ctx) if takes_context else builder()


def build_demo(weights_path: str | os.PathLike = DEFAULT_WEIGHTS, *, threads: int = 2, precision: str = "fp32",
               concurrency: int = 1, verdict_weights: str | os.PathLike | None = DEFAULT_VERDICT_WEIGHTS,
               extra_tabs: Sequence[TabBuilder] | None = None, detector: Analyser | None = None,
               choices: Mapping[str, Analyser] | None = None) -> gr.Blocks:
    """Build the demo app (not launched).

    Args:
        weights_path: the MIM weights; the model card JSON must sit beside them.
        verdict_weights: the classifier card giving the default verdict (MIM keeps its checks and panels); None: MIM's
            own. The page also offers MIM alone and every other classifier card beside ``weights_path``.
        threads: torch CPU threads for the whole process (set once, here).
        precision: ``fp32`` (the reference the card's numbers come from) or ``bf16`` (~1.7x faster where the
            CPU has native bfloat16; fp32 runs elsewhere).
        concurrency: analyses run at the same time (Analyse and Batch share the limit); with few cores,
            1 gives the fastest answer per request, the rest wait in the queue.
        extra_tabs: builders of more tabs, shown between Batch and Model (see :data:`TabBuilder`).
        detector: an already loaded detector (tests, or an app that embeds this one); overrides weights_path.
        choices: with ``detector``, who the page lets give the verdict ({menu label: analyser}, detector among
            them, e.g. :func:`verdict_choices`'s); default: detector alone.
    Raises:
        mim_core.checkpoint.WeightsError: missing weights or card, or a sha256 mismatch.
    """
    if detector is None:
        detector, choices = verdict_choices(weights_path, verdict_weights, threads, precision)
    elif choices is None:
        choices = {verdict_label(detector, default=True): detector}
    gradio_cache.install()  # no half-written output image can be served (see demo/gradio_cache.py)
    gradio_files.install()  # an upload deleted while the browser fetches it is no traceback (demo/gradio_files.py)
    examples = example_photos()
    ctx = DemoContext(detector=detector, upload_root=get_upload_folder(), examples=examples,
                      keep=file_hashes(examples), concurrency=concurrency, attribution=_attribution(), choices=choices)
    with gr.Blocks(title="MIM: mpox screening research demo", analytics_enabled=False,
                   delete_cache=(CACHE_EVERY_S, CACHE_AGE_S)) as demo:
        gr.Markdown(_header(detector), elem_id="mim-header")
        gr.HTML(views.notice_html(), elem_id="mim-notice", padding=False)
        if warning := placeholder_warning(getattr(detector, "verdict_card", detector.card), pointer=""):  # above every tab: no "see the Model tab"
            gr.HTML(f'<div class="mim-notice mim-warning" role="alert">{warning}</div>', elem_id="mim-warning",
                    padding=False)
        with gr.Tabs():
            analyse_tab(ctx)
            batch_tab(ctx)
            for builder in extra_tabs or ():
                _call_builder(builder, ctx)
            model_tab(ctx)
        model_card_api(ctx)
    demo.queue(default_concurrency_limit=concurrency, max_size=MAX_QUEUE)
    return demo


def launch_options(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch``: theme, CSS, upload size limit, no server-side rendering.
    Host and port come from Gradio's defaults (127.0.0.1:7860) or GRADIO_SERVER_NAME / _PORT, which
    Hugging Face Spaces sets."""
    theme = gr.themes.Soft(primary_hue="teal", font=["system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])  # no web-font downloads
    # run_history=False: Gradio would otherwise keep past requests (patient photos) in the browser.
    options = dict(theme=theme, css_paths=[DEMO_DIR / "style.css"], max_file_size=MAX_FILE_SIZE,
                   ssr_mode=False, show_error=False, footer_links=["api"], run_history=False)
    options.update(overrides)
    return options
