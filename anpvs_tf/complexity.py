"""FLOPs, memory and parameter counts of the full and the pruned network.

These are the complexity columns of the paper's table (SPEC "Evaluation"):
FLOPs speed-up, memory % and unit sparsity, plus the true parameter count of
the physically pruned network and the weight sparsity it implies.

Pruning is read from the gates, so no pruned model has to be built: the
counts come from the channel analysis that compaction uses
(anpvs_tf.channels). Each conv/dense layer is charged for the channels the
compact network computes on its input and output, which plugs each gate's
active units into SPEC's formulas, and also drops a channel that no
consumer needs (e.g. one whose every flattened feature the flatten gate
pruned). Residual additions follow the analysis's group rule: the sum
keeps a channel that any branch keeps, each branch conv only its own.

The parameter count is that of `pruning.compact_network`'s model: it also
counts the bias a bias-free layer gains when pruned constants fold into it
and the border kernel of a zero-padded conv with constant inputs (for
batch-norms with both gamma and beta, as in the zoo). Supported networks
are those of the analysis; anything else raises, rather than be silently
miscounted.
"""

import dataclasses

import keras
import numpy as np

from anpvs_tf import channels as graph_analysis
from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.pruning import ConstantInputConv2D
from anpvs_tf.pruning import KeepFeatures


@dataclasses.dataclass(frozen=True)
class Complexity:
    """FLOPs, memory (kernel + output feature map) and parameter count."""

    flops: int
    memory: int
    params: int


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


def _uncountable(layer):
    return ValueError(
        f"Cannot count layer '{layer.name}' of type {type(layer).__name__}."
    )


def _count_layer(step, analysis, is_classifier):
    """(flops, memory, params) of one layer, from the carried channels."""
    layer = step.layer
    carried_out = int(analysis.carried(step.output).sum())
    if step.kind == graph_analysis.OPAQUE:
        if isinstance(layer, KeepFeatures):
            return 0, 0, 0  # a compact network's gather
        raise _uncountable(layer)
    if step.kind == graph_analysis.LINEAR:
        c_in = int(analysis.carried(layer.input).sum())
        bias = carried_out if analysis.has_bias(layer) else 0
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w = layer.kernel_size
        kernel = kernel_h * kernel_w
        _, h_out, w_out, _ = graph_analysis.static_shape(layer.output, layer)
        # multiply-adds (2 k k c_in - 1), then bias and ReLU (SPEC); a conv
        # left with no input channels does no multiply-adds at all.
        per_output = max(2 * kernel * c_in - 1, 0) + 2
        flops = carried_out * h_out * w_out * per_output
        memory = kernel * c_in * (h_out * w_out + carried_out)
        params = kernel * c_in * carried_out + bias
        if isinstance(layer, ConstantInputConv2D) or (
            analysis.constant_form(layer) == "border"
        ):
            params += kernel * carried_out  # the border kernel
        return flops, memory, params
    if isinstance(layer, keras.layers.Dense):
        # The classifier's logits go through no ReLU.
        relu = 0 if is_classifier else carried_out
        flops = max(2 * c_in - 1, 0) * carried_out + carried_out + relu
        memory = c_in * carried_out + carried_out
        return flops, memory, c_in * carried_out + bias
    if isinstance(layer, graph_analysis.WINDOW_POOLING):
        pool_h, pool_w = layer.pool_size
        outputs = graph_analysis.positions(layer.output, layer)
        return pool_h * pool_w * outputs * carried_out, 0, 0
    if isinstance(layer, graph_analysis.GLOBAL_POOLING):
        inputs = graph_analysis.positions(layer.input, layer)
        return inputs * carried_out, 0, 0
    if step.kind == graph_analysis.ADD:
        # One addition per output element (not in SPEC's list, which has
        # no residual networks).
        outputs = graph_analysis.positions(layer.output, layer)
        return outputs * carried_out, 0, 0
    if step.kind == graph_analysis.BATCH_NORM:
        # gamma, beta, moving mean and variance: one of each per channel
        # (fewer when center/scale are off).
        return 0, 0, len(layer.weights) * carried_out
    return 0, 0, 0  # gates, activations, dropout, flatten: free


def count_complexity(network, active=None):
    """FLOPs, memory and parameters of `network` after pruning its gates.

    Args:
        network: a functional Keras network (chains and residual
            additions, see anpvs_tf.channels).
        active: None to read every gate's `active()`; a dict
            {gate name: bool array [units]} to count a given keep pattern
            (gates left out read their own state); or "all" to count the
            full, unpruned network (gates ignored). An ungated network
            always counts as full.

    Returns:
        A `Complexity` of plain Python ints. Gate parameters are not
        counted: they vanish from the physically pruned network.
    """
    masks = {
        name: mask.astype(np.float64)
        for name, mask in _gate_masks(network, active).items()
    }
    analysis = graph_analysis.analyse(network, masks)
    dense = [
        step.layer for step in analysis.steps
        if isinstance(step.layer, keras.layers.Dense)
    ]
    classifier = dense[-1] if dense else None
    flops = memory = params = 0
    for step in analysis.steps:
        layer_flops, layer_memory, layer_params = _count_layer(
            step, analysis, step.layer is classifier
        )
        flops += layer_flops
        memory += layer_memory
        params += layer_params
    return Complexity(flops=flops, memory=memory, params=params)


def unit_flops(network):
    """{gate name: FLOPs that pruning one of its units saves}, counted on
    the full network (the first unit: a gate's units cost the same).

    What a unit costs is more than its own layer's work: a conv channel
    also feeds every output of the next conv, so on LeNet-5-Caffe one
    conv1 unit costs about 200 times one hidden unit of fc1.
    """
    full = count_complexity(network, active="all").flops
    masks = _gate_masks(network, "all")
    costs = {}
    for name, mask in masks.items():
        one_off = mask.copy()
        one_off[0] = False
        costs[name] = full - count_complexity(
            network, active={**masks, name: one_off}).flops
    return costs


def flops_kl_weights(network, exponent):
    """{gate name: multiplier of its KL term}: (a unit's FLOPs / the mean
    over all gated units)^exponent, scaled so the multipliers average 1
    over units. The gate KL's total pressure stays that of beta; its share
    moves toward the units that cost the most, where the paper's equal
    weights prune the cheap fully connected units first and leave the
    convolutions, which hold most of the FLOPs. exponent 0: all 1;
    negative: the pressure moves to the cheap units, sparing the costly
    ones (capacity kept where FLOPs are already cut enough)."""
    costs = unit_flops(network)
    units = {
        layer.name: layer.units for layer in network.layers
        if isinstance(layer, BetaBernoulliGate)
    }
    raw = {name: float(cost) ** exponent for name, cost in costs.items()}
    mean = sum(raw[name] * units[name] for name in raw) / sum(units.values())
    return {name: value / mean for name, value in raw.items()}


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
