"""Freezing the gates: the fine-tuning phase of --gate_epochs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf.callbacks import FreezeAtSparsity
from anpvs_tf.compact_training import fit_in_phases
from anpvs_tf.errors import ConfigError
from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.training import train
from tests.test_fault_tolerance import interrupt_after_epoch
from tests.test_model import make_model
from tests.test_pruning import PRUNED_RAW
from tests.tiny_runs import assert_same_weights
from tests.tiny_runs import network_weights
from tests.tiny_runs import run_config


def test_frozen_gate_trains_with_its_inference_mask():
    """Training-mode output of a frozen gate: no noise, E[pi] scaling and
    exact zeros on pruned units, as at inference."""
    gate = BetaBernoulliGate(concentration1_init=2.0, seed=0)
    features = tf.random.stateless_normal([8, 5, 5, 6], seed=[1, 2])
    gate.build(features.shape)
    # Units 0 and 3 pruned (E[pi] far below the threshold).
    raw = gate.concentration1_raw.numpy()
    raw[[0, 3]] = -10.0
    gate.concentration1_raw.assign(raw)
    gate.concentration0_raw.assign(np.full(6, 50.0, np.float32))
    assert not gate.active().numpy()[[0, 3]].any()
    sampled = gate(features, training=True)
    assert not np.allclose(sampled, gate(features, training=False))

    gate.frozen = True
    frozen = gate(features, training=True).numpy()
    np.testing.assert_array_equal(frozen, gate(features, training=False))
    np.testing.assert_array_equal(frozen, gate(features, training=True))
    assert (frozen[..., [0, 3]] == 0).all()


def _gate_values(model):
    return [v.numpy().copy() for v in model.gate_variables]


class _RecordGates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.gates, self.weights = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.gates.append(_gate_values(self.model))
        self.weights.append([v.numpy().copy()
                             for v in self.model.weight_variables])


def _changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(a, b))


def _masked_phases(model, data, initial_epoch=0, callbacks=(), **settings):
    """A 3-epoch masked run whose gates freeze after epoch 1, trained in
    fit_in_phases' order (as train.py's and the budget search's)."""
    config = run_config("lenet5_caffe_mnist_anp_vs", 3, **{
        "train.gate_epochs": 1, "train.compact_fine_tune": False,
        **settings})

    def fit(trainee, first, last, *phase_callbacks):
        if first < last:
            trainee.fit(data, initial_epoch=first, epochs=last,
                        callbacks=[*callbacks, *phase_callbacks], verbose=0)

    fit_in_phases(model, config, None, 32, fit, initial_epoch=initial_epoch)


def test_gates_stop_learning_at_gate_epochs_while_weights_go_on(
    mnist_test_batch,
):
    """Compiled, as real runs: the freeze retraces the train function."""
    images, labels = mnist_test_batch
    data = tf.data.Dataset.from_tensor_slices(
        (images[:32], labels[:32])).batch(16)
    model = make_model("anp_vs", run_eagerly=False)
    start = _gate_values(model)
    record = _RecordGates()
    _masked_phases(model, data, callbacks=[record])

    assert model.gates_frozen
    assert _changed(record.gates[0], start)  # epoch 0 learned the gates
    for later in record.gates[1:]:
        assert not _changed(later, record.gates[0])
    assert _changed(record.weights[2], record.weights[1])
    assert model.gate_optimizer.iterations.numpy() == 2
    assert model.optimizer.iterations.numpy() == 6


def test_a_run_resumed_past_gate_epochs_starts_frozen(mnist_test_batch):
    images, labels = mnist_test_batch
    data = tf.data.Dataset.from_tensor_slices(
        (images[:16], labels[:16])).batch(16)
    model = make_model("anp_vs", run_eagerly=False)
    start = _gate_values(model)
    _masked_phases(model, data, initial_epoch=2)
    assert model.gates_frozen
    assert not _changed(_gate_values(model), start)
    assert model.gate_optimizer.iterations.numpy() == 0
    assert model.optimizer.iterations.numpy() == 1


@pytest.mark.parametrize("compact", [True, False])
def test_train_config_gate_epochs_reaches_the_run(tmp_path, compact):
    config = run_config("lenet5_caffe_mnist_anp_vs", 2,
                        **{"train.gate_epochs": 1,
                           "train.compact_fine_tune": compact,
                           "model.architecture": "lenet5_caffe_tiny"})
    train(config, tmp_path, verbose=0)
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    # A compact fine-tune trains the weights with the compact model's
    # optimizer; the gated model's stays as the gates froze.
    weights = "compact_optimizer" if compact else "weight_optimizer"
    iterations = {
        name: reader.get_tensor(f"{name}/_iterations/.ATTRIBUTES/"
                                "VARIABLE_VALUE")
        for name in ("gate_optimizer", weights)
    }
    steps_per_epoch = 128 // 32
    assert iterations == {"gate_optimizer": steps_per_epoch,
                          weights: 2 * steps_per_epoch}


# === train.freeze_at_sparsity ===

class _PruneAtStep(keras.callbacks.Callback):
    """Prunes the first half of the first gate's units after step `step`
    (before the callbacks after it see that step)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() == self.step:
            gate = self.model.gates[0]
            raw = gate.concentration1_raw.numpy()
            raw[:gate.units // 2] = PRUNED_RAW
            gate.concentration1_raw.assign(raw)


def test_gates_freeze_after_the_step_that_reaches_the_target(
        mnist_test_batch):
    images, labels = mnist_test_batch
    data = tf.data.Dataset.from_tensor_slices(
        (images[:64], labels[:64])).batch(16)
    model = make_model("anp_vs", run_eagerly=False)
    total = sum(gate.units for gate in model.gates)
    # Met by the half of the first gate, not by one unit fewer.
    half_first = 100.0 * (model.gates[0].units // 2 - 0.5) / total
    frozen_at = tf.Variable(0, dtype=tf.int64)
    logs = []
    model.fit(data, epochs=2, verbose=0, callbacks=[
        _PruneAtStep(2),
        FreezeAtSparsity(half_first, frozen_at, log=logs.append)])

    assert model.gates_frozen
    assert frozen_at.numpy() == 2
    # The gates learned in steps 1 and 2 only; the weights in all 8.
    assert model.gate_optimizer.iterations.numpy() == 2
    assert model.optimizer.iterations.numpy() == 8
    assert model.unit_sparsity().numpy() >= half_first
    assert len(logs) == 1 and "step 2" in logs[0]


@pytest.mark.parametrize("overrides, problem", [
    ({"train.freeze_at_sparsity": 100.0}, "below 100"),
    ({"train.freeze_at_sparsity": 60.0, "train.gate_epochs": None},
     "needs `train.gate_epochs`"),
])
def test_a_sparsity_target_the_run_cannot_use_is_refused(overrides,
                                                         problem):
    with pytest.raises(ConfigError, match=problem):
        _freezing_run(**overrides)


def test_every_caller_of_fit_in_phases_gets_the_sparsity_freeze(
        mnist_test_batch):
    """The budget search trains through fit_in_phases, not train.py: a
    target the starting gates already meet freezes them after step 1."""
    images, labels = mnist_test_batch
    data = tf.data.Dataset.from_tensor_slices(
        (images[:32], labels[:32])).batch(16)
    model = make_model("anp_vs", run_eagerly=False)
    gate = model.gates[0]
    raw = gate.concentration1_raw.numpy()
    raw[:gate.units // 2] = PRUNED_RAW
    gate.concentration1_raw.assign(raw)
    _masked_phases(model, data, **{"train.freeze_at_sparsity": 0.5})
    assert model.gate_optimizer.iterations.numpy() == 1
    assert model.optimizer.iterations.numpy() == 6


def _freezing_run(**overrides):
    return run_config("lenet5_caffe_mnist_anp_vs", 3, **{
        "model.architecture": "lenet5_caffe_tiny", "train.gate_epochs": 2,
        "train.freeze_at_sparsity": 40.0, **overrides})


def _gate_steps(workdir):
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints"))
    return reader.get_tensor(
        "gate_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")


@pytest.mark.parametrize("target, frozen_at, gate_steps",
                         [(40.0, 1, 1), (90.0, 0, 8)])
def test_train_freezes_at_the_target_or_after_gate_epochs(
        tmp_path, pruned_start, target, frozen_at, gate_steps):
    """The tiny run starts half pruned (pruned_start) and its few steps
    prune nothing more: a 40 % target is met at once, 90 % never."""
    results = train(_freezing_run(**{"train.freeze_at_sparsity": target}),
                    tmp_path, verbose=0)
    assert results["gates_frozen_at_step"] == frozen_at
    assert _gate_steps(tmp_path) == gate_steps  # 4 steps an epoch


def test_a_run_frozen_at_the_target_resumes_frozen(
        tmp_path, monkeypatch, pruned_start):
    """Killed after epoch 1 (its gates frozen at step 1), the same command
    ends with the uninterrupted run's network: the resumed epoch 2 trains
    the weights only, as the unbroken run's did."""
    expected = tmp_path / "uninterrupted"
    train(_freezing_run(), expected, verbose=0)
    run = _freezing_run(**{
        "train.base_workdir": str(expected / "base")})
    workdir = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            train(run, workdir, verbose=0)
    results = train(run, workdir, verbose=0)
    assert results["gates_frozen_at_step"] == 1
    assert _gate_steps(workdir) == 1
    assert_same_weights(network_weights(expected), network_weights(workdir))
