"""Shared test setup: TF backend, two logical CPUs, seeds, tiny fixtures."""

import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
