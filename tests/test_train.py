"""Training runs end to end on the real mpox split, is seeded, resumes and stops at a time limit."""

import json
from pathlib import Path

import pytest
import torch

from mim_core.config import MIMConfig, RunConfig
from mim_core.training.train import train


def test_train_resumes_and_records_the_steps_run(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=2, train__batch_size=2, train__checkpoint_every=1)
    weights = train(data_root, tmp_path, config)
    record = json.loads((tmp_path / "training.json").read_text())
    assert [h["step"] for h in record["history"]] == [1, 2]
    # resume: the longer run continues from step 2 rather than starting over, on other run settings
    weights = train(data_root, tmp_path, config.replace(train__steps=3), RunConfig(threads=1, log_every=1))
    record = json.loads((tmp_path / "training.json").read_text())
    assert [h["step"] for h in record["history"]] == [1, 2, 3]
    # trained on mpox only, split by source photo
    assert all(p.startswith("MSLD_v1/Monkeypox/") for part in record["split"].values() for p in part)
    assert torch.load(weights, weights_only=True)["config"]["train"]["steps"] == record["steps_done"] == 3


def test_train_is_seeded(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=1, train__batch_size=2, train__checkpoint_every=1)
    a = torch.load(train(data_root, tmp_path / "a", config), weights_only=True)["generator"]
    b = torch.load(train(data_root, tmp_path / "b", config), weights_only=True)["generator"]
    c = torch.load(train(data_root, tmp_path / "c", config.replace(train__seed=1)), weights_only=True)["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_time_limit_stops_at_a_checkpoint_and_exports(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=50, train__batch_size=2, train__checkpoint_every=1)
    train(data_root, tmp_path, config, RunConfig(time_limit_s=0.0))
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["steps_done"] == 1 and [h["step"] for h in record["history"]] == [1]
    # the exported config says the steps run, not the 50 asked for
    assert torch.load(tmp_path / "model.pt", weights_only=True)["config"]["train"]["steps"] == 1


def test_resume_refuses_another_model_but_not_other_run_settings(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=1, train__batch_size=2, train__checkpoint_every=1)
    train(data_root, tmp_path, config, RunConfig(threads=2))
    one_thread = torch.load(train(data_root, tmp_path, config.replace(train__steps=2), RunConfig(threads=1)),
                            weights_only=True)
    assert "threads" not in one_thread["config"]["train"]  # run settings are not the model's identity
    with pytest.raises(ValueError, match="different model config"):
        train(data_root, tmp_path, config.replace(train__steps=3, train__lr=1e-3))
