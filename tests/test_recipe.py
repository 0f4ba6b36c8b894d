"""Recipes: the committed files that rebuild each shipped model, read strictly, with one-sentence errors."""

import json
from pathlib import Path

import pytest

from mim_core.checkpoint import load_card, sha256_file
from mim_core.cli import main
from mim_core.config import MIMConfig, read_recipe
from tests.conftest import REPO, SHIPPED_WEIGHTS

MIM_RECIPE = REPO / "recipes" / "mim_gan.toml"


def test_the_shipped_model_is_its_recipe_and_the_defaults_are_the_shipped_model():
    recipe, card = read_recipe(MIM_RECIPE), load_card(SHIPPED_WEIGHTS)
    assert json.loads(json.dumps(recipe.config.to_dict())) == card["config"]
    assert recipe.config == MIMConfig()  # a newcomer's MIMConfig() is the shipped model's
    assert card["recipe"] == {"file": "recipes/mim_gan.toml", "sha256": sha256_file(MIM_RECIPE)}
    assert (recipe.name, recipe.kind, recipe.data_roots) == (card["name"], "mim", ("../shared/data", "../shared/data_msid"))
    assert list(recipe.data_roots) == card["data"]["roots"]
    assert card["training"]["steps"] == card["config"]["train"]["steps"]  # the steps run, not a plan


@pytest.mark.parametrize("text, message", [
    ("data_roots = ['../shared/data']\n[train]\nstepz = 3\n", "stepz"),
    ("data_roots = ['../shared/data']\n[trian]\nsteps = 3\n", "unknown keys"),
    ("[train]\nsteps = 3\n", "needs data_roots"),
    ("data_roots = ['../shared/data'\n", "not valid TOML"),
    ("kind = 'forest'\ndata_roots = ['x']\n", "kind must be"),
    ("data_roots = ['x']\n[measure]\npresmooth_sigma = 1.0\n", "no longer"),
])
def test_a_bad_recipe_is_one_sentence_naming_the_file(tmp_path: Path, capsys, text: str, message: str):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_recipe(recipe)
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.toml" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_recipe_of_the_other_kind_is_refused(tmp_path: Path, capsys):
    assert main(["train", "--recipe", str(REPO / "recipes" / "resnet18_others.toml"), "--out", str(tmp_path)]) == 2
    assert "train-classifier" in capsys.readouterr().err
    assert main(["train-classifier", "--recipe", str(MIM_RECIPE), "--out", str(tmp_path)]) == 2
    assert "python -m mim_core train`" in capsys.readouterr().err


def test_files_from_before_the_removed_options_still_load_when_they_were_off():
    old = MIMConfig().to_dict()
    old["train"].update(tile_shuffle=0, input_noise=0.0, init_weights="", threads=3)
    old["measure"]["presmooth_sigma"] = 0.0
    assert MIMConfig.from_dict(old) == MIMConfig()
    old["train"]["tile_shuffle"] = 4  # a background reference inpainter: an option this version lacks
    with pytest.raises(ValueError, match="tile_shuffle"):
        MIMConfig.from_dict(old)
