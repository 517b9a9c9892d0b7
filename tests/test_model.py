"""ANPVSModel: losses per method, two optimizers, MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf.config import AttackConfig
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.model import ANPVSModel
from anpvs_tf.registry import build_network

ATTACK = AttackConfig(epsilon=0.3, step_size=0.05, num_steps=3)


def make_model(method, seed=0, run_eagerly=True):
    """A LeNet ANPVSModel whose init depends only on `seed`.

    Eager by default: one or two steps run faster than tracing the step.
    """
    keras.utils.set_random_seed(seed)
    gated = method in GATED_METHODS
    network = build_network("lenet5_caffe", gated=gated, seed=seed)
    model = ANPVSModel(network, method=method, attack=ATTACK, seed=seed,
                       kl_weight=4.0, vs_weight=0.1)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.optimizers.Adam(1e-2),
        jit_compile=False,
        run_eagerly=run_eagerly,
    )
    return model


def one_batch(images, labels):
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(
        len(labels)
    )


def variables_of(model):
    return [v.numpy() for v in model.network.variables]


@pytest.mark.parametrize("method", ["at", "anp_vs"])
def test_mirrored_step_equals_single_device(
    method, mnist_test_batch, two_cpu_strategy
):
    images, labels = mnist_test_batch
    images, labels = images[:16], labels[:16]

    single = make_model(method)
    before = variables_of(single)
    single_logs = single.fit(one_batch(images, labels), verbose=0).history

    strategy = two_cpu_strategy
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        # Compiled, as real training runs: tf.function + replica context.
        mirrored = make_model(method, run_eagerly=False)
    for a, b in zip(before, variables_of(mirrored)):
        np.testing.assert_array_equal(a, b)  # same starting point
    mirrored_logs = mirrored.fit(one_batch(images, labels), verbose=0).history

    changed = 0
    for a, b, start in zip(
        variables_of(single), variables_of(mirrored), before
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        changed += not np.array_equal(a, start)
    assert changed > 0  # the step did update the network
    for name in ("loss", "ce_loss", "adv_ce_loss", "adv_accuracy",
                 "vs_loss"):
        np.testing.assert_allclose(
            mirrored_logs[name], single_logs[name], rtol=1e-4, atol=1e-6
        )


def test_gate_and_weight_optimizers_update_their_own_variables(
    mnist_test_batch,
):
    """Gates move only through the gate optimizer, weights through the
    other, with the learning rates given to each (Adam's first step moves
    every parameter by about its learning rate)."""
    images, labels = mnist_test_batch
    model = make_model("anp_vs")
    gates_before = [np.array(v) for v in model.gate_variables]
    weights_before = [np.array(v) for v in model.weight_variables]
    model.fit(one_batch(images, labels), verbose=0)
    gate_step = max(
        np.abs(np.array(v) - b).max()
        for v, b in zip(model.gate_variables, gates_before)
    )
    weight_step = max(
        np.abs(np.array(v) - b).max()
        for v, b in zip(model.weight_variables, weights_before)
    )
    np.testing.assert_allclose(gate_step, 1e-2, rtol=0.05)
    np.testing.assert_allclose(weight_step, 1e-3, rtol=0.05)
    assert model.optimizer.iterations.numpy() == 1
    assert model.gate_optimizer.iterations.numpy() == 1


def test_variables_are_partitioned(mnist_test_batch):
    model = make_model("anp_vs")
    gate_ids = {id(v) for v in model.gate_variables}
    weight_ids = {id(v) for v in model.weight_variables}
    assert not gate_ids & weight_ids
    assert len(gate_ids) == 2 * 4  # two concentrations per gate, 4 gates
    assert gate_ids | weight_ids == {
        id(v) for v in model.network.trainable_variables
    }


@pytest.mark.parametrize(
    "method, expected",
    [
        ("standard", {"ce_loss", "clean_accuracy", "loss"}),
        ("at", {"ce_loss", "adv_ce_loss", "vs_loss", "clean_accuracy",
                "adv_accuracy", "loss"}),
        ("bp", {"ce_loss", "kl_loss", "clean_accuracy", "loss",
                "sparsity", "active_units"}),
        ("anp_vs", {"ce_loss", "adv_ce_loss", "vs_loss", "kl_loss",
                    "clean_accuracy", "adv_accuracy", "loss", "sparsity",
                    "active_units"}),
    ],
)
def test_train_step_reports_the_terms_of_its_method(
    method, expected, random_batch
):
    model = make_model(method)
    logs = model.fit(one_batch(*random_batch), verbose=0).history
    assert set(logs) == expected
    assert all(np.isfinite(v[-1]) for v in logs.values())


def test_weight_loss_matches_its_definition(mnist_test_batch):
    """loss = (CE + 2 CE_adv) / 3 + beta KL / N + l2 ||W||^2/2 + lambda V."""
    images, labels = mnist_test_batch
    model = make_model("anp_vs")
    x, y = tf.constant(images), tf.constant(labels)
    _, _, terms, _ = model._loss_terms(x, y, model.craft(x, y, ATTACK))
    l2 = sum(0.5 * np.sum(np.array(k) ** 2) for k in model.kernels)
    kl = sum(float(g.kl_divergence()) for g in model.gates)
    expected = (
        (float(terms["ce_loss"]) + 2 * float(terms["adv_ce_loss"])) / 3
        + 4.0 * kl / 60000
        + 1e-4 * l2
        + 0.1 * float(terms["vs_loss"])
    )
    np.testing.assert_allclose(float(terms["loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(
        float(terms["kl_loss"]), 4.0 * kl / 60000, rtol=1e-5
    )


def test_method_and_network_must_agree():
    with pytest.raises(ValueError, match="gated"):
        ANPVSModel(build_network("lenet5_caffe", gated=False),
                   method="anp_vs")
    with pytest.raises(ValueError, match="method"):
        ANPVSModel(build_network("lenet5_caffe", gated=False),
                   method="nope")


def test_evaluation_attack_lowers_accuracy_only_with_epsilon(
    mnist_test_batch,
):
    """eps = 0 must give exactly the clean accuracy and zero vulnerability
    (a sanity check against a broken attack path)."""
    model = make_model("at")
    model.fit(one_batch(*mnist_test_batch), epochs=3, verbose=0)
    model.set_eval_attack(AttackConfig(epsilon=0.0, num_steps=5))
    logs = model.evaluate(one_batch(*mnist_test_batch), verbose=0,
                          return_dict=True)
    assert logs["adv_accuracy"] == logs["clean_accuracy"]
    assert logs["vs_loss"] == 0.0


@pytest.mark.parametrize("method", ["at", "anp_vs"])
def test_the_monitor_never_changes_the_training_run(
    method, mnist_test_batch
):
    """The per-epoch monitor attacks with its own random stream: training
    with a monitor, or with none, ends with the same weights."""
    images, labels = mnist_test_batch
    train = one_batch(images[:16], labels[:16])
    monitor = one_batch(images[16:24], labels[16:24])

    unmonitored = make_model(method)
    unmonitored.fit(train, epochs=2, verbose=0)
    monitored = make_model(method)
    monitored.fit(train, epochs=2, validation_data=monitor, verbose=0)

    for a, b in zip(variables_of(unmonitored), variables_of(monitored)):
        np.testing.assert_array_equal(a, b)
    # The monitor did draw its random starts (from its own stream).
    assert not np.array_equal(
        unmonitored.monitor_seed_generator.state.numpy(),
        monitored.monitor_seed_generator.state.numpy())

