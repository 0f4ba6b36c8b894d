"""Classifier baselines: training end to end on the real split, seeding, cards, the shipped
weights, and scoring through the clinical module's run-models."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from mim_core.checkpoint import WeightsError, load_card
from mim_core.baselines.classifier import ClassifierDetector, load_classifier, predict_proba
from mim_core.baselines.train import classifier_split, groups_of, train_classifier
from mim_core.calibrate import calibrate
from mim_core.cli import main
from mim_core.config import ClassifierConfig, read_recipe
from mim_core.data import load_tensor, locate
from mim_core.evaluation.protocol import DEV_CLASSES
from mim_core.training.train import mpox_split
from tests.conftest import REPO

WEIGHTS = REPO / "weights"
TINY = dict(arch="mobilenet_v3_small", steps=2, batch_size=4, eval_every=1)


def _state(weights: Path) -> dict:
    return torch.load(weights, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root: Path) -> Path:
    out = tmp_path_factory.mktemp("cls")
    weights = train_classifier(data_root, out, ClassifierConfig(**TINY), log=lambda line: None)
    calibrate(weights, command="test")
    return weights


def test_split_is_by_source_photo_and_never_touches_test_classes(data_root: Path):
    split = classifier_split(data_root, "others+dev", split_seed=0)
    assert {p: [r.path for r in items] for p, items in split.positives.items()} == mpox_split(data_root, 0).as_paths()
    parts = split.as_paths()
    for side in ("positives", "negatives"):
        seen: dict[str, str] = {}
        for part, paths in parts[side].items():
            for group in groups_of(paths):
                assert seen.setdefault(group, part) == part, f"{group} in {seen[group]} and {part}"
    others = [p for part in parts["negatives"].values() for p in part if p.startswith("MSLD_v1/Others/")]
    assert len(others) == 125 and len(set(groups_of(others))) < 125  # 11.jpg and 11_1.jpg: one source photo
    dermnet = [p for part in ("train", "val") for p in parts["negatives"][part] if p.startswith("DermNetNZ/")]
    assert dermnet and {p.split("/")[1] for p in dermnet} == set(DEV_CLASSES)
    assert not [p for p in parts["negatives"]["test"] if p.startswith("DermNetNZ/")]
    assert not [p for p in parts["negatives"]["train"] if "Monkeypox" in p]


def test_the_healthy_design_photos_and_half_of_msids_join_the_negatives_and_the_other_half_never_does(
        data_root: Path):
    healthy_root = data_root.parent / "healthy_skin_dev"
    split = classifier_split([data_root, healthy_root], "others+dev+healthy", split_seed=0).as_paths()
    learned = [p for part in ("train", "val") for p in split["negatives"][part]]
    assert sorted(p for p in learned if p.startswith("Normal/")) == sorted(
        f"Normal/{f.name}" for f in (healthy_root / "Normal").iterdir())
    msid = [p for p in learned if p.startswith("MSID_Normal/")]
    every_msid = sorted(f"MSID_Normal/{f.name}" for f in (healthy_root / "MSID_Normal").iterdir())
    assert len(set(msid)) == len(msid) and abs(len(msid) - len(every_msid) / 2) <= 1  # half learnt, half held out
    assert [p for p in split["negatives"]["val"] if p.startswith("MSID_Normal/")]  # the threshold sees MSID's look
    assert not [p for p in split["negatives"]["test"] if p.startswith(("Normal/", "MSID_Normal/"))]
    again = classifier_split([data_root, healthy_root], "others+dev+healthy", split_seed=0).as_paths()
    other_seed = classifier_split([data_root, healthy_root], "others+dev+healthy", split_seed=1).as_paths()
    assert again == split and {p for part in ("train", "val") for p in other_seed["negatives"][part]} != set(learned)
    with pytest.raises(FileNotFoundError, match="add the healthy_skin_dev folder to the data roots"):
        classifier_split(data_root, "others+dev+healthy", split_seed=0)


def test_training_runs_end_to_end_and_writes_a_card(tiny_run: Path, data_root: Path):
    record = json.loads((tiny_run.parent / "training.json").read_text())
    assert [h["step"] for h in record["history"]] == [1, 2]
    card = load_card(tiny_run)
    assert card["kind"] == "classifier" and card["score_direction"] == "higher = more mpox-like"
    assert card["weights_sha256"] == record["weights_sha256"] and card["training"]["pretrained"] is False
    assert "no pretrained weights could be downloaded" in card["training"]["pretrained_note"]
    assert card["split_sha256"] == record["split_sha256"]
    # the threshold is re-derived from the stored weights: the lowest mpox val probability
    model, config = load_classifier(tiny_run, card["weights_sha256"])
    val = torch.stack([load_tensor(data_root / p, config.preprocess) for p in card["split"]["positives"]["val"]])
    assert card["threshold"]["value"] == pytest.approx(predict_proba(model, val).min(), abs=1e-6)
    detector = ClassifierDetector.load(tiny_run)
    result = detector.analyze(data_root / card["split"]["positives"]["test"][0])
    assert 0.0 <= result.score <= 1.0 and result.original.shape == (128, 128, 3)
    assert result.verdict.value == ("mpox-like" if result.score >= detector.threshold else "not mpox-like")
    # the one result type of every model kind: no MIM panels, no gate measurements
    assert result.inpainted is None and result.heatmap is None and result.summary()["quality"] == {}


def test_training_is_seeded(tiny_run: Path, tmp_path: Path, data_root: Path):
    again = train_classifier(data_root, tmp_path / "a", ClassifierConfig(**TINY), log=lambda line: None)
    other = train_classifier(data_root, tmp_path / "b", ClassifierConfig(**TINY, seed=1), log=lambda line: None)
    a, b, c = _state(tiny_run), _state(again), _state(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tampered_weights_are_refused(tiny_run: Path, tmp_path: Path):
    shutil.copyfile(tiny_run, tmp_path / "m.pt")
    shutil.copyfile(tiny_run.with_suffix(".json"), tmp_path / "m.json")
    with open(tmp_path / "m.pt", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(WeightsError, match="does not match its model card"):
        ClassifierDetector.load(tmp_path / "m.pt")


@pytest.mark.parametrize("card_path", sorted(p for p in WEIGHTS.glob("*.json")
                                             if json.loads(p.read_text()).get("kind") == "classifier"))
def test_every_shipped_classifier_has_a_recipe_equal_to_its_card(card_path: Path):
    card = json.loads(card_path.read_text())
    made = read_recipe(WEIGHTS.parent / card["recipe"]["file"])
    assert made.kind == "classifier" and made.name == card["name"]
    assert made.config.to_dict() == card["config"]
    assert (card["recipe"]["file"], card["recipe"]["sha256"]) == (made.path, made.sha256)


def test_recipe_then_calibrate_make_a_card_and_export_it(tmp_path: Path, data_root: Path, capsys):
    run = tmp_path / "run"
    args = ["train-classifier", "--recipe", "recipes/mobilenet_v3_small_others.toml", "--steps", "1",
            "--batch-size", "2", "--eval-every", "1", "--data", str(data_root), "--out", str(run)]
    assert main(args) == 0
    assert main(["calibrate", str(run / "model.pt"), "--export", str(tmp_path / "w" / "m.bin")]) == 2
    assert "error: --export wants a .pt path" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    assert main(["calibrate", str(run / "model.pt"), "--export", str(tmp_path / "w" / "m.pt")]) == 0
    capsys.readouterr()
    card = load_card(tmp_path / "w" / "m.pt")
    assert (card["name"], card["weights_file"]) == ("mobilenet-v3-small-others", "m.pt")
    assert card["recipe"]["file"] == "recipes/mobilenet_v3_small_others.toml" and card["training"]["steps"] == 1
    assert card["training"]["command"].startswith("python -m mim_core train-classifier --recipe")
    assert ClassifierDetector.load(tmp_path / "w" / "m.pt").threshold == card["threshold"]["value"]
    # a classifier card scores through the same command as MIM's
    photo = data_root / card["split"]["positives"]["test"][0]
    assert main(["score", "--weights", str(tmp_path / "w" / "m.pt"), "--json", str(photo)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["threshold"] == pytest.approx(card["threshold"]["value"], abs=1e-6) and 0 <= line["score"] <= 1


def test_bad_config_is_a_sentence():
    with pytest.raises(ValueError, match="Unknown architecture"):
        ClassifierConfig(arch="vgg")
    with pytest.raises(ValueError, match="Unknown threshold rule"):
        ClassifierConfig(threshold_rule="median")
    with pytest.raises(ValueError, match="needs the efficientnet_lite0_probe"):
        ClassifierConfig(arch="resnet18", threshold_rule="youden-val-oof")  # out-of-fold scores refit the probe's head
    assert "threshold_rule" not in ClassifierConfig().to_dict()  # older files keep their meaning


@pytest.mark.parametrize("card_path", sorted(p for p in WEIGHTS.glob("*.json")
                                             if json.loads(p.read_text()).get("kind") == "classifier"))
def test_shipped_classifier_cards_match_their_weights(card_path: Path):
    card = json.loads(card_path.read_text())
    detector = ClassifierDetector.load(card_path.parent / card["weights_file"])
    split, roots = card["split"], [REPO / root for root in card["data"].get("roots", [card["data"].get("root")])]
    pos = torch.stack([load_tensor(locate(roots, p), detector.config.preprocess) for p in split["positives"]["val"]])
    neg = torch.stack([load_tensor(locate(roots, p), detector.config.preprocess) for p in split["negatives"]["val"]])
    pos_p, neg_p = detector.score_views(pos), detector.score_views(neg)
    every_val = card["threshold"].get("every_val_mpox", card["threshold"]["value"])  # the Youden rules keep it
    assert every_val == pytest.approx(pos_p.min(), abs=1e-5)
    rule = card["config"].get("threshold_rule")
    if rule in ("youden-val", "youden-val-oof"):
        labels = np.r_[np.ones(len(pos_p)), np.zeros(len(neg_p))]
        fpr, tpr, cuts = roc_curve(labels, np.r_[pos_p, neg_p])
        youden_on_val = cuts[1:][np.argmax((tpr - fpr)[1:])]
        assert card["threshold"]["youden_on_val"] == pytest.approx(youden_on_val, abs=1e-5)
        if rule == "youden-val":
            assert card["threshold"]["value"] == pytest.approx(youden_on_val, abs=1e-5)
        else:  # over val and the train photos' out-of-fold scores: a cut among those scores, not necessarily val's
            assert "out-of-fold" in card["threshold"]["method"]
    labels = np.r_[np.ones(len(pos_p)), np.zeros(len(neg_p))]
    assert card["evaluation"]["val"]["auroc"] == pytest.approx(roc_auc_score(labels, np.r_[pos_p, neg_p]), abs=1e-3)
    assert not set(split["positives"]["test"]) & set(split["positives"]["train"] + split["positives"]["val"])


def test_classifier_cards_score_through_clinical_run_models(tiny_run: Path, tmp_path: Path, data_root: Path):
    from clinical.cases import collect_images, import_images
    from clinical.models import run_models
    from clinical.store import Store

    for label, folder in (("Monkeypox", "MSLD_v1/Monkeypox"), ("Others", "MSLD_v1/Others")):
        (tmp_path / "ds" / label).mkdir(parents=True)
        for path in sorted((data_root / folder).glob("*.jpg"))[:3]:
            shutil.copyfile(path, tmp_path / "ds" / label / path.name)
    store = Store(tmp_path / "study.sqlite")
    import_images(store, collect_images([tmp_path / "ds"]))
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copyfile(tiny_run, weights / "tiny.pt")
    card = load_card(tiny_run)
    (weights / "tiny.json").write_text(json.dumps({**card, "weights_file": "tiny.pt"}))
    summaries = run_models(store, weights, log=lambda line: None)
    assert [(s["model"], s["scored"]) for s in summaries] == [(card["name"], 6)]
    run = store.runs()[0]
    assert (run["kind"], run["mpox_when"]) == ("classifier", "higher")
    assert run["threshold"] == pytest.approx(card["threshold"]["value"])
    predictions = store.predictions()
    assert len(predictions) == 6 and all(0 <= p["score"] <= 1 for p in predictions)
    assert {p["label"] for p in predictions} <= {"mpox-like", "not mpox-like"}
