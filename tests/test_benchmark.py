"""The robustness benchmark runs end to end on a small real subset and writes every file it promises."""

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mim_core.baselines.classifier import ClassifierDetector
from mim_core.benchmark.run import BenchmarkConfig, _healthy_rows, benchmark_table, load_models, run_benchmark
from mim_core.benchmark.report import FILES
from mim_core.cli import main
from mim_core.data import locate
from mim_core.benchmark.corruptions import CORRUPTIONS
from tests.conftest import shipped_copy

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
HEALTHY = Path(__file__).resolve().parent.parent.parent / "shared" / "healthy_skin_dev" / "Normal"
SMALL = BenchmarkConfig(per_class_limit=1, limit=2, noise_per_class=0, severities=(1,), n_boot=200,
                        healthy_dirs=(str(HEALTHY), str(HEALTHY.parent / "absent")))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """MIM, the smallest shipped classifier (MIM's view) and the probe (its own view), copied with their cards."""
    folder = shipped_copy(tmp_path_factory.mktemp("weights")).parent
    for name, suffix in itertools.product(("mobilenet_v3_small_others", "effnet_probe"), (".pt", ".json")):
        shutil.copyfile(WEIGHTS / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


@pytest.fixture(scope="module")
def bench(weights_dir: Path, data_root: Path, msid_root: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    return out, run_benchmark(weights_dir, [data_root, msid_root], out, SMALL)


def test_benchmark_writes_every_promised_file(bench):
    out, results = bench
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert json.loads((out / "benchmark.json").read_text())["n"] == results["n"]
    markdown = (out / "benchmark.md").read_text()
    for heading in ("## (a) Unseen categories", "## (b) Noise", "## (c) Abnormal inputs"):
        assert heading in markdown
    assert [m["kind"] for m in results["models"]] == ["mim", "classifier", "classifier"]


def test_each_model_is_scored_on_its_own_view(bench, data_root: Path, msid_root: Path):
    """The probe reads MIM's crop at 224 px, the others MIM's 128 px view: each score is the model's own answer to the
    photo, as the page would give it."""
    out, results = bench
    scores = pd.read_csv(out / "unseen_scores.csv").head(4)
    for name in ("effnet-probe", "mobilenet-v3-small-others"):
        detector = ClassifierDetector.load(WEIGHTS / f"{name.replace('-', '_')}.pt")
        own = [detector.analyze(locate([data_root, msid_root], p)).score for p in scores["path"]]
        assert scores[name].to_numpy() == pytest.approx(own, abs=1e-5)
    assert ClassifierDetector.load(WEIGHTS / "effnet_probe.pt").config.preprocess.size != \
        ClassifierDetector.load(WEIGHTS / "mobilenet_v3_small_others.pt").config.preprocess.size


def test_unseen_part_covers_the_21_test_classes_and_others(bench):
    out, results = bench
    per_class = pd.read_csv(out / "unseen_per_class.csv")
    assert per_class["class"].nunique() == 22 and "MSLD_v1/Others" in set(per_class["class"])
    assert not set(per_class["class"]) & {f"DermNetNZ/{c}" for c in ("Acne_vulgaris", "Psoriasis", "Vitiligo")}
    # re-derive each model's Others AUROC from the written scores, in the model's own direction
    scores = pd.read_csv(out / "unseen_scores.csv")
    pos = scores["role"] == "mpox_test"
    neg = scores["class"] == "MSLD_v1/Others"
    for model in results["models"]:
        raw = scores[model["name"]].to_numpy()
        mpox_like = -raw if model["kind"] == "mim" else raw
        expected = roc_auc_score(np.r_[np.ones(pos.sum()), np.zeros(neg.sum())], np.r_[mpox_like[pos], mpox_like[neg]])
        assert results["unseen"]["summary"][model["name"]]["others"]["auroc"] == pytest.approx(expected, abs=1e-4)


def test_every_figure_is_also_given_per_mpox_source(bench):
    out, results = bench
    assert results["n"]["mpox_test_per_source"] == {"MSID": 2, "MSLD_v1": 2}  # --limit 2 per source
    scores = pd.read_csv(out / "unseen_scores.csv")
    neg = scores["class"] == "MSLD_v1/Others"
    for model in results["models"]:
        raw = scores[model["name"]].to_numpy()
        mpox_like = -raw if model["kind"] == "mim" else raw
        for source in ("MSLD_v1", "MSID"):
            pos = (scores["role"] == "mpox_test") & scores["path"].str.startswith(f"{source}/")
            expected = roc_auc_score(np.r_[np.ones(pos.sum()), np.zeros(neg.sum())],
                                     np.r_[mpox_like[pos], mpox_like[neg]])
            got = results["unseen"]["per_source"][source][model["name"]]["others"]["auroc"]
            assert got == pytest.approx(expected, abs=1e-4)
    assert "MSID" in (out / "benchmark.md").read_text()


def test_each_healthy_folder_gets_its_own_row(bench):
    out, results = bench
    assert results["n"]["healthy"] == {str(HEALTHY): len(list(HEALTHY.iterdir()))}  # the absent folder is skipped
    rows = pd.DataFrame(results["healthy"])
    assert set(rows["model"]) == {m["name"] for m in results["models"]}
    learnt_all = rows["trained_on"] == len(list(HEALTHY.iterdir()))  # the probe learns from every Normal photo
    assert learnt_all.sum() == 1 and rows.loc[learnt_all, "mpox_like"].isna().all()
    assert rows.loc[~learnt_all, "mpox_like"].between(0, 1).all()
    targets = [t["target"] for t in results["targets"][results["models"][0]["name"]]]
    assert "healthy-skin photos (Normal) called mpox-like ≤ 10 %" in targets
    assert "| `Normal` (" in (out / "benchmark.md").read_text()


def test_a_model_is_not_judged_on_healthy_photos_it_trained_on(weights_dir: Path, tmp_path: Path):
    """The probe learns from the healthy design photos (`Normal`): its healthy row counts only the others."""
    folder = shipped_copy(tmp_path / "w").parent
    for suffix in (".pt", ".json"):
        shutil.copyfile(WEIGHTS / f"effnet_probe{suffix}", folder / f"effnet_probe{suffix}")
    models = load_models(folder, threads=2)
    probe_card = json.loads((WEIGHTS / "effnet_probe.json").read_text())
    learned = [p for part in ("train", "val") for p in probe_card["split"]["negatives"][part] if p.startswith("Normal/")]
    rows = {r["model"]: r for r in _healthy_rows(models, str(HEALTHY), SMALL)}
    total = len(list(HEALTHY.iterdir()))
    assert 0 < len(learned) <= total  # all of them, today: 85 % train, 15 % val
    assert rows["effnet-probe"]["trained_on"] == len(learned) and rows["effnet-probe"]["n"] == total - len(learned)
    assert rows["mim-gan"]["trained_on"] == 0 and rows["mim-gan"]["n"] == total


def test_noise_and_abnormal_tables(bench):
    out, results = bench
    noise = pd.read_csv(out / "noise.csv")
    assert len(noise) == len(results["models"]) * (1 + len(CORRUPTIONS))
    assert set(noise["corruption"]) == {"clean", *CORRUPTIONS}
    assert noise["auroc"].between(0, 1).all() and noise["gate_flagged"].between(0, 1).all()
    summary = pd.read_csv(out / "abnormal_summary.csv")
    assert {"flat", "noise", "text", "chart", "pattern", "natural", "all"} <= set(summary["category"])
    flat = summary[summary["category"] == "flat"]
    assert (flat["gate_flagged"] == 1.0).all()  # the model-free gate flags flat colours, whichever model
    per_image = pd.read_csv(out / "abnormal.csv")
    assert not (per_image["called_mpox_after_gate"] & per_image["gate_flagged"]).any()


def test_benchmark_refuses_a_leaky_split(weights_dir: Path, data_root: Path, tmp_path: Path, bench):
    leaky = tmp_path / "weights"
    shutil.copytree(weights_dir, leaky)
    card = json.loads((leaky / "mobilenet_v3_small_others.json").read_text())
    others_test = pd.read_csv(bench[0] / "unseen_scores.csv").query("`class` == 'MSLD_v1/Others'")["path"]
    card["split"]["negatives"]["train"].append(others_test.iloc[0])
    (leaky / "mobilenet_v3_small_others.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="trained on MSLD Others test photos"):
        benchmark_table(data_root, load_models(leaky, threads=1), SMALL)


def test_benchmark_refuses_a_model_that_saw_an_mpox_test_photo(weights_dir: Path, data_root: Path, msid_root: Path,
                                                              tmp_path: Path, bench):
    leaky = tmp_path / "weights"
    shutil.copytree(weights_dir, leaky)
    card = json.loads((leaky / "mobilenet_v3_small_others.json").read_text())
    mpox_test = pd.read_csv(bench[0] / "unseen_scores.csv").query("role == 'mpox_test'")["path"]
    card["split"]["positives"]["train"].append(mpox_test[mpox_test.str.startswith("MSID/")].iloc[0])
    (leaky / "mobilenet_v3_small_others.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="trained or calibrated on mpox test photos"):
        benchmark_table([data_root, msid_root], load_models(leaky, threads=1), SMALL)


def test_cli_error_is_a_sentence(tmp_path: Path, capsys, data_root: Path):
    (tmp_path / "w").mkdir()
    assert main(["benchmark", "--out", str(tmp_path / "o"), "--weights-dir", str(tmp_path / "w"),
                 "--data", str(data_root)]) == 2
    assert capsys.readouterr().err.startswith("error: The benchmark needs MIM and at least one classifier card")
