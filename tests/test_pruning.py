"""compact_network: the pruned plain network computes the gated function."""

import keras
import numpy as np
import pytest
from keras import layers

from anpvs_tf.complexity import complexity_report
from anpvs_tf.complexity import count_complexity
from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.layers import GatePlacer
from anpvs_tf.layers import gates_of
from anpvs_tf.layers import network_outputs
from anpvs_tf.pruning import ConstantInputConv2D
from anpvs_tf.pruning import KeepFeatures
from anpvs_tf.pruning import compact_network
from anpvs_tf.registry import build_network

PRUNED_RAW = -10.0  # E[pi] = softplus(-10) / (1 + softplus(-10)) < 1e-3


def prune_at_random(network, rng, fraction=0.4, pruned=None, exact=False):
    """Gives every gate random keep probabilities and prunes some units.

    `pruned` maps a gate name to the exact units to prune; other gates
    prune a random `fraction` (with `exact`, exactly round(fraction *
    units) of each gate). Returns {gate name: bool kept [units]}.
    """
    kept = {}
    for gate in gates_of(network):
        raw = rng.uniform(-1.0, 3.0, size=gate.units)
        if pruned and gate.name in pruned:
            drop = np.zeros(gate.units, dtype=bool)
            drop[list(pruned[gate.name])] = True
        elif exact:
            count = int(round(fraction * gate.units))
            drop = rng.permutation(gate.units) < count
        else:
            drop = rng.rand(gate.units) < fraction
        raw[drop] = PRUNED_RAW
        gate.concentration1_raw.assign(raw.astype("float32"))
        gate.concentration0_raw.assign(
            rng.uniform(0.0, 2.0, size=gate.units).astype("float32")
        )
        kept[gate.name] = ~drop
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(gate.active()), ~drop
        )
    return kept


def gated_logits(network, images):
    return keras.ops.convert_to_numpy(
        network(images, training=False)["logits"]
    )


def amplify_logits(network, images, spread=10.0):
    """Scales the classifier so logits spread over about `spread`.

    An untrained gated network has logits of about 1e-3, against which a
    1e-4 tolerance would prove little; trained networks have logits of
    several units.
    """
    classifier = network.layers[-1]
    logits = gated_logits(network, images)
    current = np.ptp(logits, axis=0).max()
    # Constant logits (every path pruned or dead) would make any
    # comparison of them vacuous.
    assert current > 0, "the logits do not vary over the images"
    factor = spread / current
    classifier.kernel.assign(classifier.kernel * factor)


def assert_same_function(network, compact, images):
    expected = gated_logits(network, images)
    actual = keras.ops.convert_to_numpy(compact(images))
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)
    # Not a vacuous match: the logits vary across images.
    assert np.ptp(expected, axis=0).max() > 1.0


def bn_network(gated=True, seed=0):
    """conv + BN + dense, SAME padding and strides: the VGG pattern, small.

    Gates sit before each batch-norm, on the flat features and on the
    hidden units, so pruned units become non-zero constants.
    """
    gate = GatePlacer(gated, 1.0, seed=seed)
    inputs = keras.Input(shape=(28, 28, 1), name="images")
    x = layers.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
    x = gate(x, "conv_a_gate")
    x = layers.BatchNormalization(name="bn_a")(x)
    a = x = layers.ReLU(name="relu_a")(x)
    x = layers.MaxPooling2D(2, name="pool_a")(x)
    x = layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False,
                      name="conv_b")(x)
    x = gate(x, "conv_b_gate")
    x = layers.BatchNormalization(name="bn_b")(x)
    b = x = layers.ReLU(name="relu_b")(x)
    x = layers.Flatten(name="flatten")(x)
    x = gate(x, "flatten_gate")
    x = layers.Dense(16, name="fc")(x)
    x = gate(x, "fc_gate")
    x = layers.BatchNormalization(name="bn_fc")(x)
    x = layers.ReLU(name="relu_fc")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    hidden = x = gate(x, "hidden_gate")
    logits = layers.Dense(5, name="classifier")(x)
    return keras.Model(
        inputs,
        network_outputs(logits, {"a": a, "b": b, "hidden": hidden}),
        name="bn_net_gated" if gated else "bn_net",
    )


def calibrate_batch_norms(network, images, rng):
    """Moving statistics of the images (inference gates), random affine.

    Channels that carry no signal (pruned ones) get random statistics, so
    their constant beta - gamma * mean / sqrt(var + eps) is non-zero.
    """
    for layer in network.layers:
        if not isinstance(layer, layers.BatchNormalization):
            continue
        inputs = keras.Model(network.inputs[0], layer.input)(images)
        inputs = keras.ops.convert_to_numpy(inputs)
        axes = tuple(range(inputs.ndim - 1))
        mean, variance = inputs.mean(axis=axes), inputs.var(axis=axes)
        silent = variance < 1e-8
        width = mean.shape[0]
        mean[silent] = rng.normal(0.0, 0.5, silent.sum())
        variance[silent] = rng.uniform(0.5, 2.0, silent.sum())
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)
        layer.gamma.assign(rng.uniform(0.5, 2.0, width))
        layer.beta.assign(rng.uniform(-0.5, 1.0, width))


def bn_constant(layer):
    """ReLU(BN(0)) per channel: the value a pruned channel carries."""
    gamma, beta, mean, variance = (
        keras.ops.convert_to_numpy(w) for w in layer.weights
    )
    return np.maximum(
        beta - gamma * mean / np.sqrt(variance + layer.epsilon), 0.0
    )


def test_lenet_compact_matches_gated_on_real_and_random_images(
    mnist_test_batch, random_batch
):
    network = build_network("lenet5_caffe", seed=0)
    rng = np.random.RandomState(1)
    # Every flat feature of conv2 channel 7 is pruned by the flatten gate,
    # so conv2's channel 7 must go although its own gate keeps it.
    channel_7 = np.arange(7, 800, 50)
    kept = prune_at_random(
        network, rng,
        pruned={"conv2_gate": [3, 11], "flatten_gate": channel_7},
    )
    amplify_logits(network, mnist_test_batch[0])
    compact = compact_network(network)

    assert_same_function(network, compact, mnist_test_batch[0])
    assert_same_function(network, compact, random_batch[0])

    conv1 = kept["conv1_gate"].sum()
    conv2_gate = kept["conv2_gate"]
    features = kept["flatten_gate"] & np.tile(conv2_gate, 16)
    conv2 = sum(
        features.reshape(16, 50)[:, c].any() for c in range(50)
    )
    assert conv2 == conv2_gate.sum() - 1  # channel 7 is gone
    hidden = kept["fc1_gate"].sum()
    expected = (
        25 * conv1 + conv1
        + 25 * conv1 * conv2 + conv2
        + features.sum() * hidden + hidden
        + hidden * 10 + 10
    )
    assert compact.count_params() == expected
    assert not any(
        "gate" in layer.name for layer in compact.layers
    )
    # The paper's counters agree on the compact network and, from the
    # same analysis, on the gated one (the dead channel 7 is not counted).
    size = count_complexity(compact)
    assert size.params == expected
    gated = complexity_report(network)
    assert gated["params"] == expected
    assert size.flops == gated["flops"]
    assert gated["flops"] < gated["flops_full"]


def test_bn_network_folds_non_zero_constants_exactly(
    mnist_test_batch, random_batch
):
    network = bn_network()
    rng = np.random.RandomState(2)
    kept = prune_at_random(network, rng, fraction=0.5)
    calibrate_batch_norms(network, mnist_test_batch[0], rng)
    amplify_logits(network, mnist_test_batch[0])
    by_name = {layer.name: layer for layer in network.layers}
    # The case under test: pruned channels that still carry a constant.
    assert bn_constant(by_name["bn_a"])[~kept["conv_a_gate"]].max() > 0.1
    assert bn_constant(by_name["bn_b"])[~kept["conv_b_gate"]].max() > 0.1
    amplify_logits(network, mnist_test_batch[0])
    compact = compact_network(network)

    assert_same_function(network, compact, mnist_test_batch[0])
    assert_same_function(network, compact, random_batch[0])

    # conv_b is SAME-padded: the constants need the border kernel.
    assert isinstance(compact.get_layer("conv_b"), ConstantInputConv2D)
    a = kept["conv_a_gate"].sum()
    features = kept["flatten_gate"] & np.tile(kept["conv_b_gate"], 49)
    b = sum(features.reshape(49, 6)[:, c].any() for c in range(6))
    hidden = (kept["fc_gate"] & kept["hidden_gate"]).sum()
    expected = (
        9 * a + a + 4 * a          # conv_a + bn_a
        + 9 * a * b + 9 * b        # conv_b (no bias) + border kernel
        + 4 * b                    # bn_b
        + features.sum() * hidden + hidden + 4 * hidden
        + hidden * 5 + 5
    )
    assert compact.count_params() == expected


def test_nothing_pruned_keeps_the_full_network(mnist_test_batch):
    network = bn_network()
    calibrate_batch_norms(
        network, mnist_test_batch[0], np.random.RandomState(3)
    )
    amplify_logits(network, mnist_test_batch[0])
    compact = compact_network(network)
    assert_same_function(network, compact, mnist_test_batch[0])
    plain = bn_network(gated=False)
    assert compact.count_params() == plain.count_params()
    assert not any(
        isinstance(layer, (ConstantInputConv2D, KeepFeatures))
        for layer in compact.layers
    )


def test_fully_pruned_layer_is_refused():
    network = build_network("lenet5_caffe", seed=0)
    prune_at_random(
        network, np.random.RandomState(5),
        pruned={"conv1_gate": range(20)},
    )
    with pytest.raises(ValueError, match="Every input of layer 'conv2'"):
        compact_network(network)


def test_additions_that_disagree_on_a_scale_are_refused():
    # The gate sits after a ReLU, so its scale cannot be folded into the
    # conv, and the shortcut branch carries no such scale.
    inputs = keras.Input(shape=(8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = BetaBernoulliGate(name="gate")(layers.ReLU(name="relu")(x))
    y = layers.Add(name="residual")([x, layers.Conv2D(4, 1, name="skip")(
        inputs)])
    logits = layers.Dense(2)(layers.Flatten()(y))
    network = keras.Model(inputs, network_outputs(logits, {}))
    with pytest.raises(ValueError, match="addition 'residual'.*scale"):
        compact_network(network)


def test_vgg16_compact_matches_gated_and_counts_params():
    """The zoo's VGG-16: 13 SAME convs, each gate before a batch-norm."""
    network = build_network("vgg16", seed=0)
    rng = np.random.RandomState(6)
    images = rng.uniform(size=(8, 32, 32, 3)).astype("float32")
    kept = prune_at_random(network, rng, fraction=0.5)
    calibrate_batch_norms(network, images, rng)
    # Through 15 layers float32 rounding alone is ~1e-5 of the logits'
    # scale (the gated network itself is ~1e-4 off float64 at spread 10).
    amplify_logits(network, images, spread=2.0)
    compact = compact_network(network)
    assert_same_function(network, compact, images)

    report = complexity_report(network)
    assert compact.count_params() == report["params"]
    assert count_complexity(compact).params < 0.5 * report["params_full"]
    convs = [kept[f"conv{i}_gate"].sum() for i in range(1, 14)]
    assert [compact.get_layer(f"conv{i}").filters for i in range(1, 13)] \
        == convs[:12]
    assert all(
        isinstance(compact.get_layer(f"conv{i}"), ConstantInputConv2D)
        for i in range(2, 14)
    )


def residual_network(gated=True, seed=0):
    """PreAct ResNet in small: an identity and a projection block.

    As in models/resnet18.py, gates sit on conv outputs before the
    batch-norm or the addition that follows, and on the pooled features.
    """
    gate = GatePlacer(gated, 1.0, seed=seed)
    inputs = keras.Input(shape=(28, 28, 1), name="images")
    x = gate(layers.Conv2D(8, 3, padding="same", use_bias=False,
                           name="stem")(inputs), "stem_gate")
    for name, width, stride in (("block1", 8, 1), ("block2", 12, 2)):
        out = layers.BatchNormalization(name=f"{name}_bn1")(x)
        out = layers.ReLU(name=f"{name}_relu1")(out)
        if stride == 1:
            shortcut = x
        else:
            shortcut = gate(layers.Conv2D(
                width, 1, strides=stride, padding="same", use_bias=False,
                name=f"{name}_shortcut")(out), f"{name}_shortcut_gate")
        out = gate(layers.Conv2D(
            width, 3, strides=stride, padding="same", use_bias=False,
            name=f"{name}_conv1")(out), f"{name}_conv1_gate")
        out = layers.BatchNormalization(name=f"{name}_bn2")(out)
        out = layers.ReLU(name=f"{name}_relu2")(out)
        out = gate(layers.Conv2D(
            width, 3, padding="same", use_bias=False,
            name=f"{name}_conv2")(out), f"{name}_conv2_gate")
        x = layers.Add(name=f"{name}_add")([out, shortcut])
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    pooled = x = gate(x, "pool_gate")
    logits = layers.Dense(5, name="classifier")(x)
    return keras.Model(
        inputs, network_outputs(logits, {"pool": pooled}),
        name="residual_net_gated" if gated else "residual_net",
    )


def prepare_residual(network, images, rng, **pruning):
    kept = prune_at_random(network, rng, **pruning)
    calibrate_batch_norms(network, images, rng)
    amplify_logits(network, images)
    return kept


def test_residual_sum_keeps_a_channel_any_branch_keeps(mnist_test_batch):
    network = residual_network()
    images = mnist_test_batch[0]
    # block1_add joins the stem (identity shortcut) and block1_conv2:
    # channels 1 and 2 are pruned by both, 0 only by the stem, 3 and 4
    # only by the conv.
    prepare_residual(network, images, np.random.RandomState(7), pruned={
        "stem_gate": [0, 1, 2], "block1_conv2_gate": [1, 2, 3, 4],
        "block1_conv1_gate": [5], "block2_conv1_gate": [0, 1],
        "block2_conv2_gate": [2, 3, 4], "block2_shortcut_gate": [3, 4, 5],
        "pool_gate": [6],
    })
    compact = compact_network(network)
    assert_same_function(network, compact, images)

    def filters(name):
        return compact.get_layer(name).filters

    def inputs_of(name):
        return compact.get_layer(name).kernel.shape[2]

    # Each branch conv computes only its own gate's channels ...
    assert filters("stem") == 5
    assert filters("block1_conv2") == 4
    # ... the sums carry every channel some member keeps: block1_add all
    # but 1 and 2, block2_add all but 3 and 4, less channel 6, which the
    # pool gate prunes after it, so that no consumer needs it.
    assert inputs_of("block2_conv1") == inputs_of("block2_shortcut") == 6
    assert compact.get_layer("final_bn").gamma.shape == (9,)
    assert filters("block2_shortcut") == 9 - 1  # also pruned 5
    assert filters("block2_conv2") == 9 - 1  # also pruned 2
    # The block1 branch reads the stem's own 5 channels.
    assert inputs_of("block1_conv1") == 5
    # ... and a member without a kept channel adds an exact zero there.
    placements = {
        layer.name: layer.indices for layer in compact.layers
        if isinstance(layer, KeepFeatures)
    }
    assert placements["block1_add_input0"] == [0, -1, -1, 1, 2, 3]
    assert placements["block1_add_input1"] == [-1, 0, 1, 2, 3, 4]
    assert compact.count_params() == count_complexity(network).params


@pytest.mark.parametrize("fraction", [0.5, 0.75])
def test_residual_network_compacts_exactly(
    fraction, mnist_test_batch, random_batch
):
    network = residual_network()
    images = mnist_test_batch[0]
    prepare_residual(network, images, np.random.RandomState(8),
                     fraction=fraction, exact=True)
    compact = compact_network(network)
    assert_same_function(network, compact, images)
    assert_same_function(network, compact, random_batch[0])
    report = complexity_report(network)
    assert report["unit_sparsity"] == pytest.approx(100 * fraction, abs=1)
    assert compact.count_params() == report["params"]
    assert count_complexity(compact) == count_complexity(network)
    assert report["params"] < residual_network(gated=False).count_params()


@pytest.mark.parametrize("builder", [bn_network, residual_network])
def test_compact_model_round_trips_through_keras_file(
    builder, tmp_path, mnist_test_batch
):
    network = builder()
    rng = np.random.RandomState(4)
    prune_at_random(network, rng, fraction=0.5)
    calibrate_batch_norms(network, mnist_test_batch[0], rng)
    compact = compact_network(network)
    # Both custom layers are saved: border kernels, and (residual) zeros.
    assert any(
        isinstance(layer, ConstantInputConv2D) for layer in compact.layers
    )
    if builder is residual_network:
        assert any(
            isinstance(layer, KeepFeatures) and -1 in layer.indices
            for layer in compact.layers
        )
    path = tmp_path / "compact.keras"
    compact.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(mnist_test_batch[0])),
        keras.ops.convert_to_numpy(compact(mnist_test_batch[0])),
        atol=1e-6,
    )


def test_resnet18_compacts_exactly_at_half_and_three_quarters_pruned(
    mnist_test_batch
):
    """The zoo's PreAct ResNet-18 on real digits, tiled to 16x16x3."""
    network = build_network("resnet18", input_shape=(16, 16, 3), seed=0)
    digits = keras.ops.convert_to_numpy(keras.ops.image.resize(
        mnist_test_batch[0], (16, 16)))
    images = np.clip(np.repeat(digits, 3, axis=-1), 0.0, 1.0)
    rng = np.random.RandomState(10)
    for fraction in (0.5, 0.75):
        kept = prune_at_random(network, rng, fraction=fraction, exact=True)
        assert all(
            (~keep).sum() == round(fraction * keep.size)
            for keep in kept.values()
        )
        calibrate_batch_norms(network, images, rng)
        amplify_logits(network, images, spread=2.0)
        compact = compact_network(network)
        assert_same_function(network, compact, images)
        assert compact.count_params() == count_complexity(network).params
        assert compact.get_layer("stage4_block2_conv1").filters == round(
            (1 - fraction) * 512)
