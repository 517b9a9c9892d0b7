"""The compact fine-tune takes the masked one's steps and resumes exactly."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from anpvs_tf import compact_training
from anpvs_tf.checkpoints import make_checkpoint
from anpvs_tf.config import AttackConfig
from anpvs_tf.layers import GatePlacer
from anpvs_tf.layers import gates_of
from anpvs_tf.layers import network_outputs
from anpvs_tf.model import ANPVSModel
from anpvs_tf.registry import build_network
from anpvs_tf.training import train
from anpvs_tf.workdir import load_trained_model
from tests.processes import train_processes
from tests.processes import wait_all
from tests.processes import wait_for_checkpoint
from tests.test_fault_tolerance import interrupt_after_epoch
from tests.test_pruning import amplify_logits
from tests.test_pruning import bn_network
from tests.test_pruning import prune_at_random
from tests.tiny_runs import assert_same_weights
from tests.tiny_runs import network_weights
from tests.tiny_runs import run_config
from tests.tiny_runs import run_flags

ATTACK = AttackConfig(epsilon=0.3, step_size=0.1, num_steps=3)
METRICS = ("ce_loss", "adv_ce_loss", "vs_loss", "kl_loss", "clean_accuracy",
           "adv_accuracy", "sparsity", "active_units")


def conv_bn_dense_network(seed=0):
    """conv + BN + dense with each gate after its batch-norm and ReLU: the
    pruned units are exact zeros wherever a weight sees them.

    No bias before a batch-norm: its gradient is float noise that Adam
    turns into full-size steps, which no two float orders share.
    """
    gate = GatePlacer(True, 1.0, seed=seed)
    inputs = keras.Input(shape=(28, 28, 1), name="images")
    x = layers.Conv2D(8, 3, padding="same", use_bias=False,
                      name="conv_a")(inputs)
    x = layers.BatchNormalization(name="bn_a")(x)
    x = layers.ReLU(name="relu_a")(x)
    a = x = gate(x, "conv_a_gate")
    x = layers.MaxPooling2D(2, name="pool_a")(x)
    x = layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False,
                      name="conv_b")(x)
    x = layers.BatchNormalization(name="bn_b")(x)
    x = layers.ReLU(name="relu_b")(x)
    b = x = gate(x, "conv_b_gate")
    x = layers.Flatten(name="flatten")(x)
    x = gate(x, "flatten_gate")
    x = layers.Dense(16, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="bn_fc")(x)
    x = layers.ReLU(name="relu_fc")(x)
    hidden = x = gate(x, "fc_gate")
    logits = layers.Dense(10, name="classifier")(x)
    return keras.Model(
        inputs, network_outputs(logits, {"a": a, "b": b, "hidden": hidden}),
        name="conv_bn_dense_gated")


NETWORKS = {
    "lenet": lambda: build_network("lenet5_caffe_tiny", gated=True, seed=0),
    "conv_bn_dense": conv_bn_dense_network,
}


def compiled(network):
    model = ANPVSModel(network, method="anp_vs", attack=ATTACK, seed=0,
                       kl_weight=4.0, vs_weight=0.1)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2),
                  jit_compile=False)
    return model


def batches(mnist_test_batch):
    images, labels = mnist_test_batch
    return tf.data.Dataset.from_tensor_slices(
        (images, labels.astype("int64"))).batch(16)


def inference_logits(network, images):
    return keras.ops.convert_to_numpy(
        network(images, training=False)["logits"])


@pytest.mark.parametrize("name", NETWORKS)
def test_compact_fine_tune_takes_the_masked_steps(name, mnist_test_batch,
                                                  tmp_path):
    """From one frozen state (after gated steps, so Adam's moments are not
    zero), 8 masked and 8 compact fine-tune steps end at the same logits
    and log the same metrics, with about half the units gone."""
    images, _ = mnist_test_batch
    keras.utils.set_random_seed(0)
    model = compiled(NETWORKS[name]())
    prune_at_random(model.network, np.random.RandomState(1), 0.5,
                    exact=True)
    amplify_logits(model.network, images, spread=3.0)
    model.fit(batches(mnist_test_batch), epochs=1, verbose=0)
    model.freeze_gates()
    frozen = make_checkpoint(model)
    path = frozen.write(str(tmp_path / "frozen"))

    masked = model.fit(batches(mnist_test_batch), epochs=2, verbose=0)
    masked_logits = inference_logits(model.network, images)

    frozen.restore(path)
    narrowed = compact_training.narrow(model.network)
    compact = model.on_network(narrowed.network)
    compact.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2),
                    jit_compile=False)
    compact_training.carry_optimizer_state(model.optimizer,
                                           compact.optimizer, narrowed)
    shrunk = compact.fit(batches(mnist_test_batch), epochs=2, verbose=0)
    compact_training.widen(narrowed)

    np.testing.assert_allclose(
        inference_logits(model.network, images), masked_logits,
        atol=1e-4 * np.ptp(masked_logits), rtol=0)
    # Not a vacuous match: the logits vary across images.
    assert np.ptp(masked_logits, axis=0).max() > 0.1
    for metric in METRICS:
        np.testing.assert_allclose(shrunk.history[metric],
                                   masked.history[metric], rtol=1e-4,
                                   atol=1e-6, err_msg=metric)
    kept = sum(int(np.prod(v.shape)) for v in compact.weight_variables)
    full = sum(int(np.prod(v.shape)) for v in model.weight_variables)
    assert kept < 0.6 * full
    # The fine-tune moved the weights: the match is not of two idle runs.
    frozen.restore(path)
    assert not np.allclose(inference_logits(model.network, images),
                           masked_logits, atol=1e-3)


def test_batch_norm_after_pruned_units_keeps_the_masked_fine_tune():
    """A pruned channel before a batch-norm leaves it as the BN's offset,
    which keeps learning in the masked network: not the same steps."""
    network = bn_network()
    prune_at_random(network, np.random.RandomState(0), 0.5, exact=True)
    with pytest.raises(ValueError, match="batch-norm 'bn_a' follows pruned"):
        compact_training.narrow(network)


def test_nothing_pruned_narrows_to_the_same_network(mnist_test_batch):
    images, _ = mnist_test_batch
    network = build_network("lenet5_caffe_tiny", gated=True, seed=0)
    amplify_logits(network, images)
    narrowed = compact_training.narrow(network)
    np.testing.assert_allclose(
        inference_logits(narrowed.network, images),
        inference_logits(network, images), atol=1e-5)
    gate_weights = {id(v) for gate in gates_of(network) for v in gate.weights}
    assert [v.shape for v in narrowed.network.trainable_weights] == [
        v.shape for v in network.trainable_weights
        if id(v) not in gate_weights]


# === Through train(): resume across the switch ===

TINY_GATED = {"model.architecture": "lenet5_caffe_tiny",
              "train.gate_epochs": 1}


def tiny_gated_run(**overrides):
    return run_config("lenet5_caffe_mnist_anp_vs", 3,
                      **{**TINY_GATED, **overrides})


@pytest.fixture
def uninterrupted_compact(tmp_path, pruned_start):
    logs = []
    results = train(tiny_gated_run(), tmp_path / "uninterrupted", verbose=0,
                    log=logs.append)
    assert any("trains the compact network" in line for line in logs)
    assert 40 < results["unit_sparsity"] < 60
    return network_weights(tmp_path / "uninterrupted")


@pytest.mark.parametrize("epoch", [1, 2])
def test_interrupted_at_or_after_the_switch_resumes_exactly(
        tmp_path, monkeypatch, uninterrupted_compact, epoch):
    """Stopped after epoch 1 (the last gated one) or 2 (compact), the same
    command ends with the uninterrupted run's network."""
    workdir = tmp_path / "interrupted"
    # The uninterrupted run's base: only the gated run is interrupted.
    run = tiny_gated_run(**{
        "train.base_workdir": str(tmp_path / "uninterrupted" / "base")})
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, epoch)
        with pytest.raises(KeyboardInterrupt):
            train(run, workdir, verbose=0)
    logs = []
    train(run, workdir, verbose=0, log=logs.append)
    assert any(f"(epoch {epoch} of 3)" in line for line in logs)
    assert_same_weights(uninterrupted_compact, network_weights(workdir))


def test_compact_phase_checkpoints_hold_the_compact_network(
        tmp_path, uninterrupted_compact):
    reader = tf.train.load_checkpoint(
        str(tmp_path / "uninterrupted" / "checkpoints"))
    shapes = reader.get_variable_to_shape_map()
    compact = sorted(shape for name, shape in shapes.items()
                     if name.startswith("compact_variables/"))
    full = sorted(shape for name, shape in shapes.items()
                  if name.startswith("model_variables/"))
    # conv1's kernel: half its 4 filters, all of its 1 input channel.
    assert [5, 5, 1, 2] in compact and [5, 5, 1, 4] in full


def test_masked_and_compact_fine_tunes_end_at_the_same_network(
        tmp_path, pruned_start, uninterrupted_compact):
    train(tiny_gated_run(**{"train.compact_fine_tune": False}),
          tmp_path / "masked", verbose=0)
    _, masked = load_trained_model(tmp_path / "masked")
    _, compact = load_trained_model(tmp_path / "uninterrupted")
    images = np.random.RandomState(0).rand(32, 28, 28, 1).astype("float32")
    expected = inference_logits(masked.network, images)
    np.testing.assert_allclose(inference_logits(compact.network, images),
                               expected, atol=1e-4, rtol=1e-4)


def test_killed_in_the_compact_phase_resumes_to_the_same_weights(tmp_path):
    """train.py SIGKILLed once a compact-phase checkpoint exists; the same
    command resumes it (nothing pruned: the tiny run's gates stay open,
    so this checks the restore path, the test above the shrinking)."""
    flags = [*run_flags("lenet5_caffe_mnist_anp_vs", 4),
             "--override=model.architecture=lenet5_caffe_tiny",
             "--gate_epochs=1"]
    expected_dir = tmp_path / "expected"
    train(tiny_gated_run(**{"train.epochs": 4}), expected_dir, verbose=0)
    workdir = tmp_path / "run"
    command = [f"--workdir={workdir}", *flags]
    with train_processes([(command, tmp_path / "first.log", None)],
                         timeout=240) as (processes, deadline):
        wait_for_checkpoint(workdir, processes, deadline, min_epoch=2)
        processes[0].kill()
    with train_processes([(command, tmp_path / "again.log", None)],
                         timeout=240) as (processes, deadline):
        assert wait_all(processes, deadline) == [0], processes[0].output
    assert "Resuming from" in processes[0].output
    assert_same_weights(network_weights(expected_dir),
                        network_weights(workdir))


class _GatedStub:
    """Just what fit_in_phases asks of a model: gates and freeze_gates."""

    gates = ("gate",)
    frozen = False

    def __init__(self, events):
        self.events = events

    def freeze_gates(self):
        self.frozen = True
        self.events.append(("freeze",))


def _phases(monkeypatch, initial_epoch, obstacle=None, compact=True):
    """The fit calls fit_in_phases makes for a 5-epoch run whose gates
    freeze after epoch 2, and what happened around them."""
    from anpvs_tf import config as config_lib

    made, events = object(), []
    model = _GatedStub(events)

    def fine_tune_model(trainee, *args):
        assert trainee.frozen, "the compact network is cut from frozen gates"
        if obstacle:
            raise ValueError(obstacle)
        return made, "narrowed"

    monkeypatch.setattr(compact_training, "compact_fine_tune_model",
                        fine_tune_model)
    monkeypatch.setattr(compact_training, "widen",
                        lambda narrowed: events.append(("widen", narrowed)))
    config = config_lib.replace(
        tiny_gated_run(), **{"train.epochs": 5, "train.gate_epochs": 2,
                             "train.compact_fine_tune": compact})
    compact_training.fit_in_phases(
        model, config, None, 100,
        lambda trainee, first, last: events.append(
            ("model" if trainee is model else "compact", first, last)),
        initial_epoch=initial_epoch,
        on_compact=lambda c: events.append(("on_compact", c is made)),
        log=lambda text: events.append(("log", text)))
    return events


def test_phases_train_gates_then_the_compact_network(monkeypatch):
    assert _phases(monkeypatch, 0) == [
        ("model", 0, 2), ("freeze",), ("on_compact", True),
        ("compact", 2, 5), ("widen", "narrowed")]
    # Resumed inside the compact phase: the gated phase has nothing left,
    # and the gates are frozen all the same.
    assert _phases(monkeypatch, 3)[:4] == [
        ("model", 3, 2), ("freeze",), ("on_compact", True),
        ("compact", 3, 5)]


def test_phases_stay_masked_where_compacting_is_off_or_impossible(
        monkeypatch):
    assert _phases(monkeypatch, 0, compact=False) == [
        ("model", 0, 2), ("freeze",), ("model", 2, 5)]
    assert _phases(monkeypatch, 1, obstacle="a batch-norm") == [
        ("model", 1, 2), ("freeze",),
        ("log", "The fine-tune stays masked: a batch-norm."),
        ("model", 2, 5)]
