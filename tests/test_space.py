"""The repository is a Hugging Face Space as it stands: the push is accepted and the Space can start.

Spaces refuse any file over 10 MB that is not under Git LFS / Xet, and nothing here is LFS-tracked (a fresh
clone without git-lfs must still run both README commands), so every tracked file must be at most 10 MB.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPACE_FILE_LIMIT = 10 * 1024 * 1024  # bytes: Hugging Face's limit for a file pushed without LFS


def tracked_files() -> list[Path]:
    """Files git tracks (what a push sends); without a git checkout, every file outside ignored folders."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        return [REPO / name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache"}
        return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def front_matter() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    block = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert block, "README.md must start with the Space's YAML front matter"
    return dict(line.split(": ", 1) for line in block.group(1).splitlines() if ": " in line)


def test_every_tracked_file_fits_a_space_push() -> None:
    files = tracked_files()
    assert len(files) > 50  # the listing worked
    too_big = [f"{p.relative_to(REPO)} ({p.stat().st_size / 2**20:.1f} MB)" for p in files
               if p.is_file() and p.stat().st_size > SPACE_FILE_LIMIT]
    assert not too_big, f"over the Space's 10 MB limit for files without LFS: {', '.join(too_big)}"


def test_nothing_is_lfs_tracked() -> None:
    """A clone without git-lfs would get pointer files instead of weights."""
    attributes = REPO / ".gitattributes"
    assert not attributes.exists() or "filter=lfs" not in attributes.read_text()


def test_front_matter_starts_the_demo_with_the_pinned_gradio() -> None:
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert (REPO / meta["app_file"]).is_file()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M))
    assert meta["sdk_version"] == pins["gradio"], "the Space's Gradio must be the version the tests ran"
    assert meta["python_version"].strip('"') == "3.11"


def test_the_demos_weights_are_in_the_tree() -> None:
    """Everything the Space's demo loads at start is tracked: the weights, their card and the bank it names."""
    import json

    card = json.loads((REPO / "weights" / "mim_gan.json").read_text())
    tracked = {p.relative_to(REPO).as_posix() for p in tracked_files()}
    for name in ("mim_gan.pt", "mim_gan.json", card["appearance"]["bank"]):
        assert f"weights/{name}" in tracked
