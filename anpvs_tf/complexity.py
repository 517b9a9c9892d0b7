"""FLOPs, memory and parameter counts of the full and the pruned network.

These are the complexity columns of the paper's table (SPEC "Evaluation"):
FLOPs speed-up, memory % and unit sparsity, plus the true parameter count of
the physically pruned network and the weight sparsity it implies.

Pruning is read from the gates, so no pruned model has to be built: the
network's layers are walked in order while a boolean "alive" array follows
the last axis of the current tensor. A conv or dense layer starts a new
all-alive array for its outputs; a gate ANDs its active units into the
current array *in place*, so it shrinks the output width of the conv/dense
that produced it even though it comes later; elementwise layers (ReLU, BN,
dropout, pooling) pass the same array object on. Each layer keeps references
to its input and output arrays and the formulas are evaluated only at the
end, when every gate has been applied.

Supported networks are single-input graphs of channels-last Conv2D, Dense,
pooling, Flatten, BatchNormalization, activation, dropout, gate and Add
layers, which covers the zoo (LeNet-5-Caffe, VGG-16, ResNet-18). Anything
else raises, rather than be silently miscounted.
"""

import dataclasses

import keras
import numpy as np

from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.pruning import KeepFeatures

# Layers that act on each element (or each channel) independently: they
# neither change the last axis nor cost anything in the paper's counts, so
# they share the alive array of their input.
_ELEMENTWISE_LAYERS = (
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.Identity,
    keras.layers.LeakyReLU,
    keras.layers.ReLU,
    keras.layers.Rescaling,
    keras.layers.SpatialDropout2D,
)
_WINDOW_POOLING_LAYERS = (
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
)
_GLOBAL_POOLING_LAYERS = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)


@dataclasses.dataclass(frozen=True)
class Complexity:
    """FLOPs, memory (kernel + output feature map) and parameter count."""

    flops: int
    memory: int
    params: int


@dataclasses.dataclass(frozen=True)
class _Record:
    """A costed layer and the alive arrays of its input and output.

    The arrays are shared, not copied: gates applied later in the walk must
    still change what this layer is charged for.
    """

    layer: keras.layers.Layer
    inputs: np.ndarray
    outputs: np.ndarray


def _static_shape(tensor, layer):
    shape = tuple(tensor.shape)
    if any(dim is None for dim in shape[1:]):
        raise ValueError(
            "Complexity needs static feature shapes; layer "
            f"'{layer.name}' has {shape}."
        )
    return shape


def _check_channels_last(layer):
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        raise ValueError(
            f"Only channels_last layers are supported. Received: "
            f"{layer.name} with data_format={data_format!r}"
        )


def _gate_masks(network, active):
    """{gate name: bool [units]} from `active`, or read from the gates."""
    gates = [
        layer
        for layer in network.layers
        if isinstance(layer, BetaBernoulliGate)
    ]
    if isinstance(active, str):
        if active != "all":
            raise ValueError(
                f"`active` must be None, 'all' or a dict. Received: {active=}"
            )
        return {gate.name: np.ones(gate.units, dtype=bool) for gate in gates}
    active = dict(active or {})
    names = {gate.name for gate in gates}
    unknown = sorted(set(active) - names)
    if unknown:
        raise ValueError(
            f"`active` names no gate of the network: {unknown}. "
            f"Gates: {sorted(names)}"
        )
    masks = {}
    for gate in gates:
        if gate.name in active:
            mask = np.asarray(active[gate.name])
        else:
            # Gates left out of the dict keep their own learned state, so a
            # caller can override a few gates only.
            mask = keras.ops.convert_to_numpy(gate.active())
        if mask.shape != (gate.units,):
            raise ValueError(
                f"Active mask of gate '{gate.name}' must have shape "
                f"({gate.units},). Received: {mask.shape}"
            )
        masks[gate.name] = mask.astype(bool)
    return masks


def _walk(network, masks):
    """Follows the alive arrays through the graph; returns the records.

    Layers are visited in the functional graph's topological order with one
    alive array per tensor, so branches and residual additions work: an
    addition computes a channel that is alive in any of its inputs.
    """
    records = []
    alive_of = {}

    def alive_in(tensor, layer):
        if id(tensor) not in alive_of:
            raise ValueError(
                f"Layer '{layer.name}' consumes a tensor this walk has not "
                "seen (nested models are not supported)."
            )
        return alive_of[id(tensor)]

    for layer in network.layers:
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"Nested models are not supported. Received: '{layer.name}'"
            )
        if isinstance(layer, keras.layers.InputLayer):
            if alive_of:
                raise ValueError("Only single-input networks are supported.")
            shape = _static_shape(layer.output, layer)
            alive_of[id(layer.output)] = np.ones(shape[-1], dtype=bool)
            continue
        if isinstance(layer, keras.layers.Add):
            inputs = [alive_in(t, layer) for t in layer.input]
            alive = np.logical_or.reduce(inputs)
            records.append(_Record(layer, alive, alive))
            alive_of[id(layer.output)] = alive
            continue
        if isinstance(layer.input, (list, tuple)):
            raise ValueError(
                f"Cannot count layer '{layer.name}' of type "
                f"{type(layer).__name__} (Add is the only merge supported)."
            )
        alive = alive_in(layer.input, layer)
        if isinstance(layer, BetaBernoulliGate):
            mask = masks[layer.name]
            if mask.shape != alive.shape:
                raise ValueError(
                    f"Gate '{layer.name}' has {mask.shape[0]} units but its "
                    f"input has {alive.shape[0]} features."
                )
            # In place: the conv or dense layer that produced the tensor is
            # charged only for the units the gate keeps.
            np.logical_and(alive, mask, out=alive)
        elif isinstance(layer, keras.layers.Conv2D):
            _check_channels_last(layer)
            if layer.groups != 1:
                raise ValueError(
                    f"Grouped convolutions are not supported: '{layer.name}'"
                )
            outputs = np.ones(layer.filters, dtype=bool)
            records.append(_Record(layer, alive, outputs))
            alive = outputs
        elif isinstance(layer, keras.layers.Dense):
            if len(layer.input.shape) != 2:
                raise ValueError(
                    f"Dense layer '{layer.name}' must act on flat features. "
                    f"Received input shape {layer.input.shape}"
                )
            outputs = np.ones(layer.units, dtype=bool)
            records.append(_Record(layer, alive, outputs))
            alive = outputs
        elif isinstance(layer, keras.layers.Flatten):
            _check_channels_last(layer)
            positions = int(np.prod(_static_shape(layer.input, layer)[1:-1]))
            # NHWC flatten order: feature (h * W + w) * C + c holds channel
            # c, i.e. the channel array repeated once per position. A copy:
            # a gate on the flat features must not reach back to the conv.
            alive = np.tile(alive, positions)
        elif isinstance(layer, KeepFeatures):
            # A compact network's gather of the surviving flat features.
            alive = alive[layer.indices]
        elif isinstance(layer, _WINDOW_POOLING_LAYERS + _GLOBAL_POOLING_LAYERS):
            _check_channels_last(layer)
            records.append(_Record(layer, alive, alive))
        elif isinstance(layer, keras.layers.BatchNormalization):
            rank = len(layer.input.shape)
            if layer.axis not in (-1, rank - 1):
                raise ValueError(
                    "BatchNormalization must normalise the last axis. "
                    f"Received: '{layer.name}' with axis={layer.axis}"
                )
            records.append(_Record(layer, alive, alive))
        elif not isinstance(layer, _ELEMENTWISE_LAYERS):
            raise ValueError(
                f"Cannot count layer '{layer.name}' of type "
                f"{type(layer).__name__}."
            )
        alive_of[id(layer.output)] = alive
    return records


def _count_layer(record, is_classifier):
    """(flops, memory, params) of one costed layer, from the final arrays."""
    layer = record.layer
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w = layer.kernel_size
        kernel = kernel_h * kernel_w
        c_in = int(record.inputs.sum())
        c_out = int(record.outputs.sum())
        _, h_out, w_out, _ = _static_shape(layer.output, layer)
        # multiply-adds (2 k k c_in - 1), then bias and ReLU (SPEC); a conv
        # left with no input channels does no multiply-adds at all.
        per_output = max(2 * kernel * c_in - 1, 0) + 2
        flops = c_out * h_out * w_out * per_output
        memory = kernel * c_in * (h_out * w_out + c_out)
        params = kernel * c_in * c_out + (c_out if layer.use_bias else 0)
        return flops, memory, params
    if isinstance(layer, keras.layers.Dense):
        n_in = int(record.inputs.sum())
        n_out = int(record.outputs.sum())
        # The classifier's logits go through no ReLU.
        relu = 0 if is_classifier else n_out
        flops = max(2 * n_in - 1, 0) * n_out + n_out + relu
        memory = n_in * n_out + n_out
        params = n_in * n_out + (n_out if layer.use_bias else 0)
        return flops, memory, params
    if isinstance(layer, _WINDOW_POOLING_LAYERS):
        pool_h, pool_w = layer.pool_size
        _, h_out, w_out, _ = _static_shape(layer.output, layer)
        channels = int(record.outputs.sum())
        return pool_h * pool_w * h_out * w_out * channels, 0, 0
    if isinstance(layer, _GLOBAL_POOLING_LAYERS):
        _, h_in, w_in, _ = _static_shape(layer.input, layer)
        channels = int(record.outputs.sum())
        return h_in * w_in * channels, 0, 0
    if isinstance(layer, keras.layers.Add):
        # One addition per output element (not in SPEC's list, which has
        # no residual networks).
        _, h_out, w_out, _ = _static_shape(layer.output, layer)
        return h_out * w_out * int(record.outputs.sum()), 0, 0
    if isinstance(layer, keras.layers.BatchNormalization):
        # gamma, beta, moving mean and variance: one of each per channel
        # (fewer when center/scale are off).
        per_channel = len(layer.weights)
        return 0, 0, per_channel * int(record.outputs.sum())
    raise AssertionError(f"uncounted layer {layer.name}")


def count_complexity(network, active=None):
    """FLOPs, memory and parameters of `network` after pruning its gates.

    Args:
        network: a functional Keras network, a sequential chain of layers.
        active: None to read every gate's `active()`; a dict
            {gate name: bool array [units]} to count a given keep pattern
            (gates left out read their own state); or "all" to count the
            full, unpruned network (gates ignored). An ungated network
            always counts as full.

    Returns:
        A `Complexity` of plain Python ints. Gate parameters are not
        counted: they vanish from the physically pruned network.
    """
    records = _walk(network, _gate_masks(network, active))
    dense_indices = [
        index
        for index, record in enumerate(records)
        if isinstance(record.layer, keras.layers.Dense)
    ]
    classifier = dense_indices[-1] if dense_indices else None
    flops = memory = params = 0
    for index, record in enumerate(records):
        layer_flops, layer_memory, layer_params = _count_layer(
            record, index == classifier
        )
        flops += layer_flops
        memory += layer_memory
        params += layer_params
    return Complexity(flops=flops, memory=memory, params=params)


def complexity_report(network, active=None):
    """The paper's complexity columns as a JSON-serialisable dict.

    Unit sparsity counts each gate's own active units (a flattened feature
    whose conv channel is pruned still counts as active at the flatten
    gate), as the paper does; FLOPs, memory and parameters count what the
    physically pruned network keeps. `active` is as in `count_complexity`.
    """
    masks = _gate_masks(network, active)
    pruned = count_complexity(network, active=masks)
    full = count_complexity(network, active="all")
    per_gate = {name: int(mask.sum()) for name, mask in masks.items()}
    gated_units = int(sum(mask.size for mask in masks.values()))
    active_units = int(sum(per_gate.values()))
    unit_sparsity = (
        100.0 * (1.0 - active_units / gated_units) if gated_units else 0.0
    )
    # A network pruned to nothing does no work: an infinite speed-up.
    speedup = full.flops / pruned.flops if pruned.flops else float("inf")
    return {
        "gated_units": gated_units,
        "active_units": active_units,
        "active_units_per_gate": per_gate,
        "unit_sparsity": float(unit_sparsity),
        "flops": pruned.flops,
        "flops_full": full.flops,
        "flops_speedup": float(speedup),
        "memory": pruned.memory,
        "memory_full": full.memory,
        "memory_pct": float(100.0 * pruned.memory / full.memory),
        "params": pruned.params,
        "params_full": full.params,
        "weight_sparsity": float(100.0 * (1.0 - pruned.params / full.params)),
    }
