"""Start the MIM web demo: ``python app.py`` serves http://127.0.0.1:7860 (Hugging Face Spaces runs
this same file, its ``app_file``).

Environment: MIM_WEIGHTS (weights path, card beside it), MIM_VERDICT_WEIGHTS (the classifier card that gives
the verdict, default weights/effnet_probe.pt; set it empty for MIM's own verdict), MIM_THREADS (torch CPU threads, default 2),
MIM_PRECISION (fp32, the default and the card's reference, or bf16: faster on CPUs with native bfloat16;
fp32 runs elsewhere),
MIM_CLINICAL_DB (a clinical study database: adds the clinical module's Review tab; off by default),
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (host and port).
"""

import os

from demo.app import DEFAULT_VERDICT_WEIGHTS, DEFAULT_WEIGHTS, build_demo, launch_options


def _extra_tabs() -> list:
    """The Review tab, only when a study database is configured (never on a public Space by accident)."""
    db_path = os.environ.get("MIM_CLINICAL_DB")
    if not db_path:
        return []
    from clinical.review_ui import build_review_tab

    return [lambda ctx: build_review_tab(db_path, ctx.detector)]


# Module-level `demo`, as Spaces and `gradio app.py` (auto-reload) expect.
demo = build_demo(os.environ.get("MIM_WEIGHTS", DEFAULT_WEIGHTS), threads=int(os.environ.get("MIM_THREADS", "2")),
                  precision=os.environ.get("MIM_PRECISION", "fp32"), extra_tabs=_extra_tabs(),
                  verdict_weights=os.environ.get("MIM_VERDICT_WEIGHTS", str(DEFAULT_VERDICT_WEIGHTS)) or None)

if __name__ == "__main__":
    demo.launch(**launch_options())
