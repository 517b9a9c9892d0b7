"""fast_stem_gradient: Conv2D's function and gradients, faster kernel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf.pruning import compact_network
from anpvs_tf.registry import build_network
from anpvs_tf.stem_conv import fast_stem_gradient


def _pair(channels, filters, kernel, padding, input_size=11):
    """A fast-gradient stem and a Conv2D with the same random weights."""
    shape = (input_size, input_size, channels)
    stem = keras.layers.Conv2D(filters, kernel, padding=padding)
    plain = keras.layers.Conv2D(filters, kernel, padding=padding)
    stem.build((None, *shape))
    plain.build((None, *shape))
    fast_stem_gradient(stem)
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(w.shape).astype("float32")
               for w in plain.weights]
    stem.set_weights(weights)
    plain.set_weights(weights)
    images = tf.constant(rng.uniform(size=(3, *shape)).astype("float32"))
    return stem, plain, images


def _outputs_and_gradients(layer, images):
    # A non-uniform upstream gradient, the same for both layers.
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = layer(images)
        weights = tf.cast(tf.range(tf.size(outputs)), tf.float32)
        loss = tf.reduce_sum(
            tf.reshape(outputs, [-1]) * tf.sin(weights))
    grads = tape.gradient(loss, [images, *layer.trainable_weights])
    return outputs, grads


@pytest.mark.parametrize(
    "channels, filters, kernel, padding",
    [(1, 4, 5, "valid"), (3, 5, 3, "same"), (2, 3, 4, "same"),
     (1, 2, (3, 5), "valid")],
)
def test_matches_conv2d_in_value_and_every_gradient(
        channels, filters, kernel, padding):
    stem, plain, images = _pair(channels, filters, kernel, padding)
    assert stem._fast_input_gradient  # the custom kernel is the one tested
    stem_out, stem_grads = _outputs_and_gradients(stem, images)
    plain_out, plain_grads = _outputs_and_gradients(plain, images)
    np.testing.assert_allclose(stem_out, plain_out, atol=1e-5)
    for ours, reference in zip(stem_grads, plain_grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_left_alone_beyond_a_stem():
    wide = keras.layers.Conv2D(4, 3, padding="same")
    wide.build((None, 12, 12, 8))
    strided = keras.layers.Conv2D(4, 3, strides=2)
    strided.build((None, 12, 12, 1))
    for layer in (wide, strided):
        assert not fast_stem_gradient(layer)
        assert "convolution_op" not in vars(layer)


def test_gradient_is_used_inside_a_compiled_loop():
    """PGD takes it in a tf.while_loop inside tf.function."""
    stem, plain, images = _pair(1, 4, 5, "valid")

    def ascend(layer):
        @tf.function
        def run(x):
            def step(i, x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(tf.square(layer(x)))
                return i + 1, x + 1e-3 * tape.gradient(loss, x)
            return tf.while_loop(lambda i, x: i < 3, step, (0, x))[1]
        return run(images)

    np.testing.assert_allclose(ascend(stem), ascend(plain), atol=1e-5)


@pytest.mark.parametrize("name, stem, other", [
    ("lenet5_caffe", "conv1", "conv2"),
    ("vgg16", "conv1", "conv2"),
    ("resnet18", "stem", "stage1_block1_conv1"),
])
def test_zoo_stems_use_it(name, stem, other):
    network = build_network(name, seed=0)
    assert network.get_layer(stem)._fast_input_gradient
    assert not getattr(network.get_layer(other), "_fast_input_gradient",
                       False)


def test_weight_files_and_compaction_are_unchanged(tmp_path):
    """Weight files of plain-Conv2D networks load (Keras keys entries by
    layer class), and the compact model is a plain network."""
    network = build_network("lenet5_caffe", seed=0)
    path = tmp_path / "network.weights.h5"
    network.save_weights(path)
    twin = build_network("lenet5_caffe", seed=1)
    twin.load_weights(path)
    for ours, theirs in zip(network.weights, twin.weights):
        np.testing.assert_array_equal(ours, theirs)
    compact = compact_network(network)
    assert "convolution_op" not in vars(compact.get_layer("conv1"))
