"""A reviewer's reading session as a separate process, for the crash tests.

``python -m tests.crash_writer DB REVIEWER CREDENTIAL`` signs in and records verdicts through the same
path as the Review tab (:func:`clinical.review.record_verdict`), as fast as it can, until the queue is
done. After each save returns (the transaction is committed) it prints one line::

    confirmed <verdict id> <case id> <phase> <label> <confidence>

so the parent knows exactly which saves were confirmed before it kills the process with SIGKILL.
"""

from __future__ import annotations

import sys

from clinical.review import next_item, record_verdict, reveal
from clinical.schema import LABELS
from clinical.store import Store


def main(db: str, reviewer: str, credential: str) -> int:
    """Record verdicts until the reviewer's queue is done; print each confirmed save."""
    store = Store(db, create=False)
    signed_in = store.sign_in(reviewer, credential)
    if signed_in is None:
        print(f"sign-in failed for {reviewer}", file=sys.stderr)
        return 1
    _, session = signed_in
    print("signed-in", flush=True)
    while (item := next_item(store, session)) is not None:
        if item.step == "reveal":  # the unaided verdict is saved: ask for the model output, as the tab does
            reveal(store, session, [item.case_id, item.step])
            continue
        label = LABELS[(item.position + (item.phase == "aided")) % len(LABELS)]
        confidence = 1 + item.position % 5
        message = record_verdict(store, session, [item.case_id, item.step], label, confidence, 1.0,
                                 f"{reviewer} {item.phase} {item.position}")
        ref = message.split(" verdict ", 1)[1].split()[0]  # the reviewer's opaque reference of the save
        verdict_id = store.query("SELECT verdict_id FROM verdict_refs WHERE ref = ?", [ref])[0]["verdict_id"]
        print(f"confirmed {verdict_id} {item.case_id} {item.phase} {label} {confidence}", flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
