"""train.py / evaluate.py: user errors, an end-to-end run, resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import callbacks
from anpvs_tf import config as config_lib
from anpvs_tf.registry import get_experiment
from anpvs_tf.workdir import NETWORK_FILE
from anpvs_tf.workdir import load_trained_model
from anpvs_tf.training import train
from tests.conftest import ROOT

# A run small enough for a test: 128 images, 2-step PGD.
TINY_FLAGS = [
    "--train_examples=128", "--test_examples=64", "--monitor_examples=0",
    "--batch_size=32", "--pgd_steps=2", "--eval_pgd_steps=2",
    "--eval_batch_size=64", "--verbose=0",
]


def run_script(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )


def assert_one_line_error(result, *phrases):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0]


@pytest.mark.parametrize(
    "args, phrases",
    [
        (["--model=lenet9"], ["unknown model 'lenet9'",
                              "lenet5_caffe_mnist_anp_vs"]),
        (["--epsilon=-0.1"], ["epsilon must be in [0, 1]", "-0.1"]),
        (["--data_dir=/nonexistent/mnist"], ["not found",
                                             "/nonexistent/mnist",
                                             "--data_dir"]),
        (["--dataset=cifar10"], ["embedded data is MNIST only",
                                 "--data_source"]),
        # Through --override: a key without a flag of its own stays a key.
        (["--override=train.decay_fractions=0.5,2"],
         ["train.decay_fractions must lie in (0, 1)", "(0.5, 2.0)"]),
    ],
)
def test_train_rejects_bad_flags_in_one_line(args, phrases, tmp_path):
    result = run_script("train.py", f"--workdir={tmp_path / 'run'}", *args)
    assert_one_line_error(result, *phrases)
    # Nothing is left behind to conflict with the corrected command.
    assert not (tmp_path / "run").exists()


def test_print_config_shows_what_the_command_runs_and_creates_nothing(
        tmp_path):
    """--print_config: the recipe with the flags and overrides applied (a
    benchmark checks a cached run against it), and no workdir."""
    result = run_script(
        "train.py", "--model=lenet5_caffe_mnist_anp_vs_budget", "--seed=3",
        "--beta=0", "--override=train.decay_fractions=0.6,0.8",
        f"--workdir={tmp_path / 'run'}", "--print_config")
    assert result.returncode == 0, result.stderr
    printed = config_lib.from_dict(json.loads(result.stdout))
    assert printed == config_lib.replace(
        get_experiment("lenet5_caffe_mnist_anp_vs_budget"),
        **{"train.seed": 3, "loss.kl_weight": 0.0,
           "train.decay_fractions": (0.6, 0.8)})
    assert not (tmp_path / "run").exists()


def test_evaluate_rejects_a_missing_workdir(tmp_path):
    result = run_script("evaluate.py", f"--workdir={tmp_path / 'nothing'}")
    assert_one_line_error(result, "no trained run", "--workdir")


def test_train_then_evaluate_end_to_end(tmp_path):
    """A gated method trains its base first (under MirroredStrategy, which
    must not nest a second strategy), resumes instead of retraining,
    refuses a changed config, and evaluate.py reads the workdir back."""
    workdir = tmp_path / "run"
    common = [f"--workdir={workdir}", "--epochs=1", "--base_epochs=1",
              "--strategy=mirrored", *TINY_FLAGS]
    first = run_script("train.py", *common)
    assert first.returncode == 0, first.stderr
    results = json.loads((workdir / "results.json").read_text())
    assert (workdir / "base" / "results.json").exists()
    assert results["method"] == "anp_vs"
    assert results["test_examples"] == 64
    assert results["gated_units"] == 1370
    assert 0.0 <= results["pgd_acc"] <= 1.0
    assert (workdir / "logs").is_dir() and (workdir / "checkpoints").is_dir()

    again = run_script("train.py", *common)
    assert again.returncode == 0
    assert "already trained" in again.stdout

    changed = run_script("train.py", *common[:-1], "--beta=1.0")
    assert_one_line_error(changed, "different config", "--overwrite")

    evaluated = run_script("evaluate.py", f"--workdir={workdir}",
                           "--pgd_steps=0", "--epsilon=0")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((workdir / "evaluation.json").read_text())
    # eps = 0: the "attack" is the identity, so accuracy is unchanged.
    assert report["pgd_acc"] == report["clean_acc"] == results["clean_acc"]


def tiny_config(epochs):
    return config_lib.replace(
        get_experiment("lenet5_caffe_mnist_at"),
        **{"train.epochs": epochs, "train.batch_size": 32,
           "data.train_examples": 96, "data.test_examples": 32,
           "data.monitor_examples": 0, "attack.num_steps": 2,
           "eval.attack.num_steps": 1,
           "model.architecture": "lenet5_caffe_tiny"},
    )


def test_interrupted_training_resumes_to_the_same_weights(
    tmp_path, monkeypatch
):
    """Killed after epoch 1 of 3 and restarted, a run ends with exactly the
    weights of an uninterrupted run: data order, RNG states and both
    optimizers come back from the checkpoint."""
    train(tiny_config(3), tmp_path / "straight", verbose=0)

    save = callbacks.EpochCheckpoint.on_epoch_end

    def save_then_die(self, epoch, logs=None):
        save(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.EpochCheckpoint, "on_epoch_end",
                        save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(3), tmp_path / "resumed", verbose=0)
    assert not (tmp_path / "resumed" / NETWORK_FILE).exists()
    first_epoch_seconds = tf.train.load_variable(
        str(tmp_path / "resumed" / "checkpoints"),
        "seconds/.ATTRIBUTES/VARIABLE_VALUE",
    )
    assert first_epoch_seconds > 0
    monkeypatch.setattr(callbacks.EpochCheckpoint, "on_epoch_end", save)
    logs = []
    results = train(tiny_config(3), tmp_path / "resumed", verbose=0,
                    log=logs.append)
    assert any("epoch 1 of 3" in line for line in logs)
    # The reported training time covers the epoch before the interruption.
    assert results["train_seconds"] > first_epoch_seconds

    _, straight = load_trained_model(tmp_path / "straight")
    _, resumed = load_trained_model(tmp_path / "resumed")
    for a, b in zip(straight.network.weights, resumed.network.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
