"""One training command for one process or many (``torchrun``), and bfloat16 against the fp32 reference."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mim_core import MIMDetector, model
from mim_core.config import MIMConfig, RunConfig
from mim_core.data import load_tensor
from mim_core.training.train import train
from tests.conftest import REPO, SHIPPED_WEIGHTS, located

BF16_SCORE_TOLERANCE = 0.01  # score units; the shipped scores span about 0.5 and the bf16 error is ~0.003


def test_torchrun_two_cpu_processes_train_one_model_that_resumes_alone(tmp_path: Path, data_root: Path):
    run = tmp_path / "ddp"
    recipe = tmp_path / "every_step.toml"  # the shipped recipe, validating at every step
    recipe.write_text((REPO / "recipes" / "mim_gan.toml").read_text().replace("checkpoint_every = 500",
                                                                             "checkpoint_every = 1"))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mim_core", "train", "--recipe", str(recipe), "--data", str(data_root), "--out", str(run),
               "--steps", "2", "--batch-size", "2", "--threads", "1"]
    config = MIMConfig().replace(train__steps=2, train__batch_size=2, train__checkpoint_every=1)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    digests = [(run / f"digest.rank{r}").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]  # both ranks hold the same generator and discriminator, bit for bit
    record = json.loads((run / "training.json").read_text())
    assert record["world_size"] == 2 and [h["step"] for h in record["history"]] == [1, 2]
    assert torch.load(run / "model.pt", weights_only=True)["config"] == config.to_dict()  # the same model
    assert record["command"].startswith("torchrun --nproc_per_node 2 -m mim_core train --recipe")
    # the two-process checkpoint is the model's: one process resumes it, with other threads
    train(data_root, run, config.replace(train__steps=3), RunConfig(threads=2))
    assert [h["step"] for h in json.loads((run / "training.json").read_text())["history"]] == [1, 2, 3]


def cpu_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """Pretend this CPU has (or lacks) native bfloat16, whatever it has."""
    monkeypatch.setattr(model, "native_bf16", lambda device_type: native)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_training_step_runs_and_is_recorded(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                 native: bool):
    cpu_bf16(monkeypatch, native)
    config = MIMConfig().replace(train__steps=1, train__batch_size=2, train__checkpoint_every=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(data_root, tmp_path, config, RunConfig(precision="bf16"))
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["precision"] == ("bf16" if native else "fp32")  # the precision that ran
    assert np.isfinite(record["best_val_masked_l1"])
    assert any("no native bfloat16" in str(w.message) for w in caught) != native


def test_native_bf16_reads_the_cpu_instruction_sets(monkeypatch: pytest.MonkeyPatch):
    for avx512_bf16, amx in [(False, False), (True, False), (False, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert model.native_bf16("cpu") == (avx512_bf16 or amx)
        assert model.native_bf16("cuda")


def test_bf16_without_native_support_runs_the_fp32_reference(detector, data_root: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    cpu_bf16(monkeypatch, False)
    with pytest.warns(RuntimeWarning, match="no native bfloat16.*running fp32 instead"):
        fallback = MIMDetector.load(SHIPPED_WEIGHTS, precision="bf16")
    assert fallback.precision == "fp32"
    images = torch.stack([load_tensor(p, detector.config.preprocess)
                          for p in sorted((data_root / "DermNetNZ" / "Orf").iterdir())[:2]])
    assert np.array_equal(fallback.score_tensors(images).scores, detector.score_tensors(images).scores)


def test_bf16_analysis_agrees_with_fp32(detector, data_root: Path, monkeypatch: pytest.MonkeyPatch):
    cpu_bf16(monkeypatch, True)  # bf16 runs, emulated where the CPU has no native bfloat16
    bf16 = MIMDetector.load(SHIPPED_WEIGHTS, precision="bf16")
    paths = [located(p) for p in detector.card["split"]["val"][:6]]
    paths += sorted((data_root / "DermNetNZ" / "Orf").iterdir())[:4]
    images = torch.stack([load_tensor(p, detector.config.preprocess) for p in paths])
    reference, fast = detector.score_tensors(images), bf16.score_tensors(images)
    assert np.abs(fast.scores - reference.scores).max() < BF16_SCORE_TOLERANCE
    assert not np.array_equal(fast.scores, reference.scores)  # bf16 really ran
    assert np.allclose(fast.maps.mean((1, 2, 3)).numpy(), fast.scores, atol=2e-6)  # still the map's mean
    with pytest.raises(ValueError, match="precision"):
        MIMDetector.load(SHIPPED_WEIGHTS, precision="fp8")
