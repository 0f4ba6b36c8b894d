"""MIM clinical module: reading sessions, clinicians' verdicts in SQLite, validation reports.

Storage (:mod:`clinical.store`) and statistics (:mod:`clinical.stats`, :mod:`clinical.delong`,
:mod:`clinical.analysis`) are UI-free; the Review tab's Gradio code lives in :mod:`clinical.review_ui`
only. Command line: ``python -m clinical {import-cases,run-models,import-verdicts,correct,design,report,status,
merge,add-reviewer,backup,restore}``.
"""

APP_VERSION = "mim-clinical 0.1.0"
