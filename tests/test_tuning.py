"""Hyper-parameter search: objective, validation split, resumable search."""

import dataclasses
import json

import numpy as np
import pytest

from anpvs_tf import config as config_lib
from anpvs_tf import tuning
from anpvs_tf.errors import ConfigError
from anpvs_tf.registry import get_experiment
from anpvs_tf.search import run_search
from anpvs_tf.data import load_split
from tests.tiny_runs import run_config


def test_objective_is_robust_accuracy_discounted_below_the_floors():
    floors = tuning.Floors(min_sparsity=50.0, min_flops_speedup=1.2)
    # Meeting both floors: the robust accuracy itself.
    assert tuning.objective_value(0.7, 80.0, 2.0, floors) == 0.7
    assert tuning.objective_value(0.7, 50.0, 1.2, floors) == 0.7
    # Each missed floor multiplies by (achieved / floor)^2.
    assert tuning.objective_value(0.8, 25.0, 1.2, floors) == \
        pytest.approx(0.8 * 0.25)
    assert tuning.objective_value(0.8, 25.0, 0.6, floors) == \
        pytest.approx(0.8 * 0.25 * 0.25)
    # A strong network just short of the floor beats one that meets it by
    # collapsing to chance; no sparsity at all scores nothing.
    assert tuning.objective_value(0.88, 43.0, 1.3, floors) > \
        tuning.objective_value(0.1, 99.0, 5.0, floors)
    assert tuning.objective_value(0.9, 0.0, 1.0, floors) == 0.0


def test_pareto_front_keeps_exactly_the_non_dominated_trials():
    rows = [
        {"trial_id": "a", "robust_val_acc": 0.9, "flops_speedup": 1.0},
        {"trial_id": "b", "robust_val_acc": 0.8, "flops_speedup": 2.0},
        {"trial_id": "c", "robust_val_acc": 0.7, "flops_speedup": 1.5},
        {"trial_id": "d", "robust_val_acc": 0.9, "flops_speedup": 0.9},
        {"trial_id": "e", "robust_val_acc": 0.5, "flops_speedup": 3.0},
    ]
    front = {r["trial_id"] for r in tuning.pareto_front(rows)}
    assert front == {"a", "b", "e"}


def test_validation_split_is_disjoint_from_training_and_test_data():
    data_config = config_lib.DataConfig(
        validation_examples=500, train_examples=3000
    )
    train_images, _ = load_split(data_config, "train")
    validation_images, _ = load_split(data_config, "validation")
    test_images, _ = load_split(data_config, "test")
    assert len(validation_images) == 500 and len(train_images) == 3000

    def fingerprints(images):
        return {image.tobytes() for image in images}

    validation = fingerprints(validation_images)
    assert len(validation) == 500
    assert not validation & fingerprints(train_images)
    assert not validation & fingerprints(test_images)
    # The held-out images never come back, however many examples train.
    everything = load_split(
        dataclasses.replace(data_config, train_examples=None), "train"
    )[0]
    assert len(everything) == 4500
    assert not validation & fingerprints(everything)


def test_holding_out_everything_is_a_clear_error():
    data_config = config_lib.DataConfig(validation_examples=5000)
    with pytest.raises(ConfigError, match="leaves no training example"):
        load_split(data_config, "train")


SEARCHABLE = ("anp_vs", "anp", "bp", "at", "at_pretrained", "trades")


@pytest.mark.parametrize("method", SEARCHABLE)
def test_default_hyperparameters_are_the_recipe(method):
    import keras_tuner as kt

    recipe = get_experiment(f"lenet5_caffe_mnist_{method}")
    hypermodel = tuning.RecipeHyperModel(recipe, None, tuning.Floors())
    assert hypermodel.config_for(kt.HyperParameters()) == recipe


def _space(method):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    tuning.RecipeHyperModel(
        get_experiment(f"lenet5_caffe_mnist_{method}"), None,
        tuning.Floors()).config_for(hp)
    return {p.name: p.get_config() for p in hp.space}


def test_each_method_searches_what_it_has_and_shares_the_same_dimensions():
    spaces = {method: _space(method) for method in SEARCHABLE}
    common = {"weight_lr", "schedule"}
    attack = {"pgd_steps", "pgd_travel"}
    gates = {"beta", "gate_lr", "gate_init"}
    assert set(spaces["at"]) == common | attack
    assert set(spaces["at_pretrained"]) == common | attack
    assert set(spaces["trades"]) == common | attack | {"trades_beta"}
    assert set(spaces["bp"]) == common | gates
    assert set(spaces["anp"]) == common | attack | gates
    assert set(spaces["anp_vs"]) == common | attack | gates | {"lambda"}
    # The same budget: a dimension two methods share offers the same
    # values to both.
    for name in common | attack:
        assert spaces["at"][name] == spaces["anp_vs"][name], name
        assert spaces["trades"][name] == spaces["anp_vs"][name], name


def test_a_point_of_the_space_sets_travel_and_schedule():
    import keras_tuner as kt

    recipe = get_experiment("lenet5_caffe_mnist_at")
    hypermodel = tuning.RecipeHyperModel(recipe, None, tuning.Floors())
    hp = kt.HyperParameters()
    hypermodel.config_for(hp)  # registers the space
    hp.values.update(pgd_steps=10, pgd_travel=2.0, schedule="constant",
                     weight_lr=0.003)
    config = hypermodel.config_for(hp)
    travel = recipe.attack.num_steps * recipe.attack.step_size
    assert config.attack.num_steps == 10
    assert config.attack.num_steps * config.attack.step_size == \
        pytest.approx(2 * travel)
    assert config.train.decay_fractions == ()
    assert config.train.weight_learning_rate == 0.003
    hp.values.update(schedule="late")
    assert hypermodel.config_for(hp).train.decay_fractions == (0.75, 0.9)


def test_overrides_for_a_point_rebuild_its_config():
    import keras_tuner as kt

    recipe = get_experiment("lenet5_caffe_mnist_anp_vs")
    hypermodel = tuning.RecipeHyperModel(recipe, None, tuning.Floors())
    hp = kt.HyperParameters()
    hypermodel.config_for(hp)
    point = {"beta": 11.4, "pgd_steps": 10, "pgd_travel": 2.0,
             "gate_init": "open5", "schedule": "late"}
    hp.values.update(point)
    overrides = tuning.overrides_for(recipe, point)
    assert config_lib.replace(recipe, **overrides) == \
        hypermodel.config_for(hp)
    assert overrides["loss.kl_weight"] == 11.4
    assert "train.weight_learning_rate" not in overrides  # the recipe's
    assert tuning.overrides_for(recipe, {}) == {}
    with pytest.raises(ConfigError, match="trades_beta is not in the "
                       "search space of anp_vs"):
        tuning.overrides_for(recipe, {"trades_beta": 3.0})


def test_a_method_without_gates_has_no_size_floors():
    floors = tuning.Floors(min_sparsity=60.0, min_flops_speedup=2.0)
    assert tuning.floors_for("anp_vs", floors) == floors
    assert tuning.floors_for("at", floors) == tuning.NO_FLOORS
    # Unpruned, it scores its robust accuracy undiscounted.
    assert tuning.objective_value(0.7, 0.0, 1.0, tuning.NO_FLOORS) == 0.7


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    config = run_config("lenet5_caffe_mnist_anp_vs", 1, **{
        "data.validation_examples": 64, "data.test_examples": 64,
        "data.monitor_examples": 0, "train.batch_size": 64,
        # The search, not the network, is under test: a tiny LeNet.
        "model.architecture": "lenet5_caffe_tiny",
    })
    project = tmp_path_factory.mktemp("search")
    report = run_search(
        config, project, tuner="random", max_trials=2,
        log=lambda *_: None,
    )
    return config, project, report


def test_tiny_search_writes_the_trial_table_and_the_best_model(tiny_search):
    _, project, report = tiny_search
    assert len(report["trials"]) == 2
    for row in report["trials"]:
        assert set(row["hyperparameters"]) >= {
            "beta", "lambda", "gate_lr", "weight_lr", "pgd_steps"}
        for name in ("clean_val_acc", "robust_val_acc"):
            assert 0.0 <= row[name] <= 1.0
        assert row["objective"] == pytest.approx(tuning.objective_value(
            row["robust_val_acc"], row["unit_sparsity"],
            row["flops_speedup"], tuning.Floors()))
    assert report["best_objective"] == max(
        row["objective"] for row in report["trials"])
    written = json.loads((project / "trials.json").read_text())
    assert written["trials"] == report["trials"]
    best = json.loads((project / "best_hyperparameters.json").read_text())
    assert best == report["trials"][0]["hyperparameters"]
    assert (project / "pareto.png").stat().st_size > 0
    assert (project / "best" / "results.json").exists()
    card = json.loads(
        (project / "best" / "export" / "model_card.json").read_text())
    assert card["method"] == "anp_vs"


def test_an_at_search_needs_no_base_and_ranks_by_robust_accuracy(tmp_path):
    config = run_config("lenet5_caffe_mnist_at", 1, **{
        "data.validation_examples": 64, "data.test_examples": 64,
        "data.monitor_examples": 0, "train.batch_size": 64,
        "model.architecture": "lenet5_caffe_tiny",
    })
    report = run_search(config, tmp_path, tuner="random", max_trials=2,
                        floors=tuning.Floors(min_sparsity=60.0),
                        log=lambda *_: None)
    assert report["method"] == "at"
    assert not (tmp_path / "base").exists()
    assert report["floors"] == {"min_sparsity": 0.0,
                                "min_flops_speedup": 1.0}
    for row in report["trials"]:
        assert row["objective"] == row["robust_val_acc"]
        assert row["unit_sparsity"] == 0.0
        assert set(row["hyperparameters"]) == {
            "weight_lr", "schedule", "pgd_steps", "pgd_travel"}
        assert row["train_seconds"] > 0
    assert report["search_seconds"] == pytest.approx(
        sum(row["train_seconds"] for row in report["trials"]))
    card = json.loads(
        (tmp_path / "best" / "export" / "model_card.json").read_text())
    assert card["method"] == "at"


def test_second_invocation_resumes_instead_of_starting_over(tiny_search):
    config, project, first = tiny_search
    first_ids = {row["trial_id"] for row in first["trials"]}
    trial_files = sorted((project / "search").glob("trial_*/trial.json"))
    written = [path.stat().st_mtime_ns for path in trial_files]
    again = run_search(config, project, tuner="random", max_trials=2,
                       retrain_best=False, log=lambda *_: None)
    assert {row["trial_id"] for row in again["trials"]} == first_ids
    assert again["trials"] == first["trials"]
    # Nothing was retrained: the finished trials' records are untouched.
    assert [path.stat().st_mtime_ns for path in trial_files] == written
    more = run_search(config, project, tuner="random", max_trials=3,
                      retrain_best=False, log=lambda *_: None)
    ids = [row["trial_id"] for row in more["trials"]]
    assert len(ids) == 3 and first_ids < set(ids)
    assert np.isfinite([row["objective"] for row in more["trials"]]).all()


@pytest.mark.parametrize("name", tuning.TUNERS)
def test_every_tuner_choice_can_be_made(name, tmp_path):
    hypermodel = tuning.RecipeHyperModel(
        get_experiment("lenet5_caffe_mnist_anp_vs"), None, tuning.Floors())
    hypermodel.load_data()  # keras-tuner builds one model to read the space
    tuner = tuning.make_tuner(name, hypermodel, tmp_path, max_trials=3,
                              epochs=4, seed=0)
    assert tuner.oracle.objective.name == tuning.OBJECTIVE
    assert tuner.oracle.objective.direction == "max"
    if name == "bayesian":  # not all random within a small budget
        assert tuner.oracle.num_initial_points == 2
