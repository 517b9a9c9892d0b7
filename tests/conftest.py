"""Shared test setup: TF backend, two logical CPUs, seeds, tiny fixtures."""

import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The kernels the scripts run (anpvs_tf.cli.start turns oneDNN on).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anpvs_tf import cli  # noqa: E402

# TensorFlow imported as every script imports it: without its C++
# start-up banners in the test output.
cli.start()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, before TensorFlow initialises its runtime, so
# MirroredStrategy(["CPU:0", "CPU:1"]) can be tested on one CPU.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import models  # noqa: E402,F401  (registers the zoo)


def pytest_addoption(parser):
    parser.addoption("--run_slow", action="store_true",
                     help="also run tests marked slow (real data, epochs)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, needs --run_slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run_slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run_slow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


@pytest.fixture
def mnist_test_batch():
    """64 real MNIST test images and labels (embedded data)."""
    from anpvs_tf import data

    images, labels = data.load_arrays("mnist", "test", "embedded")
    return images[:64], labels[:64]


@pytest.fixture
def random_batch():
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(8, 28, 28, 1)).astype("float32")
    labels = rng.randint(0, 10, size=(8,)).astype("int64")
    return images, labels


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy for the whole session: a second instance in the
    same process makes TensorFlow's CPU collectives fail."""
    return tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])


def _train_plain_lenet(seed, steps=150, batch_size=64):
    """LeNet-5-Caffe trained for a few seconds with Adam on the 5k images."""
    from anpvs_tf import data
    from anpvs_tf.registry import build_network

    keras.utils.set_random_seed(seed)
    images, labels = data.load_arrays("mnist", "train", "embedded")
    # The embedded training set is sorted by class: shuffle it.
    order = np.random.RandomState(seed).permutation(len(images))
    images, labels = images[order], labels[order]
    network = build_network("lenet5_caffe", gated=False, seed=seed)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = network(x, training=True)["logits"]
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=True
                )
            )
        variables = network.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)

    for step in range(steps):
        start = (step * batch_size) % (len(images) - batch_size)
        train_step(images[start : start + batch_size],
                   labels[start : start + batch_size])
    return network


@pytest.fixture(scope="session")
def briefly_trained_lenets():
    """Two plain LeNet-5-Caffe networks trained separately (seeds 0, 1)
    for a few seconds each: a target and a black-box source."""
    return _train_plain_lenet(0), _train_plain_lenet(1)


@pytest.fixture
def mnist_eval_batch():
    """The first 200 MNIST test images and labels (embedded data)."""
    from anpvs_tf import data

    images, labels = data.load_arrays("mnist", "test", "embedded")
    return images[:200], labels[:200]


@pytest.fixture
def pruned_start(monkeypatch):
    """Gated runs start with half of every gate's units pruned, so the
    compact fine-tune really is smaller (a tiny run's 4 gate steps prune
    nothing)."""
    from anpvs_tf import training
    from anpvs_tf.layers import gates_of
    from tests.test_pruning import PRUNED_RAW

    real = training.copy_base_weights

    def copy_then_prune(config, base_dir, network, log):
        real(config, base_dir, network, log)
        for number, gate in enumerate(gates_of(network)):
            raw = np.full(gate.units, 2.0, np.float32)
            raw[np.random.RandomState(number).permutation(gate.units)
                < gate.units // 2] = PRUNED_RAW
            gate.concentration1_raw.assign(raw)

    monkeypatch.setattr(training, "copy_base_weights", copy_then_prune)
