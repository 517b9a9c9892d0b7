"""What every channel of every tensor of a gated network carries at inference.

One analysis serves both the complexity counts (complexity.py) and the
compaction into a plain network (pruning.py), so what is counted is what is
built. At inference a gate multiplies unit k by m_k = E[pi_k], or by exactly
0 when E[pi_k] is at most the threshold (SPEC). Forwards, in topological
order, each tensor gets a `Channels` state:

- removed[k]: the channel no longer depends on the input; it equals
  constant[k] everywhere (0 after its gate, beta - gamma * mean /
  sqrt(var + eps) after a batch-norm, ReLU of that, ...);
- otherwise the gated value is scale[k] times what the compact network
  computes for it. A gate right after a conv/dense layer (its only
  consumer, no built-in activation) is folded into that layer's output
  columns (`ChannelGraph.folded`), so its channels leave with scale 1;
  other gates pass their scale on to the next conv/dense rows or
  batch-norm (ReLU, pooling, flatten and dropout commute with it).

Channel-wise layers (gates, batch-norm, activations, pooling, dropout) keep
channel k in place: a tensor and everything computed from it channel-wise
form one *channel space*, whose root is a conv/dense, flatten, Add or the
input. Backwards, each space gets the channels the compact network must
carry (`ChannelGraph.carried`): the union of what its consumers need (a
conv/dense needs its live inputs, a flatten the channels of any needed
position, the logits everything).

Residual additions (the paper-consistent rule). The channels joined by an
`Add` form one group in the output's space: a joined channel is kept if
any member keeps it alive, and is removed only when every member removed
it (its constant is then the sum of theirs). Each member is still charged
for, and computes, only the channels its own gate keeps, as the paper plugs
each gate's active units into its counts; a member whose gate pruned a
kept channel contributes its exact zero, which the compact network writes
as a zero channel without weights (pruning.KeepFeatures with index -1).
The alive members of a channel must agree on its scale (they do when the
gates are folded into the convs before the Add) and removed members must
be zero there; anything else is an obstacle to compaction.

Supported: single-input graphs of channels-last Conv2D, Dense, Flatten,
BatchNormalization, pooling, activation, dropout, gate and Add layers (the
zoo: LeNet-5-Caffe, VGG-16, PreAct ResNet-18). Other single-input layers
pass only where nothing is pruned or scaled; anything else raises.
"""

import dataclasses

import keras
import numpy as np

from anpvs_tf.gates import BetaBernoulliGate

GATE = "gate"
LINEAR = "linear"
BATCH_NORM = "batch_norm"
# Channel-wise, commute with a positive scale, map a constant to a constant.
HOMOGENEOUS = "homogeneous"
# Channel-wise, exact only on channels that are neither removed nor scaled.
ELEMENTWISE = "elementwise"
FLATTEN = "flatten"
ADD = "add"
# Any other single-input layer: exact only where nothing is pruned before.
OPAQUE = "opaque"
CHANNELWISE = (GATE, BATCH_NORM, HOMOGENEOUS, ELEMENTWISE)

_IDENTITY_AT_INFERENCE = (
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.Identity,
    keras.layers.SpatialDropout2D,
)
WINDOW_POOLING = (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)
GLOBAL_POOLING = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)
_ELEMENTWISE = (
    keras.layers.Activation,
    keras.layers.LeakyReLU,
    keras.layers.ReLU,
    keras.layers.Rescaling,
)


@dataclasses.dataclass
class Channels:
    """The inference state of the last axis of one tensor (see module)."""

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

    @property
    def alive(self):
        return ~self.removed

    def copy(self):
        return Channels(
            self.removed.copy(), self.constant.copy(), self.scale.copy()
        )


@dataclasses.dataclass(frozen=True)
class Step:
    """One layer of the graph: its kind and its input/output tensors."""

    layer: keras.layers.Layer
    kind: str
    inputs: tuple
    output: object


def static_shape(tensor, layer):
    shape = tuple(tensor.shape)
    if any(dim is None for dim in shape[1:]):
        raise ValueError(
            "The channel analysis needs static feature shapes; layer "
            f"'{layer.name}' has {shape}."
        )
    return shape


def positions(tensor, layer):
    """Spatial positions per example: H * W of NHWC, 1 of flat features."""
    return int(np.prod(static_shape(tensor, layer)[1:-1], dtype=np.int64))


def _check_channels_last(layer):
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        raise ValueError(
            f"Only channels_last layers are supported. Received: "
            f"'{layer.name}' with data_format={data_format!r}"
        )


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


def layer_kind(layer):
    """The role of a layer in the analysis; checks what it assumes."""
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"Nested models are not supported. Received: '{layer.name}'"
        )
    if isinstance(layer, BetaBernoulliGate):
        return GATE
    if isinstance(layer, keras.layers.Add):
        return ADD
    if isinstance(layer.input, (list, tuple)):
        raise ValueError(
            f"Cannot count or compact layer '{layer.name}' of type "
            f"{type(layer).__name__} (Add is the only merge supported)."
        )
    if isinstance(layer, keras.layers.Conv2D):
        _check_channels_last(layer)
        if layer.groups != 1:
            raise ValueError(
                f"Grouped convolutions are not supported: '{layer.name}'"
            )
        return LINEAR
    if isinstance(layer, keras.layers.Dense):
        if len(layer.input.shape) != 2:
            raise ValueError(
                f"Dense layer '{layer.name}' must act on flat features. "
                f"Received input shape {layer.input.shape}"
            )
        return LINEAR
    if isinstance(layer, keras.layers.BatchNormalization):
        if layer.axis not in (-1, len(layer.input.shape) - 1):
            raise ValueError(
                "BatchNormalization must normalise the last axis. "
                f"Received: '{layer.name}' with axis={layer.axis}"
            )
        return BATCH_NORM
    if isinstance(layer, keras.layers.Flatten):
        _check_channels_last(layer)
        return FLATTEN
    if isinstance(layer, WINDOW_POOLING + GLOBAL_POOLING):
        _check_channels_last(layer)
        return HOMOGENEOUS
    if isinstance(layer, _IDENTITY_AT_INFERENCE) or _is_plain_relu(layer):
        return HOMOGENEOUS
    if isinstance(layer, _ELEMENTWISE):
        return ELEMENTWISE
    return OPAQUE


def batch_norm_arrays(layer):
    """gamma, beta, mean, variance of a last-axis batch-norm, as float64."""
    width = layer.input.shape[-1]

    def read(variable, enabled, default):
        if not enabled:
            return np.full(width, default)
        return keras.ops.convert_to_numpy(variable)

    arrays = (
        read(layer.gamma, layer.scale, 1.0),
        read(layer.beta, layer.center, 0.0),
        keras.ops.convert_to_numpy(layer.moving_mean),
        keras.ops.convert_to_numpy(layer.moving_variance),
    )
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def inference_masks(network):
    """{gate name: float64 [units]}: E[pi] thresholded, 0 = pruned."""
    return {
        layer.name: np.asarray(
            keras.ops.convert_to_numpy(layer.inference_mask()), np.float64
        )
        for layer in network.layers
        if isinstance(layer, BetaBernoulliGate)
    }


def logits_of(network):
    if isinstance(network.output, dict):
        return network.output["logits"]
    return network.outputs[0]


class ChannelGraph:
    """The per-tensor channel states and carried channels of a network.

    Attributes:
        steps: the layers in topological order, as `Step`s.
        input: the network's (single) input tensor.
        logits: the output the analysis keeps (the logits of a zoo network).
        folded: {conv/dense name: gate mask folded into its output columns}.
        obstacles: why the network cannot be compacted exactly (empty when
            it can); counting ignores them.
    """

    def __init__(self, network, masks):
        self.steps = []
        self.folded = {}
        self.obstacles = []
        self.input = None
        self.logits = logits_of(network)
        self._state = {}
        self._root = {}
        self._carried = {}
        self._producer = {}
        self._consumers = {}
        for layer in network.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            inputs = layer.input
            for tensor in (
                inputs if isinstance(inputs, (list, tuple)) else [inputs]
            ):
                self._consumers[id(tensor)] = (
                    self._consumers.get(id(tensor), 0) + 1
                )
        for layer in network.layers:
            self._forward(layer, masks)
        if not self.state(self.logits).is_plain:
            self.obstacles.append(
                "The logits are gated: the compact network has no gate to "
                "reproduce them."
            )
        for step in reversed(self.steps):
            self._backward(step)

    # === Queries ===

    def state(self, tensor):
        return self._state[id(tensor)]

    def carried(self, tensor):
        """bool [width]: the channels the compact network computes."""
        root = self._root[id(tensor)]
        if root not in self._carried:
            return np.zeros(self.state(tensor).removed.shape, dtype=bool)
        return self._carried[root]

    def constant_form(self, layer):
        """How a conv/dense takes in its removed non-zero input constants.

        "none": there are none; "bias": they add a constant to every
        output (dense, VALID or 1x1 convs); "border": a zero-padded conv
        sees them only inside the image, so their contribution varies at
        the borders and needs its own small kernel.
        """
        channels = self.state(layer.input)
        if not np.any(channels.constant[channels.removed]):
            return "none"
        if isinstance(layer, keras.layers.Dense) or layer.padding == "valid":
            return "bias"
        if all(size == 1 for size in layer.kernel_size):
            return "bias"  # a 1x1 kernel never reaches the padding
        return "border"

    def has_bias(self, layer):
        """Whether the compact form of a conv/dense layer has a bias."""
        return layer.use_bias or self.constant_form(layer) == "bias"

    def output_scale(self, layer):
        """The gate mask folded into a conv/dense's outputs (or ones)."""
        width = self.state(layer.output).scale.shape[0]
        return self.folded.get(layer.name, np.ones(width))

    def placement(self, member, total):
        """Where an `Add` member's computed channels go among the sum's:
        KeepFeatures indices (-1: an exact zero, the member's gate pruned
        a channel the sum keeps), or None when they already line up."""
        computed = self.carried(member)
        usable = computed & self.state(member).alive
        position = np.cumsum(computed) - 1
        kept = np.flatnonzero(self.carried(total))
        indices = np.where(usable[kept], position[kept], -1)
        if indices.size == computed.sum() and np.array_equal(
            indices, np.arange(indices.size)
        ):
            return None
        return indices

    def flatten_selection(self, layer):
        """Which of a flatten's features (of its carried channels) the
        network after it uses: indices, or None for all of them (the
        features its own gate pruned are dropped)."""
        count = positions(layer.input, layer)
        produced = np.tile(self.carried(layer.input), count)
        keep_out = self.carried(layer.output)
        if np.array_equal(produced, keep_out):
            return None
        return np.flatnonzero(keep_out[produced])

    # === Forward: channel states ===

    def _set(self, tensor, channels, root):
        self._state[id(tensor)] = channels
        self._root[id(tensor)] = root

    def _seen(self, tensor, layer):
        if id(tensor) not in self._state:
            raise ValueError(
                f"Layer '{layer.name}' consumes a tensor this analysis has "
                "not seen (nested models are not supported)."
            )
        return self._state[id(tensor)]

    def _forward(self, layer, masks):
        if isinstance(layer, keras.layers.InputLayer):
            if self.input is not None:
                raise ValueError("Only single-input networks are supported.")
            self.input = layer.output
            width = static_shape(layer.output, layer)[-1]
            self._set(layer.output, Channels.fresh(width), id(layer.output))
            return
        kind = layer_kind(layer)
        inputs = tuple(layer.input) if kind == ADD else (layer.input,)
        states = [self._seen(tensor, layer) for tensor in inputs]
        self.steps.append(Step(layer, kind, inputs, layer.output))
        self._producer[id(layer.output)] = (layer, kind)
        root = self._root[id(inputs[0])]
        channels = states[0]
        if kind == GATE:
            out = self._gate(layer, channels, masks[layer.name])
        elif kind == LINEAR:
            out, root = Channels.fresh(layer.output.shape[-1]), None
        elif kind == BATCH_NORM:
            gamma, beta, mean, variance = batch_norm_arrays(layer)
            normalised = gamma * (channels.constant - mean) / np.sqrt(
                variance + layer.epsilon
            ) + beta
            out = Channels(
                removed=channels.removed.copy(),
                constant=np.where(channels.removed, normalised, 0.0),
                scale=np.ones_like(channels.scale),  # into the new gamma
            )
        elif kind == HOMOGENEOUS:
            out = channels.copy()
            if _is_plain_relu(layer):
                out.constant = np.maximum(out.constant, 0.0)
            # Max and average of a constant are the constant.
        elif kind == ELEMENTWISE:
            out = channels.copy()
            if not channels.is_plain:
                self.obstacles.append(
                    f"Cannot compact through layer '{layer.name}' of type "
                    f"{type(layer).__name__}: it acts on pruned or scaled "
                    "units."
                )
        elif kind == FLATTEN:
            count = positions(layer.input, layer)
            # NHWC flatten order: feature (h * W + w) * C + c is channel c.
            out = Channels(
                np.tile(channels.removed, count),
                np.tile(channels.constant, count),
                np.tile(channels.scale, count),
            )
            root = None
        elif kind == ADD:
            out, root = self._add(layer, states), None
        else:
            if not channels.is_plain:
                self.obstacles.append(
                    f"Cannot compact through layer '{layer.name}' of type "
                    f"{type(layer).__name__}: it acts on pruned or scaled "
                    "units."
                )
            out, root = Channels.fresh(layer.output.shape[-1]), None
        self._set(layer.output, out, id(layer.output) if root is None
                  else root)

    def _gate(self, layer, channels, mask):
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != channels.removed.shape:
            raise ValueError(
                f"Gate '{layer.name}' has {mask.shape[0]} units but its "
                f"input has {channels.removed.shape[0]} features."
            )
        producer, kind = self._producer.get(id(layer.input), (None, None))
        if (
            kind == LINEAR
            and self._consumers[id(layer.input)] == 1
            and producer.activation is keras.activations.linear
            and producer.name not in self.folded
        ):
            self.folded[producer.name] = mask
            mask_scale = np.ones_like(mask)
        else:
            mask_scale = mask
        pruned = mask == 0
        return Channels(
            removed=channels.removed | pruned,
            constant=np.where(pruned, 0.0, channels.constant * mask),
            scale=np.where(pruned, 1.0, channels.scale * mask_scale),
        )

    def _add(self, layer, states):
        removed = np.logical_and.reduce([s.removed for s in states])
        constant = np.where(removed, sum(s.constant for s in states), 0.0)
        scale = np.ones_like(constant)
        for k in np.flatnonzero(~removed):
            scales = {s.scale[k] for s in states if not s.removed[k]}
            offsets = [s.constant[k] for s in states if s.removed[k]]
            if len(scales) > 1 or any(offsets):
                self.obstacles.append(
                    f"Cannot compact the addition '{layer.name}': its "
                    f"inputs disagree on the scale of channel {k} or add "
                    "a pruned non-zero constant to it."
                )
                break
            scale[k] = scales.pop()
        return Channels(removed, constant, scale)

    # === Backward: carried channels ===

    def _need(self, tensor, channels):
        root = self._root[id(tensor)]
        carried = self._carried.get(root)
        if carried is None:
            carried = np.zeros(self.state(tensor).removed.shape, dtype=bool)
        self._carried[root] = carried | channels

    def _backward(self, step):
        output = step.output
        if output is self.logits:
            self._need(output, np.ones_like(self.state(output).removed))
        if step.kind in CHANNELWISE:
            return  # same space as its input
        if step.kind == LINEAR:
            self._need(step.inputs[0], self.state(step.inputs[0]).alive)
        elif step.kind == FLATTEN:
            width = step.inputs[0].shape[-1]
            self._need(
                step.inputs[0],
                self.carried(output).reshape(-1, width).any(axis=0),
            )
        elif step.kind == ADD:
            for tensor in step.inputs:
                self._need(
                    tensor, self.carried(output) & self.state(tensor).alive
                )
        else:
            self._need(
                step.inputs[0], np.ones_like(self.state(step.inputs[0])
                                             .removed)
            )


def analyse(network, masks=None):
    """The `ChannelGraph` of `network` with the given gate masks.

    Args:
        network: a functional Keras network (gated or plain).
        masks: {gate name: float [units]}, 0 for a pruned unit and the
            inference scale otherwise; None reads every gate's
            `inference_mask()`.
    """
    return ChannelGraph(network, inference_masks(network) if masks is None
                        else masks)
