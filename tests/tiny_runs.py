"""A tiny training run, as train.py flags and as the config they give."""

import numpy as np

from anpvs_tf import config as config_lib
from anpvs_tf.cli import CONFIG_FLAGS
from anpvs_tf.registry import get_experiment
from anpvs_tf.workdir import load_trained_model

# One tiny run, as train.py flags and as the config they resolve to.
RUN_FLAGS = {
    "train_examples": 128, "test_examples": 32, "monitor_examples": 32,
    "batch_size": 32, "pgd_steps": 2, "eval_pgd_steps": 1,
    "eval_batch_size": 32, "base_epochs": 1,
}
def run_flags(model, epochs):
    flags = {**RUN_FLAGS, "epochs": epochs}
    return [f"--model={model}", "--verbose=0",
            *(f"--{k}={v}" for k, v in flags.items())]


def run_config(model, epochs, **overrides):
    flags = {**RUN_FLAGS, "epochs": epochs}
    keys = {CONFIG_FLAGS[k]: v for k, v in flags.items()}
    return config_lib.replace(get_experiment(model), **{**keys, **overrides})


def network_weights(workdir):
    _, model = load_trained_model(workdir)
    return [w.numpy() for w in model.network.weights]


def assert_same_weights(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol)
