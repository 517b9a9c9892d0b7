"""Gated network -> compact plain network that computes the same function.

At inference a gate multiplies unit k by m_k = E[pi_k], or by exactly 0 when
E[pi_k] is at most the threshold. `compact_network` removes what those zeros
make dead and folds everything else into ordinary weights:

- a pruned unit is a *constant* channel from the gate on: 0 right after the
  gate, but beta - gamma * mean / sqrt(var + eps) after a batch-norm, then
  ReLU of that, and so on (SPEC). Constants are pushed through the chain and
  folded into the bias of the next conv/dense layer. After a zero-padded
  (SAME) convolution the contribution of a constant channel is smaller at
  the image borders, so such a conv keeps a tiny extra kernel that
  reproduces it exactly (`ConstantInputConv2D`);
- a surviving unit carries the scale m_k, folded into the input rows of the
  next conv/dense kernel or into the next batch-norm (ReLU, max-pooling,
  flatten and dropout commute with a positive per-channel scale);
- a conv/dense output that every consumer ignores (its gate pruned it, or
  the flatten gate pruned all its positions) is removed from the kernel and
  the bias that produce it.

No approximation is made: the compact network computes the gated network's
inference function up to float rounding. Supported networks are the chains
of the zoo (channels-last Conv2D, Dense, BatchNormalization, pooling,
Flatten, ReLU, dropout and gate layers); anything else raises.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from anpvs_tf.gates import BetaBernoulliGate

_IDENTITY_AT_INFERENCE = (
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.Identity,
    keras.layers.SpatialDropout2D,
)
_POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
)
_LINEAR = (keras.layers.Conv2D, keras.layers.Dense)


@keras.saving.register_keras_serializable(package="anpvs_tf")
class ConstantInputConv2D(keras.layers.Conv2D):
    """Conv2D plus the exact contribution of constant input channels.

    A pruned channel followed by batch-norm feeds the next convolution a
    constant c. With zero padding that constant is only seen inside the
    image, so its contribution varies at the borders and is no bias. It
    equals conv(ones, constant_kernel) with constant_kernel =
    sum_k c_k * kernel[:, :, k, :]: one extra input channel's worth of
    weights instead of the pruned channels.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.constant_kernel = self.add_weight(
            name="constant_kernel",
            shape=(*self.kernel_size, 1, self.filters),
            initializer="zeros",
        )

    # Conv2D saves only its kernel and bias; save every weight.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def call(self, inputs):
        outputs = super().call(inputs)
        ones = ops.ones((1, *inputs.shape[1:3], 1), dtype=inputs.dtype)
        offset = ops.conv(
            ones,
            ops.cast(self.constant_kernel, inputs.dtype),
            strides=self.strides,
            padding=self.padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )
        return outputs + offset


@keras.saving.register_keras_serializable(package="anpvs_tf")
class KeepFeatures(keras.layers.Layer):
    """Keeps the given features of flat inputs (a gather on the last axis).

    Follows a Flatten whose gate pruned single features: the features of a
    surviving conv channel that the gate removed are dropped here rather
    than multiplied by zero rows of the next kernel.
    """

    def __init__(self, indices, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, inputs):
        return ops.take(inputs, self.indices, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.indices))

    def get_config(self):
        return {**super().get_config(), "indices": self.indices}


@dataclasses.dataclass
class _Channels:
    """What the inference network carries on the last axis of one tensor.

    removed[k]: channel k no longer depends on the input; it equals
    constant[k] everywhere. Otherwise it equals scale[k] times what the
    compact network computes for it.
    """

    removed: np.ndarray
    constant: np.ndarray
    scale: np.ndarray

    @classmethod
    def fresh(cls, width):
        return cls(
            removed=np.zeros(width, dtype=bool),
            constant=np.zeros(width),
            scale=np.ones(width),
        )

    @property
    def is_plain(self):
        return not self.removed.any() and np.all(self.scale == 1.0)

    def tiled(self, positions):
        # NHWC flatten order: feature (h * W + w) * C + c is channel c.
        return _Channels(
            np.tile(self.removed, positions),
            np.tile(self.constant, positions),
            np.tile(self.scale, positions),
        )


def _chain(network):
    """The layers from the input to the logits, checked to be a chain."""
    chain = []
    previous = None
    for layer in network.layers:
        if isinstance(layer, keras.layers.InputLayer):
            if previous is not None:
                raise ValueError("Only single-input networks can be compacted.")
            previous = layer.output
            continue
        if previous is None or layer.input is not previous:
            raise ValueError(
                "Only sequential chains can be compacted; layer "
                f"'{layer.name}' does not consume the previous layer's output."
            )
        chain.append(layer)
        previous = layer.output
    logits = network.outputs[0]
    if isinstance(network.output, dict):
        logits = network.output["logits"]
    if previous is not logits:
        raise ValueError("The last layer of the chain must produce the logits.")
    return chain


def _check_channels_last(layer):
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        raise ValueError(f"Layer '{layer.name}' must be channels_last.")


def _is_plain_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        return (
            layer.max_value is None
            and layer.negative_slope == 0
            and layer.threshold == 0
        )
    return isinstance(layer, keras.layers.Activation) and (
        layer.activation is keras.activations.relu
    )


def _is_channelwise(layer):
    """Layers that map channel k to channel k and have no weights to cut."""
    return isinstance(
        layer,
        (BetaBernoulliGate, keras.layers.BatchNormalization)
        + _POOLING + _IDENTITY_AT_INFERENCE,
    ) or _is_plain_relu(layer)


def _batch_norm_arrays(layer):
    """gamma, beta, mean, variance of a last-axis batch-norm, as float64."""
    rank = len(layer.input.shape)
    if layer.axis not in (-1, rank - 1):
        raise ValueError(
            f"BatchNormalization '{layer.name}' must normalise the last axis."
        )
    width = layer.input.shape[-1]
    gamma = (
        keras.ops.convert_to_numpy(layer.gamma) if layer.scale
        else np.ones(width)
    )
    beta = (
        keras.ops.convert_to_numpy(layer.beta) if layer.center
        else np.zeros(width)
    )
    mean = keras.ops.convert_to_numpy(layer.moving_mean)
    variance = keras.ops.convert_to_numpy(layer.moving_variance)
    return [np.asarray(a, dtype=np.float64) for a in
            (gamma, beta, mean, variance)]


def _propagate(layer, channels):
    """The channels after `layer`, given the channels before it."""
    if isinstance(layer, BetaBernoulliGate):
        mask = np.asarray(
            keras.ops.convert_to_numpy(layer.inference_mask()),
            dtype=np.float64,
        )
        pruned = mask == 0
        return _Channels(
            removed=channels.removed | pruned,
            constant=np.where(pruned, 0.0, channels.constant * mask),
            scale=np.where(pruned, 1.0, channels.scale * mask),
        )
    if isinstance(layer, _LINEAR):
        width = layer.filters if isinstance(layer, keras.layers.Conv2D) \
            else layer.units
        return _Channels.fresh(width)
    if isinstance(layer, keras.layers.BatchNormalization):
        gamma, beta, mean, variance = _batch_norm_arrays(layer)
        normalised = gamma * (channels.constant - mean) / np.sqrt(
            variance + layer.epsilon
        ) + beta
        return _Channels(
            removed=channels.removed.copy(),
            constant=np.where(channels.removed, normalised, 0.0),
            scale=np.ones_like(channels.scale),  # absorbed by the new BN
        )
    if _is_plain_relu(layer):
        return _Channels(
            channels.removed.copy(),
            np.maximum(channels.constant, 0.0),
            channels.scale.copy(),
        )
    if isinstance(layer, keras.layers.Flatten):
        _check_channels_last(layer)
        positions = int(np.prod(layer.input.shape[1:-1]))
        return channels.tiled(positions)
    if isinstance(layer, _POOLING + _IDENTITY_AT_INFERENCE):
        _check_channels_last(layer)
        # Max and average of a constant are the constant; both commute with
        # a positive per-channel scale.
        return _Channels(
            channels.removed.copy(),
            channels.constant.copy(),
            channels.scale.copy(),
        )
    if channels.is_plain:
        # e.g. input normalisation before the first gate: copied as is.
        return _Channels.fresh(layer.output.shape[-1])
    raise ValueError(
        f"Cannot compact through layer '{layer.name}' of type "
        f"{type(layer).__name__}: it acts on pruned or scaled units."
    )


def _needed_inputs(layer, channels_in, needed_out):
    """Which channels of the layer's input the compact network must compute."""
    if isinstance(layer, _LINEAR):
        return ~channels_in.removed
    if isinstance(layer, keras.layers.Flatten):
        return needed_out.reshape(-1, layer.input.shape[-1]).any(axis=0)
    if _is_channelwise(layer):
        return needed_out
    # Any other layer is copied whole: it needs and produces every channel.
    if not needed_out.all():
        raise ValueError(
            f"Cannot compact layer '{layer.name}' of type "
            f"{type(layer).__name__}: units after it are pruned."
        )
    return np.ones(layer.input.shape[-1], dtype=bool)


def _linear_weights(layer, channels_in, keep_in, keep_out):
    """Sliced, scaled kernel and folded bias (+ border kernel) of a layer."""
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float64)
    bias = (
        np.asarray(keras.ops.convert_to_numpy(layer.bias), np.float64)
        if layer.use_bias else np.zeros(kernel.shape[-1])
    )
    constant = np.where(channels_in.removed, channels_in.constant, 0.0)
    # sum_k c_k * kernel[..., k, :]: what the constant inputs add per window.
    constant_kernel = np.tensordot(
        constant, kernel, axes=([0], [kernel.ndim - 2])
    )[..., keep_out]
    new_kernel = kernel[..., keep_in, :][..., keep_out]
    new_kernel = new_kernel * channels_in.scale[keep_in][:, None]
    new_bias = bias[keep_out]
    border_kernel = None
    if isinstance(layer, keras.layers.Dense):
        new_bias = new_bias + constant_kernel
    elif layer.padding == "valid" or not constant_kernel.any():
        new_bias = new_bias + constant_kernel.sum(axis=(0, 1))
    else:
        border_kernel = constant_kernel[:, :, None, :]
    return new_kernel, new_bias, border_kernel


def _compact_linear(layer, channels_in, keep_in, keep_out):
    if isinstance(layer, keras.layers.Conv2D):
        _check_channels_last(layer)
        if layer.groups != 1:
            raise ValueError(f"Grouped convolution '{layer.name}' is not "
                             "supported.")
    kernel, bias, border_kernel = _linear_weights(
        layer, channels_in, keep_in, keep_out
    )
    config = layer.get_config()
    # A bias-free conv needs one only if pruned constants fold into it.
    config["use_bias"] = layer.use_bias or bool(bias.any())
    width_key = "filters" if isinstance(layer, keras.layers.Conv2D) \
        else "units"
    config[width_key] = int(keep_out.sum())
    weights = [kernel, bias] if config["use_bias"] else [kernel]
    if border_kernel is None:
        new_layer = type(layer).from_config(config)
    else:
        if layer.activation is not keras.activations.linear:
            raise ValueError(
                f"Conv2D '{layer.name}' has a built-in activation and "
                "constant (pruned) inputs: unsupported."
            )
        new_layer = ConstantInputConv2D.from_config(config)
        weights.append(border_kernel)
    return new_layer, weights


def _compact_batch_norm(layer, channels_in, keep):
    gamma, beta, mean, variance = _batch_norm_arrays(layer)
    scale = channels_in.scale
    # BN(s x) = gamma s (x - mean / s) / sqrt(var + eps) + beta.
    config = layer.get_config()
    config.update(center=True, scale=True)
    weights = [
        (gamma * scale)[keep],
        beta[keep],
        (mean / scale)[keep],
        variance[keep],
    ]
    return type(layer).from_config(config), weights


def compact_network(network, name=None):
    """A plain Keras model, images -> logits, without gates or pruned units.

    Args:
        network: a gated (or plain) zoo network; its gates are read in
            inference mode (E[pi], thresholded).
        name: the new model's name (default: the network's, `_compact`).

    Returns:
        An uncompiled functional `keras.Model` whose layers keep the
        original names. Its logits equal `network(x, training=False)
        ["logits"]` up to float rounding.
    """
    chain = _chain(network)
    channels = [_Channels.fresh(network.inputs[0].shape[-1])]
    for layer in chain:
        channels.append(_propagate(layer, channels[-1]))
    # Backwards: the units each tensor must still carry.
    needed = [None] * len(channels)
    needed[-1] = np.ones(chain[-1].output.shape[-1], dtype=bool)
    for index in range(len(chain) - 1, -1, -1):
        needed[index] = _needed_inputs(
            chain[index], channels[index], needed[index + 1]
        )
    for index, layer in enumerate(chain):
        if isinstance(layer, _LINEAR) and not needed[index].any():
            raise ValueError(
                f"Every input of layer '{layer.name}' is pruned: the "
                "network's output no longer depends on its input."
            )
    inputs = keras.Input(
        shape=network.inputs[0].shape[1:],
        dtype=network.inputs[0].dtype,
        name=network.inputs[0].name,
    )
    x = inputs
    assignments = []
    for index, layer in enumerate(chain):
        if isinstance(layer, BetaBernoulliGate):
            continue
        keep_in, keep_out = needed[index], needed[index + 1]
        if isinstance(layer, _LINEAR):
            new_layer, weights = _compact_linear(
                layer, channels[index], keep_in, keep_out
            )
        elif isinstance(layer, keras.layers.BatchNormalization):
            new_layer, weights = _compact_batch_norm(
                layer, channels[index], keep_out
            )
        else:
            new_layer = type(layer).from_config(layer.get_config())
            weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
        x = new_layer(x)
        assignments.append((new_layer, weights))
        if isinstance(layer, keras.layers.Flatten):
            # The flat features of the kept channels, minus those the
            # flatten gate pruned.
            produced = np.tile(keep_in, int(np.prod(layer.input.shape[1:-1])))
            if not np.array_equal(produced, keep_out):
                x = KeepFeatures(
                    np.flatnonzero(keep_out[produced]),
                    name=f"{layer.name}_keep",
                )(x)
    for new_layer, weights in assignments:
        new_layer.set_weights([np.asarray(w, np.float32) for w in weights])
    if name is None:
        name = network.name.removesuffix("_gated") + "_compact"
    return keras.Model(inputs, x, name=name)
