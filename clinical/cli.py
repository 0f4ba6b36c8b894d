"""Command line: ``python -m clinical {import-cases,run-models,import-verdicts,correct,design,report,status,
merge,add-reviewer,backup,restore}``.

Known failures print ``error: <one sentence>`` on stderr and exit 2, with no traceback; imports run in
one transaction, so a rejected import leaves the database as it was.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sqlite3
import sys
from pathlib import Path

from .store import ClinicalError, Store

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def _import_cases(args: argparse.Namespace) -> int:
    from .cases import collect_images, import_images

    paths = collect_images(args.label_from_folder)  # checked before the database is touched
    counts = import_images(Store(args.db), paths)
    print(f"imported {counts['added']} case(s); {counts['excluded']} excluded (unreadable); "
          f"{counts['already_stored']} already stored")
    if counts["excluded"]:
        imported = {str(p) for p in paths}
        excluded = Store(args.db, create=False).query(
            "SELECT source_path, excluded_reason FROM cases WHERE excluded_reason IS NOT NULL ORDER BY source_path")
        for row in excluded:
            if row["source_path"] in imported:
                print(f"excluded: {row['source_path']}: {row['excluded_reason']}", file=sys.stderr)
    return 0


def _run_models(args: argparse.Namespace) -> int:
    import torch

    from .models import run_models

    torch.set_num_threads(args.threads)
    store = Store(args.db, create=False)
    if not store.cases(usable_only=True):
        raise ClinicalError("The database holds no usable case; run import-cases first.")
    run_models(store, args.weights_dir, log=lambda line: print(line, flush=True))
    return 0


def _import_verdicts(args: argparse.Namespace) -> int:
    from .verdicts_io import import_verdicts

    result = import_verdicts(Store(args.db, create=False), args.file)
    created = ", ".join(result["reviewers_created"]) or "none"
    print(f"imported {result['verdicts']} verdict(s); reviewers created without a credential: {created}")
    return 0


def _correct(args: argparse.Namespace) -> int:
    from .corrections import import_corrections

    result = import_corrections(Store(args.db, create=False), args.file)
    print(f"recorded {result['corrections']} correction(s) for {', '.join(result['reviewers'])}; "
          "the verdicts they replace are kept (see verdicts.csv in the report)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from .status import format_table, reader_progress

    print(format_table(reader_progress(Store(args.db, create=False))))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from .merge import merge

    result = merge(args.sites, args.out, log=lambda line: print(line, flush=True))
    counts = result["counts"]
    print(f"merged {len(result['sites'])} site(s) into {args.out}: {counts['cases']} case(s) "
          f"({result['shared_cases']} seen at more than one site), {counts['reviewers']} reviewer(s), "
          f"{counts['verdicts']} verdict(s), {counts['predictions']} prediction(s); integrity check ok")
    for old, new in sorted(result["renamed_reviewers"].items()):
        print(f"reviewer {old} is {new} in the merged study")
    return 0


def _design(args: argparse.Namespace) -> int:
    from .design import describe, set_washout, washout_days

    store = Store(args.db, create=False)
    if args.washout_days is not None:
        set_washout(store, args.washout_days)
    print(f"design: {describe(washout_days(store))}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    metrics = write_report(Store(args.db, create=False), args.out, uncertain=args.uncertain, n_boot=args.n_boot)
    summary = {name: {"auroc": m["auroc"], "auroc_ci": m["auroc_ci"]} for name, m in metrics["models"].items()}
    print(f"wrote report.html, metrics.json, verdicts.csv, predictions.csv, cases.csv to {args.out}")
    print(json.dumps(summary))
    return 0


def _add_reviewer(args: argparse.Namespace) -> int:
    if args.credential_stdin:
        credential = sys.stdin.readline().rstrip("\n")
    else:
        credential = getpass.getpass(f"credential for {args.id}: ")
    store = Store(args.db)
    known = {r["id"] for r in store.reviewers()}
    if args.id in known:
        store.set_credential(args.id, credential)
        print(f"credential set for reviewer {args.id}")
        if args.reads:
            store.set_reads(args.id)
            print(f"{args.id} now has a reading queue")
    else:
        store.create_reviewer(args.id, args.name, args.role, credential, reads=args.reads)
        print(f"created {args.role} {args.id}" + (" with a reading queue" if args.reads and args.role == "admin"
                                                  else " (not a reader)" if args.role == "admin" else ""))
    return 0


def _backup(args: argparse.Namespace) -> int:
    from .backup import backup

    counts = backup(args.db, args.out)
    print(f"backed up {args.db} to {args.out}: {counts['cases']} case(s), {counts['reviewers']} reviewer(s), "
          f"{counts['verdicts']} verdict(s); integrity check ok")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from .backup import restore

    counts, kept = restore(args.backup, args.db, replace=args.replace)
    if kept is not None:
        print(f"the database it replaced was saved as {kept}")
    print(f"restored {args.backup} into {args.db}: {counts['cases']} case(s), {counts['reviewers']} reviewer(s), "
          f"{counts['verdicts']} verdict(s); integrity check ok")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clinical",
                                     description="MIM clinical module: cases, model runs, verdicts, reports.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import-cases", help="import images; the class folder name gives the reference label")
    p.add_argument("--db", required=True, help="SQLite database (created when missing)")
    p.add_argument("--label-from-folder", nargs="+", required=True, metavar="DIR",
                   help="folders holding <class>/<image> (Monkeypox -> mpox, any other class -> not mpox)")
    p.set_defaults(run=_import_cases)

    p = sub.add_parser("run-models", help="score every case with MIM and each classifier baseline with weights")
    p.add_argument("--db", required=True)
    p.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS_DIR), help="folder of model cards + weights")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(run=_run_models)

    p = sub.add_parser("import-verdicts", help="import verdicts from a CSV: reviewer, case, phase, label, confidence")
    p.add_argument("--db", required=True)
    p.add_argument("file", help="CSV file")
    p.set_defaults(run=_import_verdicts)

    p = sub.add_parser("correct", help="record corrections from a CSV (same columns as import-verdicts); each row "
                       "supersedes that reviewer's current verdict for the case and phase")
    p.add_argument("--db", required=True)
    p.add_argument("file", help="CSV file")
    p.set_defaults(run=_correct)

    p = sub.add_parser("status", help="progress per reader: cases done per phase, reading time, last activity")
    p.add_argument("--db", required=True)
    p.set_defaults(run=_status)

    p = sub.add_parser("merge", help="merge site databases into one new study database")
    p.add_argument("sites", nargs="+", metavar="SITE_DB", help="site databases (file name = site name)")
    p.add_argument("--out", required=True, help="the merged database to create (never overwritten)")
    p.set_defaults(run=_merge)

    p = sub.add_parser("design", help="show or set the reading design: sequential (default) or a washout")
    p.add_argument("--db", required=True)
    p.add_argument("--washout-days", type=float, metavar="DAYS",
                   help="days between a case's unaided and aided readings (0 = sequential); only before any "
                        "aided verdict")
    p.set_defaults(run=_design)

    p = sub.add_parser("report", help="write report.html, metrics.json, verdicts.csv and predictions.csv")
    p.add_argument("--db", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--uncertain", choices=("positive", "negative", "exclude"), default="positive",
                   help="how a reviewer's 'uncertain' counts in sensitivity/specificity (default: positive)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for AUROC CIs")
    p.set_defaults(run=_report)

    p = sub.add_parser("add-reviewer", help="create a reviewer (or set the credential of an existing one)")
    p.add_argument("--db", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--name", help="display name (default: the id)")
    p.add_argument("--role", choices=("reviewer", "admin"), default="reviewer")
    p.add_argument("--reads", action="store_true",
                   help="give an admin a reading queue (an admin is not a reader otherwise; reviewers always are)")
    p.add_argument("--credential-stdin", action="store_true", help="read the credential from the first stdin line")
    p.set_defaults(run=_add_reviewer)

    p = sub.add_parser("backup", help="online backup (SQLite backup API) into a new, checked, single file")
    p.add_argument("--db", required=True)
    p.add_argument("--out", required=True, help="the backup file to create (never overwritten)")
    p.set_defaults(run=_backup)

    p = sub.add_parser("restore", help="restore a backup (the database it replaces is kept beside it)")
    p.add_argument("--from", dest="backup", required=True, metavar="BACKUP", help="a file written by backup")
    p.add_argument("--db", required=True)
    p.add_argument("--replace", action="store_true", help="overwrite an existing database (a copy is kept)")
    p.set_defaults(run=_restore)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is meant for the user. mim_core's are only looked up when already imported
    (so commands that never touch torch don't pay for importing it)."""
    known: list[type[BaseException]] = [ClinicalError, FileNotFoundError]
    for module, name in (("mim_core.checkpoint", "WeightsError"), ("mim_core.data", "ImageDecodeError")):
        if module in sys.modules:
            known.append(getattr(sys.modules[module], name))
    return tuple(known)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except sqlite3.DatabaseError as err:
        print(f"error: {getattr(args, 'db', 'the database')} is not a usable clinical database ({err}).",
              file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - only known, user-facing errors are turned into one sentence
        if not isinstance(err, _known_errors()):
            raise
        print(f"error: {err}", file=sys.stderr)
    return 2
