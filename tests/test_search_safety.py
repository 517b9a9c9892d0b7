"""tune.py's project dir: a changed search is refused, overwrite deletes
only the search's own files, files are atomic, bad flags fail early."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tune
from anpvs_tf import config as config_lib
from anpvs_tf import files
from anpvs_tf import search
from anpvs_tf import tuning
from anpvs_tf.errors import ConfigError
from anpvs_tf.search import run_search
from anpvs_tf.base import base_config
from tests.conftest import ROOT
from tests.tiny_runs import run_config

# What a search writes into its project dir (search.py's layout).
LAYOUT = {"config.json", "base", "search", "default.json", "trials.json",
          "trials.md", "pareto.png", "best_hyperparameters.json", "best"}


def tiny_config(**overrides):
    return run_config("lenet5_caffe_mnist_anp_vs", 1, **{
        "data.validation_examples": 64, "data.test_examples": 64,
        "data.monitor_examples": 0, "train.batch_size": 64,
        # The search, not the network, is under test: a tiny LeNet.
        "model.architecture": "lenet5_caffe_tiny", **overrides,
    })


class Reached(Exception):
    """Raised by a stand-in for training: the search got past its checks."""


def no_training(monkeypatch):
    """Makes any training or tuning in run_search fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("run_search trained or tuned")

    monkeypatch.setattr(search, "train", refuse)
    monkeypatch.setattr(search.tuning, "make_tuner", refuse)


def stop_at_training(monkeypatch):
    def stop(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(search, "train", stop)


def tree(folder):
    """Every path under `folder` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size,
                                        path.stat().st_mtime_ns)
        for path in sorted(Path(folder).rglob("*"))
    }


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    """One finished one-trial search, with the paths files.py wrote and the
    data splits it read."""
    from anpvs_tf import data

    project = tmp_path_factory.mktemp("search")
    written, splits = [], []
    original, load_split = files.atomic_path, data.load_split

    def recording(path, suffix=""):
        written.append(Path(path))
        return original(path, suffix)

    def reading(data_config, split):
        splits.append(split)
        return load_split(data_config, split)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "atomic_path", recording)
        patch.setattr(data, "load_split", reading)
        run_search(tiny_config(), project, tuner="random", max_trials=1,
                   retrain_best=False, log=lambda *_: None)
    return project, written, splits


def test_the_search_never_reads_the_test_set(finished_search):
    """Its base model included (it was once scored on the test images)."""
    project, _, splits = finished_search
    assert "validation" in splits and "test" not in splits
    base = json.loads((project / "base" / "results.json").read_text())
    assert base["evaluation_split"] == "validation"
    assert base["test_examples"] == 64
    assert "| validation examples | 64 |" in (
        project / "base" / "results.md").read_text()


def test_every_file_of_the_search_is_written_atomically(finished_search):
    project, written, _ = finished_search
    assert {project / name for name in (
        "config.json", "default.json", "trials.json", "trials.md",
        "best_hyperparameters.json", "pareto.png")} <= set(written)
    # Nothing the search wrote lies outside the layout overwrite deletes.
    assert set(os.listdir(project)) <= LAYOUT
    assert not [p for p in project.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("change, expected", [
    ({"config": {"train.epochs": 2}}, "train.epochs: 1 -> 2"),
    ({"floors": tuning.Floors(min_sparsity=60.0)},
     "search.min_sparsity: 50.0 -> 60.0"),
    ({"tuner": "bayesian"}, "search.tuner: random -> bayesian"),
    ({"config": {"train.seed": 1}}, "train.seed: 0 -> 1"),
    ({"config": {"data.validation_examples": 32}},
     "data.validation_examples: 64 -> 32"),
])
def test_a_changed_search_is_refused_before_any_work(
        finished_search, monkeypatch, change, expected):
    project, _, _ = finished_search
    before = tree(project)
    no_training(monkeypatch)
    with pytest.raises(ConfigError) as error:
        run_search(
            tiny_config(**change.get("config", {})), project,
            tuner=change.get("tuner", "random"),
            floors=change.get("floors"), max_trials=1,
            log=lambda *_: None,
        )
    message = str(error.value)
    assert message == (
        f"'{project}' holds a search with other settings ({expected}); "
        "choose another `project_dir`, or pass `overwrite` to delete that "
        "search (its base model, trials, reports and best model)"
    )
    assert tree(project) == before  # nothing written, nothing trained


def test_more_trials_is_the_same_search(finished_search, monkeypatch,
                                        tmp_path):
    project, _, _ = finished_search
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(project / "config.json", copy / "config.json")
    stop_at_training(monkeypatch)
    with pytest.raises(Reached):  # past the settings check
        run_search(tiny_config(), copy, tuner="random", max_trials=5,
                   log=lambda *_: None)


def test_a_search_from_before_the_settings_file_resumes_if_it_matches(
        monkeypatch, tmp_path):
    # Older project dirs hold only the config, with its base workdir.
    project = tmp_path / "old"
    project.mkdir()
    legacy = json.loads(config_lib.replace(tiny_config(), **{
        "train.base_workdir": "/elsewhere/base"}).to_json())
    (project / "config.json").write_text(json.dumps(legacy))
    stop_at_training(monkeypatch)
    with pytest.raises(Reached):
        run_search(tiny_config(), project, tuner="bayesian",
                   floors=tuning.Floors(70.0), log=lambda *_: None)
    # From then on the whole settings are stored and compared.
    settings = json.loads((project / "config.json").read_text())
    assert settings["search"]["min_sparsity"] == 70.0
    (project / "config.json").write_text(json.dumps(legacy))
    no_training(monkeypatch)
    with pytest.raises(ConfigError, match=r"\(train.epochs: 1 -> 3\)"):
        run_search(tiny_config(**{"train.epochs": 3}), project,
                   log=lambda *_: None)


def test_overwrite_deletes_the_old_search(monkeypatch, tmp_path):
    project = tmp_path / "project"
    for name in ("base", "search", "best"):
        (project / name).mkdir(parents=True)
        (project / name / "results.json").write_text("{}")
    for name in LAYOUT - {"base", "search", "best"}:
        (project / name).write_text("{")  # even a damaged one
    stop_at_training(monkeypatch)
    with pytest.raises(Reached):
        run_search(tiny_config(), project, tuner="random", overwrite=True,
                   log=lambda *_: None)
    # The old base, default score and best model are not reused: only the
    # new search's settings are left when training starts.
    assert os.listdir(project) == ["config.json"]
    settings = json.loads((project / "config.json").read_text())
    assert settings["search"]["tuner"] == "random"
    assert settings["train"]["epochs"] == 1


def test_overwrite_refuses_a_project_dir_with_a_foreign_file(
        monkeypatch, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text("{}")
    (project / "default.json").write_text("{}")
    (project / "notes.txt").write_text("mine")
    before = tree(project)
    no_training(monkeypatch)
    with pytest.raises(files.ForeignFilesError, match="notes.txt"):
        run_search(tiny_config(), project, overwrite=True,
                   log=lambda *_: None)
    assert tree(project) == before
    assert (project / "notes.txt").read_text() == "mine"


def test_a_damaged_settings_file_says_how_to_recover(monkeypatch, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"train": ')
    no_training(monkeypatch)
    with pytest.raises(files.DamagedFileError) as error:
        run_search(tiny_config(), project, log=lambda *_: None)
    message = str(error.value)
    assert "\n" not in message
    assert "config.json' is damaged" in message and "`overwrite`" in message


@pytest.mark.parametrize("text", ["{", '{"hyperparameters": {}}'])
def test_a_damaged_default_score_says_how_to_recover(text, tmp_path):
    path = tmp_path / "default.json"
    path.write_text(text)
    with pytest.raises(files.DamagedFileError, match="it is re-scored"):
        search.score_default(None, path)


def test_the_base_model_follows_the_recipes_base_method():
    config = run_config("lenet5_caffe_mnist_anp_vs", 3, **{
        "train.base_method": "at", "train.gate_epochs": 1,
        "train.base_workdir": "/elsewhere/base",
    })
    train_config = base_config(config).train
    assert train_config.method == "at"
    assert train_config.epochs == config.train.base_epochs
    assert train_config.gate_epochs is None
    assert train_config.base_workdir is None
    assert train_config.weight_learning_rate == (
        config.train.weight_learning_rate)


def test_the_base_model_trains_at_its_own_learning_rate():
    config = run_config("lenet5_caffe_mnist_anp_vs", 3, **{
        "train.base_method": "at", "train.gate_epochs": 1,
        "train.base_learning_rate": 0.003})
    train_config = base_config(config).train
    assert train_config.weight_learning_rate == 0.003
    assert config.train.weight_learning_rate != 0.003
    # The base's own config carries no base of its own.
    assert train_config.base_learning_rate is None


@pytest.mark.parametrize("base_decays, expected", [
    (None, (0.5, 0.7)), ((), ()), ((0.9,), (0.9,))])
def test_the_base_model_decays_at_its_own_fractions(base_decays, expected):
    config = run_config("lenet5_caffe_mnist_anp_vs", 3, **{
        "train.gate_epochs": 1, "train.decay_fractions": (0.5, 0.7),
        "train.base_decay_fractions": base_decays})
    train_config = base_config(config).train
    assert train_config.decay_fractions == expected
    assert train_config.base_decay_fractions is None
    assert config.train.decay_fractions == (0.5, 0.7)


def test_runs_that_differ_only_in_gate_settings_share_one_base():
    """The unpruned base has no gates: a gate-only setting (the fine-tune
    rate after they freeze, the KL's cost exponent) must not make a base
    of its own (bench/budget_search.py trains one base per config); nor
    must the KL's beta and N or VS's lambda, which no base method reads."""
    start = run_config("lenet5_caffe_mnist_anp_vs", 3, **{
        "train.base_method": "at", "train.gate_epochs": 1})
    varied = config_lib.replace(start, **{
        "train.fine_tune_learning_rate": 0.002,
        "train.freeze_at_sparsity": 60.0,
        "loss.kl_flops_exponent": -0.5, "loss.kl_weight": 68.6,
        "loss.kl_normalizer": None, "loss.vs_weight": 0.01})
    assert base_config(varied) == base_config(start)
    assert base_config(config_lib.replace(
        start, **{"loss.adv_weight": 1.0})) != base_config(start)


@pytest.mark.parametrize("floors, flag", [
    ((150.0, 1.0), "`min_sparsity`"), ((-5.0, 1.0), "`min_sparsity`"),
    ((100.0, 1.0), "`min_sparsity`"), ((math.nan, 1.0), "`min_sparsity`"),
    ((math.inf, 1.0), "`min_sparsity`"),
    ((50.0, 0.5), "`min_flops_speedup`"),
    ((50.0, math.nan), "`min_flops_speedup`"),
    ((50.0, math.inf), "`min_flops_speedup`"),
])
def test_size_floors_out_of_range_are_config_errors(floors, flag):
    with pytest.raises(ConfigError, match=flag):
        tuning.Floors(*floors)
    tuning.Floors(0.0, 1.0)  # the bounds themselves are floors
    tuning.Floors(99.5, 3.0)


@pytest.mark.parametrize("values, flag", [
    ({"min_flops_speedup": math.nan}, "--min_flops_speedup"),
    ({"min_sparsity": -math.inf}, "--min_sparsity"),
    ({"project_dir": ""}, "--project_dir"),
    ({"project_dir": "  "}, "--project_dir"),
])
def test_tune_refuses_unusable_flag_values(values, flag):
    defaults = {"project_dir": "runs/tune", "min_sparsity": 50.0,
                "min_flops_speedup": 1.0, "max_trials": 8}
    tune.check_flag_values(defaults)
    with pytest.raises(ConfigError, match=flag):
        tune.check_flag_values({**defaults, **values})


def test_tune_refuses_a_recipe_it_cannot_rank():
    tune.check_searchable("lenet5_caffe_mnist_at", "at", [])
    tune.check_searchable("m", "anp_vs", ["--min_sparsity"])
    with pytest.raises(ConfigError, match="no robustness to search for"):
        tune.check_searchable("lenet5_caffe_mnist_standard", "standard", [])
    with pytest.raises(ConfigError, match="prunes nothing, so "
                       "--min_sparsity cannot apply"):
        tune.check_searchable("lenet5_caffe_mnist_at", "at",
                              ["--min_sparsity"])


# One subprocess (each costs a TensorFlow start-up): the other bad values
# are checked in-process above, through the same functions.
@pytest.mark.parametrize("flag, phrase", [
    ("--min_sparsity=150", "--min_sparsity must be a finite number in"),
])
def test_tune_rejects_bad_flags_in_one_line(flag, phrase, tmp_path):
    # A tiny search, should the flag be accepted; run in tmp_path so an
    # empty --project_dir could only write there.
    args = [
        f"--project_dir={tmp_path / 'project'}", "--epochs=1",
        "--base_epochs=1", "--train_examples=64",
        "--validation_examples=32", "--batch_size=32", "--max_trials=1",
        "--val_pgd_steps=1", "--tuner=random", "--noretrain_best", flag,
    ]
    result = subprocess.run(
        [sys.executable, str(ROOT / "tune.py"), *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1 and phrase in errors[0], result.stderr
    assert os.listdir(tmp_path) == []  # nothing created
