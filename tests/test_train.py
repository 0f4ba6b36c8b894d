"""Training runs end to end on the real mpox split, resumes, and writes a card."""

import json
from pathlib import Path

import pytest
import torch

from mim_core.card import write_card
from mim_core.checkpoint import load_card
from mim_core.config import MIMConfig, RunConfig
from mim_core.detector import MIMDetector
from mim_core.training.train import noisy_inputs, train


def test_train_resume_and_card(tmp_path: Path, data_root: Path):
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
    card = write_card(weights, data_root, command="test")
    assert card["weights_sha256"] == record["weights_sha256"]
    assert load_card(weights)["threshold"]["value"] == card["threshold"]["value"]
    assert MIMDetector.load(weights).threshold == card["threshold"]["value"]


def test_train_is_seeded(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=1, train__batch_size=2, train__checkpoint_every=1)
    a = torch.load(train(data_root, tmp_path / "a", config), weights_only=True)["generator"]
    b = torch.load(train(data_root, tmp_path / "b", config), weights_only=True)["generator"]
    c = torch.load(train(data_root, tmp_path / "c", config.replace(train__seed=1)), weights_only=True)["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_background_inpainter_trains_on_shuffled_tiles(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=1, train__batch_size=2, train__checkpoint_every=1, train__tile_shuffle=4)
    shuffled = torch.load(train(data_root, tmp_path / "bg", config), weights_only=True)
    plain = torch.load(train(data_root, tmp_path / "plain", config.replace(train__tile_shuffle=0)), weights_only=True)
    assert shuffled["config"]["train"]["tile_shuffle"] == 4
    # same seed, same batches before shuffling: only the shuffled tiles can make the weights differ
    assert not all(torch.equal(shuffled["generator"][k], plain["generator"][k]) for k in plain["generator"])


def test_time_limit_stops_at_a_checkpoint_and_exports(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=50, train__batch_size=2, train__checkpoint_every=1)
    train(data_root, tmp_path, config, RunConfig(time_limit_s=0.0))
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["steps_done"] == 1 and [h["step"] for h in record["history"]] == [1]
    assert (tmp_path / "model.pt").is_file()


def test_resume_refuses_another_model_but_not_other_run_settings(tmp_path: Path, data_root: Path):
    config = MIMConfig().replace(train__steps=1, train__batch_size=2, train__checkpoint_every=1)
    train(data_root, tmp_path, config, RunConfig(threads=2))
    one_thread = torch.load(train(data_root, tmp_path, config.replace(train__steps=2), RunConfig(threads=1)),
                            weights_only=True)
    assert "threads" not in one_thread["config"]["train"]  # run settings are not the model's identity
    with pytest.raises(ValueError, match="different model config"):
        train(data_root, tmp_path, config.replace(train__steps=3, train__lr=1e-3))


def test_noisy_inputs_leave_about_half_clean_and_bound_the_noise():
    real = torch.full((64, 3, 16, 16), 0.5)
    seen = noisy_inputs(real, 0.06, torch.Generator().manual_seed(0))
    per_view_std = (seen - real).flatten(1).std(1)
    clean = per_view_std == 0
    assert 0.25 < clean.float().mean() < 0.75
    assert per_view_std.max() < 0.07 and per_view_std[~clean].min() > 0  # std drawn in [0, 0.06]


def test_fine_tune_starts_from_the_given_weights(tmp_path: Path, data_root: Path):
    from conftest import SHIPPED_WEIGHTS

    shipped = torch.load(SHIPPED_WEIGHTS, weights_only=True)["generator"]
    config = MIMConfig().replace(train__steps=1, train__batch_size=2, train__checkpoint_every=1,
                                 train__input_noise=0.06, train__init_weights=str(SHIPPED_WEIGHTS))
    tuned = torch.load(train(data_root, tmp_path / "tuned", config), weights_only=True)
    scratch = torch.load(train(data_root, tmp_path / "scratch", config.replace(train__init_weights="")), weights_only=True)
    assert tuned["config"]["train"]["init_weights"] == str(SHIPPED_WEIGHTS)

    def distance(a: dict) -> float:
        return sum(float((a[k].float() - shipped[k].float()).norm()) for k in shipped if shipped[k].is_floating_point())

    assert distance(tuned["generator"]) < 0.01 * distance(scratch["generator"])
