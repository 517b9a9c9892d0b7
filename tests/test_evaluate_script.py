"""evaluate.py: suites, reports, black-box source, and one-line errors."""

import json
import re

import pytest

from anpvs_tf import config as config_lib
from anpvs_tf.registry import get_experiment
from anpvs_tf.training import train
from tests.test_scripts import assert_one_line_error
from tests.test_scripts import run_script

SMALL_FLAGS = ["--test_examples=40", "--sweep_examples=20",
               "--pgd_steps=3", "--apgd_steps=3", "--sweep_steps=1,3",
               "--sweep_eps=0.1", "--batch_size=20"]


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """Two separately trained tiny standard models: target and source."""
    root = tmp_path_factory.mktemp("evaluate")
    dirs = {}
    for name, seed in (("target", 0), ("source", 1)):
        config = config_lib.replace(
            get_experiment("lenet5_caffe_mnist_standard"),
            **{"train.epochs": 1, "train.batch_size": 32, "train.seed": seed,
               "data.train_examples": 256, "data.test_examples": 32,
               "data.monitor_examples": 0, "eval.attack.num_steps": 1})
        train(config, root / name, verbose=0, log=lambda *_: None)
        dirs[name] = root / name
    return dirs


def test_paper_suite_with_blackbox_source_writes_the_report(workdirs,
                                                            tmp_path):
    output = tmp_path / "paper"
    args = [f"--workdir={workdirs['target']}", "--suite=paper",
            f"--source={workdirs['source']}", f"--output={output}",
            *SMALL_FLAGS]
    result = run_script("evaluate.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["suite"] == "paper" and report["test_examples"] == 40
    assert set(report["attacks"]) == {"pgd3"}
    for key in ("clean_acc", "pgd_acc", "blackbox_acc",
                "vulnerability_white", "vulnerability_black",
                "worst_case_acc"):
        assert 0.0 <= report[key] <= (1.0 if "acc" in key else 10.0)
    assert report["blackbox"]["source"] == str(workdirs["source"])
    assert report["complexity"]["params"] == 431080
    # The paper suite runs the cheap checks only.
    assert set(report["sanity_checks"]) == {
        "eps_zero_equals_clean", "blackbox_not_below_whitebox"}
    assert "| pgd3 |" in output.with_suffix(".md").read_text()
    assert (tmp_path / "paper_vulnerability.png").exists()

    again = run_script("evaluate.py", *args)
    assert_one_line_error(again, "already exists", "--overwrite")
    replaced = run_script("evaluate.py", *args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-3000:]


def test_train_results_equal_the_paper_suite_on_the_same_attack(
    workdirs, tmp_path
):
    """train.py's results.json and evaluate.py come from one engine: the
    same images, attack and seed give the same numbers."""
    results = json.loads((workdirs["target"] / "results.json").read_text())
    attack = results["attack"]
    output = tmp_path / "same"
    result = run_script(
        "evaluate.py", f"--workdir={workdirs['target']}", "--suite=paper",
        f"--output={output}", "--test_examples=32", "--batch_size=500",
        f"--epsilon={attack['epsilon']}",
        f"--pgd_step_size={attack['step_size']}",
        f"--pgd_steps={attack['num_steps']}", "--seed=0")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["test_examples"] == results["test_examples"] == 32
    assert report["clean_acc"] == results["clean_acc"]
    assert report["pgd_acc"] == results["pgd_acc"]
    assert report["vulnerability_white"] == results["vulnerability"]


def test_full_suite_adds_apgd_sweeps_and_checks(workdirs, tmp_path):
    output = tmp_path / "full"
    result = run_script(
        "evaluate.py", f"--workdir={workdirs['target']}",
        f"--output={output}", "--norm=l2", "--epsilon=1.5", "--restarts=2",
        *SMALL_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.with_suffix(".json").read_text())
    assert set(report["attacks"]) == {
        "fgsm_l2", "pgd3_l2", "apgd_ce_l2", "apgd_dlr_l2"}
    assert report["attacks"]["apgd_ce_l2"]["settings"]["restarts"] == 2
    # L2 sweep: 0, the given radius and sqrt(784) = 28, which covers
    # the whole image space.
    assert report["sweeps"]["epsilon"]["values"] == [0.0, 0.1, 28.0]
    assert set(report["sanity_checks"]) >= {
        "non_increasing_in_eps", "large_eps_at_chance",
        "apgd_not_weaker_than_pgd"}
    assert (tmp_path / "full_accuracy_vs_eps.png").exists()
    assert "sanity check" in result.stdout


@pytest.mark.parametrize(
    "args, phrases",
    [
        (["--epsilon=2"], ["--epsilon must be in [0, 1]", "2.0"]),
        (["--attacks=pgd,cw"], ["unknown attack", "apgd_dlr"]),
        (["--source=no_such_model"], ["neither a workdir nor a zoo entry"]),
        (["--restarts=0"], ["--restarts must be >= 1"]),
        (["--sweep_steps=1,many"], ["--sweep_steps takes comma-separated"]),
    ],
)
def test_bad_flags_give_one_line_errors(workdirs, tmp_path, args, phrases):
    result = run_script("evaluate.py", f"--workdir={workdirs['target']}",
                        f"--output={tmp_path / 'e'}", *args)
    assert_one_line_error(result, *phrases)
    assert not (tmp_path / "e.json").exists()


def test_source_must_not_be_the_target(workdirs, tmp_path):
    result = run_script("evaluate.py", f"--workdir={workdirs['target']}",
                        f"--source={workdirs['target']}",
                        f"--output={tmp_path / 'e'}")
    assert_one_line_error(result, "separately trained")


def test_help_explains_every_flag():
    # absl prints the flags to stdout and exits 1 after --help.
    result = run_script("evaluate.py", "--help")
    assert "Traceback" not in result.stderr
    for flag in ("suite", "attacks", "norm", "epsilon", "pgd_steps",
                 "apgd_steps", "restarts", "sweep_eps", "sweep_steps",
                 "test_examples", "batch_size", "source", "gates",
                 "eot_samples", "output", "overwrite", "sanity_checks"):
        # Boolean flags read --[no]flag; each one is followed by its help.
        assert re.search(rf"--(\[no\])?{flag}: \S", result.stdout), flag


def test_zoo_entry_source_is_trained_once_with_another_seed(workdirs):
    from anpvs_tf.evaluation.blackbox import load_source
    from anpvs_tf.workdir import read_config

    target_config = read_config(workdirs["target"])
    logs = []
    name, config, _ = load_source(
        "lenet5_caffe_mnist_standard", workdirs["target"], target_config,
        epochs=1, log=logs.append)
    assert config.train.seed == target_config.train.seed + 1
    assert config.data.train_examples == 256
    assert "seed 1" in name
    assert (workdirs["target"] / "blackbox_sources"
            / "lenet5_caffe_mnist_standard_1ep" / "network.weights.h5"
            ).exists()
    load_source("lenet5_caffe_mnist_standard", workdirs["target"],
                target_config, epochs=1, log=logs.append)
    assert any("already trained" in line for line in logs)
