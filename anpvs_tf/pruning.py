"""Gated network -> compact plain network that computes the same function.

At inference a gate multiplies unit k by m_k = E[pi_k], or by exactly 0
when E[pi_k] is at most the threshold. `compact_network` reads what every
channel carries from the shared analysis (anpvs_tf.channels, which also
states the rule for residual additions) and builds only the channels it
marks as carried, folding everything else into ordinary weights:

- a removed unit is a *constant* channel from the gate on: 0 right after
  the gate, a batch-norm's offset after it, and so on. Constants are folded
  into the bias of the next conv/dense layer. After a zero-padded (SAME)
  convolution the contribution of a constant channel is smaller at the
  image borders, so such a conv keeps a tiny extra kernel that reproduces
  it exactly (`ConstantInputConv2D`);
- a gate right after a conv/dense is folded into its output columns; the
  scale of any other gate goes into the input rows of the next conv/dense
  kernel or into the next batch-norm;
- a channel that no consumer needs is removed from the kernel and the bias
  that produce it;
- at an `Add`, a member that does not compute a kept channel of the sum
  (its gate pruned it) gets an exact zero channel (`KeepFeatures` with
  index -1), so each branch conv keeps only its own gate's channels.

No approximation is made: the compact network computes the gated network's
inference function up to float rounding, and has exactly the parameters
that complexity.count_complexity counts for the gated network. Anything
the analysis cannot reproduce exactly raises.
"""

import keras
import numpy as np
from keras import ops

from anpvs_tf import channels as graph_analysis


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
    """Picks features of the last axis by index; index -1 gives zeros.

    Follows a Flatten whose gate pruned single features: the features of a
    surviving conv channel that the gate removed are dropped here rather
    than multiplied by zero rows of the next kernel. Before an Add it
    places a branch's channels among the channels of the sum, with an
    exact zero where that branch's gate pruned a channel the sum keeps.
    """

    def __init__(self, indices, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def build(self, input_shape):
        # With zeros to place, a product with a one-hot matrix: exact for
        # finite inputs (x * 1 plus exact zeros) and, on CPU, several times
        # faster than a gather on the channel axis.
        self.placement = None
        if min(self.indices, default=0) < 0:
            self.placement = np.zeros((input_shape[-1], len(self.indices)))
            for column, index in enumerate(self.indices):
                if index >= 0:
                    self.placement[index, column] = 1.0

    def call(self, inputs):
        if self.placement is None:
            return ops.take(inputs, self.indices, axis=-1)
        return ops.matmul(inputs, ops.cast(self.placement, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.indices))

    def get_config(self):
        return {**super().get_config(), "indices": self.indices}


def _float64(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)


def _linear_weights(layer, analysis):
    """Sliced, scaled kernel and folded bias (+ border kernel) of a layer."""
    kernel = _float64(layer.kernel)
    bias = (
        _float64(layer.bias) if layer.use_bias
        else np.zeros(kernel.shape[-1])
    )
    channels_in = analysis.state(layer.input)
    keep_in = analysis.carried(layer.input)
    keep_out = analysis.carried(layer.output)
    out_scale = analysis.output_scale(layer)[keep_out]
    constant = np.where(channels_in.removed, channels_in.constant, 0.0)
    # sum_k c_k * kernel[..., k, :]: what the constant inputs add per window.
    constant_kernel = np.tensordot(
        constant, kernel, axes=([0], [kernel.ndim - 2])
    )[..., keep_out] * out_scale
    # A removed channel that is still computed (another branch needs it)
    # enters through zero rows: its constant is folded instead.
    row_scale = np.where(channels_in.removed, 0.0, channels_in.scale)
    new_kernel = kernel[..., keep_in, :][..., keep_out]
    new_kernel = new_kernel * row_scale[keep_in][:, None] * out_scale
    new_bias = bias[keep_out] * out_scale
    form = analysis.constant_form(layer)
    border_kernel = None
    if form == "border":
        border_kernel = constant_kernel[:, :, None, :]
    elif form == "bias":
        new_bias = new_bias + (
            constant_kernel if isinstance(layer, keras.layers.Dense)
            else constant_kernel.sum(axis=(0, 1))
        )
    return new_kernel, new_bias, border_kernel


def _compact_linear(layer, analysis):
    kernel, bias, border_kernel = _linear_weights(layer, analysis)
    config = layer.get_config()
    # A bias-free layer needs one only if pruned constants fold into it.
    config["use_bias"] = analysis.has_bias(layer)
    width_key = "filters" if isinstance(layer, keras.layers.Conv2D) \
        else "units"
    config[width_key] = int(analysis.carried(layer.output).sum())
    weights = [kernel, bias] if config["use_bias"] else [kernel]
    if border_kernel is None:
        return type(layer).from_config(config), weights
    if layer.activation is not keras.activations.linear:
        raise ValueError(
            f"Conv2D '{layer.name}' has a built-in activation and "
            "constant (pruned) inputs: unsupported."
        )
    return ConstantInputConv2D.from_config(config), weights + [border_kernel]


def _compact_batch_norm(layer, analysis):
    gamma, beta, mean, variance = graph_analysis.batch_norm_arrays(layer)
    scale = analysis.state(layer.input).scale
    keep = analysis.carried(layer.output)
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


def _copy(layer, kind, analysis):
    """A weightless or untouched layer, after checking no unit is cut."""
    if kind in (graph_analysis.ELEMENTWISE, graph_analysis.OPAQUE) and not (
        analysis.carried(layer.output).all()
        and analysis.carried(layer.input).all()
    ):
        raise ValueError(
            f"Cannot compact layer '{layer.name}' of type "
            f"{type(layer).__name__}: units after it are pruned."
        )
    weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
    return type(layer).from_config(layer.get_config()), weights


def check_compactable(analysis):
    """Raises what makes the analysed network impossible to compact."""
    if analysis.obstacles:
        raise ValueError(analysis.obstacles[0])
    for step in analysis.steps:
        if step.kind != graph_analysis.LINEAR:
            continue
        layer = step.layer
        computed = analysis.carried(layer.input)
        if not (computed & analysis.state(layer.input).alive).any():
            raise ValueError(
                f"Every input of layer '{layer.name}' is pruned: the "
                "network's output no longer depends on its input."
            )


def connect(new_layer, step, analysis, tensors):
    """Calls the rebuilt layer of `step` on the rebuilt inputs (`tensors`:
    id of an original tensor -> its rebuilt one) and returns its output:
    an Add's members placed among the sum's carried channels, a flatten's
    features cut to those the network after it uses."""
    layer = step.layer
    if step.kind == graph_analysis.ADD:
        members = []
        for index, member in enumerate(step.inputs):
            y = tensors[id(member)]
            indices = analysis.placement(member, step.output)
            if indices is not None:
                y = KeepFeatures(indices, name=f"{layer.name}_input{index}")(y)
            members.append(y)
        return new_layer(members)
    x = new_layer(tensors[id(step.inputs[0])])
    if step.kind == graph_analysis.FLATTEN:
        selection = analysis.flatten_selection(layer)
        if selection is not None:
            x = KeepFeatures(selection, name=f"{layer.name}_keep")(x)
    return x


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
    analysis = graph_analysis.analyse(network)
    check_compactable(analysis)
    source = analysis.input
    inputs = keras.Input(
        shape=source.shape[1:], dtype=source.dtype, name=source.name
    )
    compact = {id(source): inputs}
    assignments = []
    for step in analysis.steps:
        layer = step.layer
        x = compact[id(step.inputs[0])]
        if step.kind == graph_analysis.GATE:
            compact[id(step.output)] = x
            continue
        if step.kind == graph_analysis.LINEAR:
            new_layer, weights = _compact_linear(layer, analysis)
        elif step.kind == graph_analysis.BATCH_NORM:
            new_layer, weights = _compact_batch_norm(layer, analysis)
        else:
            new_layer, weights = _copy(layer, step.kind, analysis)
        compact[id(step.output)] = connect(new_layer, step, analysis,
                                           compact)
        assignments.append((new_layer, weights))
    for new_layer, weights in assignments:
        new_layer.set_weights([np.asarray(w, np.float32) for w in weights])
    if name is None:
        name = network.name.removesuffix("_gated") + "_compact"
    return keras.Model(inputs, compact[id(analysis.logits)], name=name)
