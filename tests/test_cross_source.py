"""The cross-source protocol: which photos play which role, and the methods' scoring on real photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mim_core.evaluation.cross_source import MPOX_SOURCES, directions
from mim_core.evaluation.protocol import HEALTHY_DESIGN, HEALTHY_TEST
from mim_core.baselines.probe import fit_probe, negative_kind
from mim_core.evaluation.cross_source_run import (HEALTHY_FOLDS, PROBE_C, Measurements, collection_probe,
                                                  dev_over_seeds, evaluate_direction, markdown, measure,
                                                  one_class_scores, probe_scores, seeds_markdown, source_photo_folds)
from mim_core.evaluation.protocol import DEV_CLASSES

HEALTHY_ROOT = Path(__file__).resolve().parents[2] / "shared" / "healthy_skin_dev"


@pytest.fixture(scope="module")
def both(data_root: Path, msid_root: Path):
    return directions([data_root, msid_root], HEALTHY_ROOT)


def _groups(photos) -> set[str]:
    return {p.group for p in photos}


def test_each_direction_learns_from_one_source_and_meets_the_other(both):
    assert [(d.train_source, d.test_source) for d in both] == [MPOX_SOURCES, MPOX_SOURCES[::-1]]
    for d in both:
        for photos, source in ((d.fit, d.train_source), (d.calibration, d.train_source),
                               (d.dev_mpox, d.test_source), (d.test_mpox, d.test_source)):
            assert photos and all(f"/{source}/Monkeypox/" in p.location.as_posix() for p in photos)
        # no source photo on two sides, within each source
        assert not _groups(d.fit) & _groups(d.calibration)
        assert not _groups(d.dev_mpox) & _groups(d.test_mpox)


def test_the_two_directions_use_each_source_split_the_same_way(both):
    forward, backward = both
    # a source is judged on all its mpox photos: its val split on the dev side, the rest on the test side
    msld = sorted((Path(forward.fit[0].location).parents[0]).iterdir())
    assert sorted(p.location for p in backward.dev_mpox + backward.test_mpox) == msld
    assert {p.location for p in forward.fit} <= {p.location for p in backward.test_mpox}
    assert _groups(backward.dev_mpox) == _groups(forward.calibration)
    assert not _groups(backward.test_mpox) & _groups(forward.calibration)


def test_negatives_roles_are_fixed_and_disjoint(both):
    d = both[0]
    dev_classes = set(d.dev_negatives) - {"healthy", "others"}
    assert dev_classes == set(DEV_CLASSES)
    # Others: the dev half is the half the supervised baselines learn from, no source photo in both halves
    assert not _groups(d.dev_negatives["others"]) & _groups(d.test_negatives["others"])
    assert not dev_classes & set(d.test_negatives)
    assert len(set(d.test_negatives) - {"healthy", "others"}) == 21
    assert {p.location.parent.name for p in d.dev_negatives["healthy"]} == {HEALTHY_DESIGN}
    assert {p.location.parent.name for p in d.test_negatives["healthy"]} == {HEALTHY_TEST}
    # baselines that learn from negatives never see a test negative (Others is split by source photo)
    supervised = {p.location for p in d.supervised_negatives}
    assert not supervised & {p.location for photos in d.test_negatives.values() for p in photos}
    assert not _groups(d.supervised_negatives) & _groups(d.test_negatives["others"])
    assert {p.location for p in d.supervised_negatives} == {p.location for photos in d.dev_negatives.values()
                                                           for p in photos}  # as the probe's recipe, less MSID_Normal


def test_one_source_is_refused_with_a_sentence(data_root: Path):
    with pytest.raises(ValueError, match="needs mpox photos of MSLD_v1, MSID"):
        directions([data_root], HEALTHY_ROOT)


def _small(d, n: int = 6):
    """The direction with at most ``n`` photos per set (a fast check of the scoring, not a figure)."""
    take = lambda photos: photos[:n]  # noqa: E731
    return replace(d, fit=take(d.fit), calibration=take(d.calibration), dev_mpox=take(d.dev_mpox),
                   test_mpox=take(d.test_mpox),
                   dev_negatives={k: take(v) for k, v in d.dev_negatives.items()},
                   test_negatives={k: take(v) for k, v in list(d.test_negatives.items())[:3] + [
                       ("others", d.test_negatives["others"]), ("healthy", d.test_negatives["healthy"])]},
                   supervised_negatives=[p for photos in d.dev_negatives.values() for p in take(photos)])


@pytest.fixture(scope="module")
def by_seed(both, data_root: Path, msid_root: Path) -> dict[int, list]:
    """The small directions' dev sides for split seeds 0 and 1."""
    dev_only = lambda d: replace(_small(d), test_mpox=[], test_negatives={})  # noqa: E731
    return {0: [dev_only(d) for d in both],
            1: [dev_only(d) for d in directions([data_root, msid_root], HEALTHY_ROOT, seed=1)]}


@pytest.fixture(scope="module")
def measured(both, by_seed, detector) -> Measurements:
    """One measurement of every photo the scoring tests below use (each photo decoded and measured once), with
    MIM for the first direction's training source only."""
    photos = {p.location for p in _small(both[0]).photos()}
    photos |= {p.location for found in by_seed.values() for d in found for p in d.photos()}
    return measure(sorted(photos), {both[0].train_source: detector})


def test_every_method_scores_both_sides_and_calls_the_calibration_photos_mpox_like(both, measured):
    d, m = _small(both[0]), measured
    photos = {p.location for p in d.photos()}
    assert photos <= set(m.index) and m.pooled.shape == (len(m.index), 1280) and m.cells.shape[1:] == (49, 80)
    results = evaluate_direction(m, d, ["dev", "test"])
    assert set(results) == {"control:complexity", "one-class:knn", "one-class:mahalanobis", "one-class:patchcore",
                            "probe", "mim"}
    for name, r in results.items():
        scores = {"mim": m.mim[d.train_source]}.get(name)
        if scores is not None:
            assert (scores[m.rows(d.calibration)] <= r["threshold"]).all()
        for side in ("dev", "test"):
            assert 0 <= r[side]["dermnet_mean"]["auroc"] <= 1
            assert r[side]["n_mpox"] == len(d.dev_mpox if side == "dev" else d.test_mpox)
    assert "others" in results["probe"]["test"] and "others" in results["probe"]["dev"]
    # a photo the model learned from is the nearest neighbour of itself; the patch score is its worst cell's
    scores = one_class_scores(m, m.rows(d.fit))
    assert np.allclose(scores["one-class:knn"][m.rows(d.fit)], 0, atol=1e-5)
    bank = m.cells[m.rows(d.fit)].reshape(-1, m.cells.shape[2])
    other = m.rows(d.dev_mpox)[0]
    worst = (1 - (m.cells[other] @ bank.T).max(axis=1)).max()
    assert scores["one-class:patchcore"][other] == pytest.approx(worst, abs=1e-5)


def test_the_probes_dev_negatives_are_scored_by_probes_that_never_saw_them(both, measured):
    d, m = _small(both[0]), measured
    full, held = probe_scores(m, d, m.rows(d.fit))
    assert {p.location for photos in d.dev_negatives.values() for p in photos} == set(held)
    others = source_photo_folds(d.dev_negatives["others"])
    assert sum(map(len, others)) == len(d.dev_negatives["others"])
    assert all(not _groups(a) & _groups(b) for i, a in enumerate(others) for b in others[i + 1:])  # by source photo
    for fold in (d.dev_negatives["healthy"][1::HEALTHY_FOLDS], others[0]):
        learnt = [p for p in d.supervised_negatives if p not in fold]
        weight, bias = fit_probe(m.training_features(m.rows(d.fit)), m.training_features(m.rows(learnt)),
                                 [negative_kind(p.location) for p in learnt], PROBE_C)
        for p in fold:
            row = m.index[p.location]
            assert held[p.location] == pytest.approx(-(m.probe[row] @ weight + bias), abs=1e-9)
            assert held[p.location] != pytest.approx(full[row], abs=1e-6)  # the full probe learned from it


def test_the_dev_side_over_split_seeds_repeats_seed_0_and_redraws_the_rest_for_every_method(by_seed, measured):
    assert {p.location for p in by_seed[0][0].dev_mpox} != {p.location for p in by_seed[1][0].dev_mpox}
    m = measured  # MIM for one direction only
    over = dev_over_seeds({seed: {d.name: evaluate_direction(m, d, ["dev"]) for d in found}
                           for seed, found in by_seed.items()})
    assert over["seeds"] == [0, 1]
    for d in by_seed[0]:
        seed_0 = evaluate_direction(m, d, ["dev"])
        figures = over["directions"][d.name]
        assert set(figures) == set(seed_0) and ("mim" in figures) == (d.train_source in m.mim)
        for method, r in seed_0.items():
            assert figures[method]["dermnet_mean"][0] == r["dev"]["dermnet_mean"]["auroc"]
            assert figures[method]["healthy"] == [r["dev"]["healthy"]["auroc"], figures[method]["healthy"][1]]
    # MIM's scores do not depend on the split, so a seed's dev figure is its figure on that seed's dev photos
    again = evaluate_direction(m, by_seed[1][0], ["dev"])["mim"]["dev"]["healthy"]["auroc"]
    assert over["directions"][by_seed[0][0].name]["mim"]["healthy"][1] == again
    table = seeds_markdown(over)
    assert table[0].startswith("## Dev side over split seeds 0, 1")
    probe = next(row for row in table if row.startswith("| probe |"))
    assert probe.count("[") == 6  # mean [min, max] for each direction's DermNet, healthy and Others figure
    mim = next(row for row in table if row.startswith("| mim |"))
    assert mim.count("[") == 3 and mim.count("—") == 4  # no MIM in the second direction: 3 figures and the lowest


def test_the_collection_probe_sees_features_that_tell_the_mpox_collections_apart(both):
    photos = [p for d in both for p in d.fit + d.calibration]
    second = np.array([d.train_source == both[1].train_source for d in both for _ in d.fit + d.calibration], float)
    noise = np.random.default_rng(0).normal(size=(len(photos), 16))
    with_source = noise.copy()
    with_source[:, 0] += 0.8 * second  # one feature leans on the collection

    def probe_of(features: np.ndarray) -> dict:
        m = Measurements({p.location: i for i, p in enumerate(photos)}, np.zeros(len(photos)), noise, noise, {},
                         features, features[None], features)
        return collection_probe(m, both)

    blind, seeing = probe_of(noise), probe_of(with_source)
    assert (blind["first"], blind["second"]) == tuple(d.train_source for d in both)
    assert blind["ci_low"] < 0.5 < blind["ci_high"]  # features that know nothing of the collection: chance
    assert seeing["auroc"] > 0.65 and seeing["ci_low"] > 0.5
    line = next(r for r in markdown({"command": "", "sides": [], "directions": {}, "collection_probe": seeing}
                                    ).splitlines() if r.startswith("**Collection probe**"))
    assert f"{seeing['auroc']:.3f}" in line


def test_more_than_one_dev_seed_needs_the_dev_side(tmp_path: Path, capsys):
    from mim_core.cli import main

    assert main(["cross-source", "--side", "test", "--dev-seeds", "3", "--out", str(tmp_path / "run")]) == 2
    assert "needs the dev side" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_card_records_both_sides_or_nothing(tmp_path: Path, capsys):
    from mim_core.cli import main

    args = ["cross-source", "--side", "dev", "--record-in", "mim=weights/mim_gan.pt", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "A card records both sides" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    assert main(["cross-source", "--mim", "MSLD_v1", "--out", str(tmp_path)]) == 2
    assert "SOURCE=WEIGHTS" in capsys.readouterr().err
    assert main(["cross-source", "--record-in", "weights/mim_gan.pt", "--out", str(tmp_path)]) == 2
    assert "METHOD=WEIGHTS" in capsys.readouterr().err


def test_the_dev_winner_is_chosen_on_dev_figures_only():
    from mim_core.evaluation.cross_source_run import dev_winner

    def figures(dermnet: float, healthy: float, test: float) -> dict:
        return {"dev": {"dermnet_mean": {"auroc": dermnet}, "healthy": {"auroc": healthy}},
                "test": {"dermnet_mean": {"auroc": test}, "healthy": {"auroc": test}}}

    results = {"sides": ["dev", "test"], "directions": {
        "A -> B": {"control:complexity": figures(1.0, 1.0, 1.0), "mim": figures(0.9, 0.6, 1.0),
                   "probe": figures(0.8, 0.8, 0.0)},
        "B -> A": {"control:complexity": figures(1.0, 1.0, 1.0), "mim": figures(0.9, 0.5, 1.0),
                   "probe": figures(0.9, 0.7, 0.0)}}}
    winner = dev_winner(results)
    assert winner["method"] == "probe"  # (0.8 + 0.8 + 0.9 + 0.7) / 4 = 0.8 > MIM's 0.725; test figures ignored
    assert winner["dev_figure"] == {"mim": 0.725, "probe": 0.8}
    with pytest.raises(ValueError, match="dev side"):
        dev_winner({**results, "sides": ["test"]})
