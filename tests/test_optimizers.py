"""The learning-rate schedules of the two optimizers."""

import numpy as np
import pytest

from anpvs_tf import config as config_lib
from anpvs_tf.errors import ConfigError
from anpvs_tf.optimizers import make_optimizers
from anpvs_tf.optimizers import step_decay
from anpvs_tf.registry import get_experiment


def rates(schedule, steps):
    if isinstance(schedule, float):
        return np.full(len(steps), schedule)
    return np.array([float(schedule(step)) for step in steps])


def optimizer_rates(optimizer, steps):
    """The rate the optimizer applies at each step (it reads its own
    iteration count)."""
    got = []
    for step in steps:
        optimizer.iterations.assign(step)
        got.append(float(optimizer.learning_rate))
    return np.array(got)


def test_step_decay_divides_by_ten_at_each_fraction():
    # The optimizer's first step reads step 0: 50 steps at the full rate.
    got = rates(step_decay(1.0, 100, (0.5, 0.7)), [0, 50, 51, 70, 71, 99])
    np.testing.assert_allclose(got, [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    assert step_decay(1.0, 100, ()) == 1.0


def test_later_rate_replaces_the_rate_from_its_step_and_still_decays():
    schedule = step_decay(1.0, 100, (0.5, 0.7), later=(30, 0.4))
    got = rates(schedule, [0, 29, 30, 50, 51, 70, 71, 99])
    np.testing.assert_allclose(
        got, [1, 1, 0.4, 0.4, 0.04, 0.04, 0.004, 0.004], rtol=1e-6)
    # After a decay, the later rate starts decayed.
    got = rates(step_decay(1.0, 100, (0.5,), later=(60, 0.4)), [50, 51, 60])
    np.testing.assert_allclose(got, [1, 0.1, 0.04], rtol=1e-6)


def recipe(**overrides):
    return config_lib.replace(get_experiment("lenet5_caffe_mnist_anp_vs"),
                              **overrides)


def test_fine_tune_rate_starts_when_the_gates_freeze():
    config = recipe(**{"train.epochs": 10, "train.gate_epochs": 4,
                       "train.weight_learning_rate": 0.01,
                       "train.fine_tune_learning_rate": 0.002,
                       "train.decay_fractions": (0.8,)})
    weights, gates = make_optimizers(config.train, 10 * 7)
    # 7 steps an epoch: gates freeze at step 28, the decay is after 56.
    np.testing.assert_allclose(
        optimizer_rates(weights, [27, 28, 56, 57]),
        [0.01, 0.002, 0.002, 0.0002], rtol=1e-6)
    # The gates keep their own rate.
    np.testing.assert_allclose(
        optimizer_rates(gates, [27, 28, 57]),
        [config.train.gate_learning_rate] * 2
        + [config.train.gate_learning_rate * 0.1], rtol=1e-6)


def test_fine_tune_rate_needs_gate_epochs():
    with pytest.raises(ConfigError, match="needs `train.gate_epochs`"):
        recipe(**{"train.fine_tune_learning_rate": 0.002})
