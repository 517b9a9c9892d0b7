"""Gates folded into kernels for the attacks: same logits, same attack."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from anpvs_tf.config import AttackConfig
from anpvs_tf.folding import fold_plan
from anpvs_tf.folding import folded_logits_fn
from anpvs_tf.layers import GatePlacer
from anpvs_tf.layers import gates_of
from anpvs_tf.layers import network_outputs
from anpvs_tf.model import ANPVSModel
from anpvs_tf.registry import build_network
from models.lenet5_caffe import TINY
from tests.test_pruning import amplify_logits
from tests.test_pruning import bn_network
from tests.test_pruning import calibrate_batch_norms
from tests.test_pruning import prune_at_random
from tests.test_pruning import residual_network


def relu_gate_network(seed=0):
    """A gate between a ReLU and a pooling layer (neither rule folds it)
    and one between two dense layers (folded into the second's rows)."""
    gate = GatePlacer(True, 1.0, seed=seed)
    inputs = keras.Input(shape=(28, 28, 1), name="images")
    x = layers.Conv2D(6, 5, name="conv")(inputs)
    x = layers.ReLU(name="relu")(x)
    x = gate(x, "relu_gate")
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(12, activation="relu", name="fc")(x)
    x = gate(x, "fc_gate")
    logits = layers.Dense(5, name="classifier")(x)
    return keras.Model(inputs, network_outputs(logits, {"fc": x}))


def shared_dense_network(seed=0):
    """A gate read by a dense layer that is also called elsewhere."""
    gate = GatePlacer(True, 1.0, seed=seed)
    inputs = keras.Input(shape=(28, 28, 1), name="images")
    flat = layers.Flatten(name="flatten")(inputs)
    gated = gate(layers.Dense(8, activation="relu", name="fc")(flat),
                 "fc_gate")
    other = layers.Dense(8, name="other")(flat)
    shared = layers.Dense(4, name="shared")
    x = layers.Add(name="add")([shared(gated), shared(other)])
    logits = layers.Dense(5, name="classifier")(x)
    return keras.Model(inputs, network_outputs(logits, {"fc": gated}))


def randomize_biases(network, rng):
    """Non-zero biases (a new network's are 0), so a fold that forgets a
    bias shows."""
    for layer in network.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(
                rng.normal(0.0, 0.1, layer.bias.shape).astype("float32"))


def prepared(network, images, seed):
    """Random keep probabilities with some units pruned, random biases,
    logits spread over ~10."""
    rng = np.random.RandomState(seed)
    kept = prune_at_random(network, rng)
    randomize_biases(network, rng)
    calibrate_batch_norms(network, images, rng)
    amplify_logits(network, images)
    assert any(not k.all() for k in kept.values())  # some units pruned
    return network


def lenet():
    return build_network("lenet5_caffe", gated=True, seed=0, **TINY)


def plan_by_name(network):
    return {
        gate.name: [(layer.name, where) for layer, where in targets]
        for gate, targets in fold_plan(network)
    }


def test_lenet_folds_every_gate_into_a_kernel():
    assert plan_by_name(lenet()) == {
        "conv1_gate": [("conv1", "columns")],
        "conv2_gate": [("conv2", "columns")],
        "flatten_gate": [("fc1", "rows")],
        "fc1_gate": [("fc2", "rows")],
    }


def test_gate_between_relu_and_pooling_is_not_folded():
    network = relu_gate_network()
    assert plan_by_name(network) == {"fc_gate": [("classifier", "rows")]}


def test_gate_read_by_a_shared_layer_is_not_folded():
    assert plan_by_name(shared_dense_network()) == {}


@pytest.mark.parametrize(
    "builder", [lenet, bn_network, residual_network, relu_gate_network,
                shared_dense_network])
def test_folded_logits_equal_the_gated_networks(builder, mnist_test_batch):
    images = mnist_test_batch[0][:32]
    network = prepared(builder(), images, seed=0)

    expected = network(images, training=False)["logits"]
    folded = folded_logits_fn(network, fold_plan(network))
    actual = tf.function(folded)(tf.constant(images))
    np.testing.assert_allclose(actual, expected, atol=2e-5 * np.ptp(
        expected), rtol=0)
    assert np.ptp(expected, axis=0).max() > 1.0
    # Folding read the variables, it did not change them.
    np.testing.assert_array_equal(
        network(images, training=False)["logits"], expected)
    assert not any(g.bypassed for g in gates_of(network))


def test_folded_logits_follow_the_masks_as_the_gates_learn(mnist_test_batch):
    """One traced attack function serves every step: it reads the masks
    of the step it runs in, not those of when it was traced."""
    images = tf.constant(mnist_test_batch[0][:16])
    network = lenet()
    plan = fold_plan(network)
    function = tf.function(lambda x: folded_logits_fn(network, plan)(x))
    for seed in (2, 3):  # seed 1 leaves the LeNet constant logits
        prepared(network, images, seed)
        expected = network(images, training=False)["logits"]
        np.testing.assert_allclose(function(images), expected,
                                   atol=2e-5 * np.ptp(expected), rtol=0)
    assert function.experimental_get_tracing_count() == 1


def test_the_attack_is_the_unfolded_one(mnist_test_batch):
    """PGD on the folded network moves the pixels the unfolded one does
    (a sign can differ only where a gradient is within rounding of 0;
    identical here, a wrong fold moves nearly every pixel elsewhere)."""
    images, labels = (tf.constant(a[:16]) for a in mnist_test_batch)
    keras.utils.set_random_seed(0)
    network = prepared(lenet(), images, seed=2)
    attack = AttackConfig(epsilon=0.3, step_size=0.05, num_steps=5)
    crafted = {}
    for name in ("folded", "unfolded"):
        model = ANPVSModel(network, method="anp_vs", attack=attack, seed=3)
        if name == "unfolded":
            model.fold_plan = []
        crafted[name] = tf.function(model.craft)(images, labels, attack)
    same = np.isclose(crafted["folded"], crafted["unfolded"], atol=1e-6)
    assert same.mean() > 0.99
    assert np.abs(crafted["folded"] - images).max() > 0.29  # it moved


def test_compact_networks_fold_their_frozen_gates(mnist_test_batch):
    from anpvs_tf.compact_training import narrow

    images = mnist_test_batch[0][:16]
    network = prepared(lenet(), images, seed=4)
    compact = narrow(network).network
    assert len(fold_plan(compact)) == 4
    expected = compact(images, training=False)["logits"]
    actual = folded_logits_fn(compact, fold_plan(compact))(images)
    np.testing.assert_allclose(actual, expected,
                               atol=2e-5 * np.ptp(expected), rtol=0)
