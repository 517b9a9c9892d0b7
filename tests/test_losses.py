"""Tests for anpvs_tf.losses: vulnerability (VS), gate KL and L2."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import losses
from anpvs_tf.attacks import pgd_attack
from anpvs_tf.layers import gates_of
from anpvs_tf.registry import build_network


def test_vulnerability_zero_for_identical_features():
    rng = np.random.RandomState(0)
    features = {
        "conv": tf.constant(rng.normal(size=(2, 3, 3, 4)).astype("float32")),
        "dense": tf.constant(rng.normal(size=(2, 5)).astype("float32")),
    }
    copy = {name: tf.identity(value) for name, value in features.items()}
    assert float(losses.vulnerability(features, copy)) == 0.0
    per_unit = losses.vulnerability(features, copy, per_unit=True)
    assert {name: v.shape for name, v in per_unit.items()} == {
        "conv": (2, 4), "dense": (2, 5)}
    for distances in per_unit.values():
        assert float(tf.reduce_max(distances)) == 0.0


def test_vulnerability_hand_computed():
    clean = {
        "a": tf.constant([[0.0, 1.0], [2.0, 3.0]]),
        "b": tf.constant([1.0, 2.0, 3.0, 4.0]),
    }
    adversarial = {
        # |diff| = 0.5, 0.5, 0.5, 0.5 -> mean 0.5
        "a": tf.constant([[0.5, 0.5], [2.5, 2.5]]),
        # |diff| = 2, 2, 2, 2 -> mean 2.0
        "b": tf.constant([3.0, 0.0, 5.0, 2.0]),
    }
    per_unit = losses.vulnerability(clean, adversarial, per_unit=True)
    assert set(per_unit) == {"a", "b"}
    assert float(tf.reduce_mean(per_unit["a"])) == 0.5
    assert float(tf.reduce_mean(per_unit["b"])) == 2.0
    # Mean over layers, not over elements: (0.5 + 2.0) / 2 = 1.25.
    assert float(losses.vulnerability(clean, adversarial)) == 1.25


def test_vulnerability_per_unit_averages_positions_and_rebuilds_the_mean():
    # conv |diff| per unit: unit 0 is 1 at one of 4 positions (mean 0.25),
    # unit 1 is 2 everywhere (mean 2.0); example 2 doubles example 1.
    first = np.zeros((2, 2, 2), "float32")
    first[0, 0, 0] = 1.0
    first[..., 1] = 2.0
    conv = np.stack([first, 2 * first])
    clean = {"conv": tf.constant(conv), "dense": tf.constant([[1.0, 3.0]] * 2)}
    adversarial = {"conv": tf.zeros_like(clean["conv"]),
                   "dense": tf.constant([[0.0, 0.0]] * 2)}
    per_unit = losses.vulnerability(clean, adversarial, per_unit=True)
    np.testing.assert_allclose(per_unit["conv"], [[0.25, 2.0], [0.5, 4.0]])
    np.testing.assert_allclose(per_unit["dense"], [[1.0, 3.0]] * 2)
    # The scalar is the mean over layers of each layer's per-unit mean.
    rebuilt = np.mean([np.mean(v) for v in per_unit.values()])
    scalar = float(losses.vulnerability(clean, adversarial))
    assert scalar == pytest.approx(rebuilt)


def test_vulnerability_unequal_layer_sizes_weigh_equally():
    # 1 element with |diff| 3 and 3 elements with |diff| 1: the mean of the
    # layer means is (3 + 1) / 2 = 2.0 (the mean of all elements would be
    # (3 + 1 + 1 + 1) / 4 = 1.5).
    clean = {"small": tf.constant([3.0]), "large": tf.constant([1.0] * 3)}
    adversarial = {"small": tf.constant([0.0]), "large": tf.constant([0.0] * 3)}
    assert float(losses.vulnerability(clean, adversarial)) == 2.0


def test_vs_loss_gradient_reaches_every_gated_layer(mnist_test_batch):
    x, y = mnist_test_batch
    x, y = x[:16], y[:16]
    network = build_network("lenet5_caffe", gated=True, seed=0)
    x_adv = pgd_attack(
        lambda images: network(images, training=False)["logits"],
        x,
        y,
        epsilon=0.3,
        step_size=0.1,
        num_steps=3,
        random_start=True,
        seed_generator=keras.random.SeedGenerator(0),
    )
    conv1_gate = network.get_layer("conv1_gate")
    kernels = {
        name: network.get_layer(name).kernel
        for name in ("conv1", "conv2", "fc1", "fc2")
    }
    gate_variables = list(conv1_gate.trainable_variables)
    with tf.GradientTape(persistent=True) as tape:
        clean = network(x, training=True)["features"]
        adversarial = network(x_adv, training=True)["features"]
        per_unit = losses.vulnerability(clean, adversarial, per_unit=True)
        vulnerability = losses.vulnerability(clean, adversarial)
    assert set(per_unit) == {"conv1", "conv2", "flatten", "fc1"}
    assert float(vulnerability) > 0.0
    gradient_of = tape.gradient

    def gradient_norm(target, variable):
        gradient = gradient_of(target, variable)
        return 0.0 if gradient is None else float(tf.norm(gradient))

    # The total VS loss reaches every gated layer's weights, the first
    # included (SPEC pitfall 4), and the first gate's parameters.
    for name in ("conv1", "conv2", "fc1"):
        assert gradient_norm(vulnerability, kernels[name]) > 0.0, name
    for variable in gate_variables:
        assert gradient_norm(vulnerability, variable) > 0.0, variable.name
    # Each layer's own term reaches the layer that produced it: the
    # first layer's term is not cut off (pitfall 4 exactly).
    assert gradient_norm(per_unit["conv1"], kernels["conv1"]) > 0.0
    assert gradient_norm(per_unit["conv2"], kernels["conv2"]) > 0.0
    assert gradient_norm(per_unit["flatten"], kernels["conv2"]) > 0.0
    assert gradient_norm(per_unit["fc1"], kernels["fc1"]) > 0.0
    # Features come before the classifier: VS does not touch it, nor does
    # the first layer's term depend on later layers.
    assert tape.gradient(vulnerability, kernels["fc2"]) is None
    assert tape.gradient(per_unit["conv1"], kernels["conv2"]) is None
    assert tape.gradient(per_unit["flatten"], kernels["fc1"]) is None
    del tape


def test_gate_kl_zero_for_ungated_network():
    network = build_network("lenet5_caffe", gated=False, seed=0)
    assert gates_of(network) == []
    assert float(losses.gate_kl(gates_of(network))) == 0.0


def test_gate_kl_is_sum_of_gate_kls():
    network = build_network("lenet5_caffe", gated=True, seed=0)
    gates = gates_of(network)
    # SPEC: LeNet-5-Caffe has four gates, 20 + 50 + 800 + 500 = 1370 units.
    assert [gate.units for gate in gates] == [20, 50, 800, 500]
    # Distinct parameters per gate, so a sum of the wrong terms shows.
    rng = np.random.RandomState(0)
    for gate in gates:
        gate.concentration1_raw.assign(
            rng.uniform(-3.0, 3.0, size=gate.units).astype("float32")
        )
    expected = sum(float(gate.kl_divergence()) for gate in gates)
    np.testing.assert_allclose(
        float(losses.gate_kl(gates)), expected, rtol=1e-6
    )
    # One gate alone is its own KL.
    np.testing.assert_allclose(
        float(losses.gate_kl(gates[:1])),
        float(gates[0].kl_divergence()),
        rtol=1e-6,
    )


def test_gate_kl_weights_each_named_gate():
    network = build_network("lenet5_caffe", gated=True, seed=0)
    gates = gates_of(network)
    kls = [float(gate.kl_divergence()) for gate in gates]
    weights = {gates[0].name: 3.0, gates[2].name: 0.5}
    # Gates the dict leaves out count once.
    expected = 3.0 * kls[0] + kls[1] + 0.5 * kls[2] + kls[3]
    np.testing.assert_allclose(
        float(losses.gate_kl(gates, weights)), expected, rtol=1e-6)


def test_l2_penalty_is_half_sum_of_squares():
    rng = np.random.RandomState(0)
    kernels = [
        tf.Variable(rng.normal(size=(5, 5, 1, 3)).astype("float32")),
        tf.Variable(rng.normal(size=(10, 4)).astype("float32")),
    ]
    expected = sum(
        np.sum(kernel.numpy().astype(np.float64) ** 2) for kernel in kernels
    ) / 2.0
    np.testing.assert_allclose(
        float(losses.l2_penalty(kernels)), expected, rtol=1e-5
    )
    assert float(losses.l2_penalty([])) == 0.0
