"""`python -m mim_core score` as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

from mim_core import model
from mim_core.cli import main
from tests.conftest import REPO, located


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mim_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_score_json_lines_with_a_bad_file_among_good_ones(tmp_path: Path, detector, screening, data_root: Path):
    good = [located(p) for p in detector.card["split"]["test"][:2]]
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a jpeg")
    result = _run("score", "--json", str(good[0]), str(bad), str(good[1]))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(good[0]), str(bad), str(good[1])]
    assert "error" in lines[1] and "not an image" in lines[1]["error"]
    for line in (lines[0], lines[2]):
        assert set(line) >= {"path", "score", "threshold", "verdict"}
        # the page's answer: the probe's verdict, MIM's refusals (a refused photo has score None, its refusal
        # sentence and the quality values) and MIM's own score beside it
        assert line == {"path": line["path"], **screening.analyze(Path(line["path"])).summary()}


def test_score_gives_mims_own_verdict_on_request(detector):
    good = [located(p) for p in detector.card["split"]["test"][:3]]
    result = _run("score", "--json", "--verdict-weights", "none", *map(str, good))
    assert result.returncode == 0, result.stderr
    for line in map(json.loads, result.stdout.splitlines()):
        assert line == {"path": line["path"], **detector.analyze(Path(line["path"])).summary()}
    mixed = _run("score", "--weights", "weights/effnet_probe.pt", "--verdict-weights", "weights/effnet_knn.pt",
                 str(good[0]))
    assert mixed.returncode == 2 and mixed.stderr.startswith("error: --verdict-weights goes with MIM weights only")


def test_score_all_good_exits_zero_and_missing_weights_is_one_sentence(detector, data_root: Path):
    good = located(detector.card["split"]["test"][0])
    ok = _run("score", str(good))
    assert ok.returncode == 0 and "threshold" in ok.stdout
    missing = _run("score", "--weights", "nowhere/none.pt", str(good))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error: ")


def test_bf16_on_a_cpu_without_native_bfloat16_is_one_plain_warning(detector, monkeypatch, capsys):
    monkeypatch.setattr(model, "native_bf16", lambda device_type: False)
    photo = located(detector.card["split"]["test"][0])
    assert main(["score", "--json", "--verdict-weights", "none", "--precision", "bf16", str(photo)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == ["warning: This CPU has no native bfloat16 (avx512_bf16 or AMX), where bf16 runs "
                                "several times slower than fp32: running fp32 instead."]
    assert json.loads(out) == {"path": str(photo), **detector.analyze(photo).summary()}  # the fp32 reference
