"""Small real studies for the clinical tests: real MSLD photos imported into a fresh store, reviewers whose
credential is ``<id>-secret-1``."""

import shutil
from pathlib import Path

from clinical.cases import collect_images, import_images
from clinical.store import Store


def real_study(root: Path, data_root: Path, per_class: int) -> Path:
    """root/MSLD_v1/{Monkeypox,Others} with ``per_class`` real photos each."""
    for label in ("Monkeypox", "Others"):
        (root / "MSLD_v1" / label).mkdir(parents=True)
        for path in sorted((data_root / "MSLD_v1" / label).iterdir())[:per_class]:
            shutil.copy(path, root / "MSLD_v1" / label)
    return root / "MSLD_v1"


def study_store(root: Path, data_root: Path, per_class: int, reviewers: dict[str, tuple[str, str]]) -> Store:
    """``root/study.sqlite`` holding :func:`real_study`'s photos and ``reviewers`` {id: (display name, role)}."""
    store = Store(root / "study.sqlite")
    import_images(store, collect_images([real_study(root, data_root, per_class)]))
    for reviewer, (name, role) in reviewers.items():
        store.create_reviewer(reviewer, name, role, f"{reviewer}-secret-1")
    return store


def signed_in(store: Store, reviewer: str):
    """The session of a reviewer made by :func:`study_store`."""
    return store.sign_in(reviewer, f"{reviewer}-secret-1")[1]
