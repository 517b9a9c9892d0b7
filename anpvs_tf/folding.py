"""Inference-mode gates folded into the kernels next to them, for attacks.

A training attack runs 2 x steps passes (forward, backward to the input)
through the inference-mode network, whose gate masks stay constant for the
whole attack. Multiplying every activation map by its mask in every pass
made ANP-VS's attack 1.080x as slow as AT's on LeNet-5-Caffe
(bench/results/step_parts.md). A per-unit mask m can instead be folded
once per attack into a neighbouring kernel:

- into its producer's output columns, when the gate directly follows a
  conv/dense layer without activation and is the only layer on the way
  to the logits that reads it:
  (x W + b) * m = x (W * m) + b * m;
- into its consumers' input rows, when every layer reading the gate's
  output on the way to the logits is a conv/dense layer: (h * m) W =
  h (m[:, None] * W). (Layers that lead only to other outputs, e.g. the
  VS feature maps, do not matter: the attack uses the logits only.)

The folded network computes the same logits up to float rounding; gates
that fit neither rule keep multiplying. Only the attack's logits use it.
"""

import contextlib

import keras

from anpvs_tf.channels import logits_of
from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.gates import FrozenGate

_LINEAR = (keras.layers.Conv2D, keras.layers.Dense)


def _is_linear(layer):
    """A conv/dense layer without activation, called once (a folded
    kernel would change every call of a shared layer)."""
    return (isinstance(layer, _LINEAR)
            and layer.activation is keras.activations.linear
            and getattr(layer, "groups", 1) == 1
            and len(layer._inbound_nodes) == 1)


def _producer(tensor):
    return tensor._keras_history.operation


def _inputs(layer):
    inputs = layer.input
    return inputs if isinstance(inputs, (list, tuple)) else [inputs]


def _logits_layers(network):
    """ids of the layers the logits are computed from."""
    found, tensors = set(), [logits_of(network)]
    while tensors:
        layer = _producer(tensors.pop())
        if id(layer) in found or isinstance(layer, keras.layers.InputLayer):
            continue
        found.add(id(layer))
        tensors.extend(_inputs(layer))
    return found


def _consumers(network, on_path):
    """{id(tensor): [layers of `on_path` reading it]}."""
    consumers = {}
    for layer in network.layers:
        if id(layer) in on_path:
            for tensor in _inputs(layer):
                consumers.setdefault(id(tensor), []).append(layer)
    return consumers


def fold_plan(network):
    """[(gate, [(conv/dense layer, "columns" or "rows")])]: where each
    foldable gate's mask goes. Structural: it holds while the masks move."""
    on_path = _logits_layers(network)
    consumers = _consumers(network, on_path)
    plan = []
    for gate in network.layers:
        if not isinstance(gate, (BetaBernoulliGate, FrozenGate)):
            continue
        if id(gate) not in on_path:
            continue
        if len(gate._inbound_nodes) != 1:
            continue  # a shared gate: not worth the bookkeeping
        producer = _producer(gate.input)
        if _is_linear(producer) and consumers.get(id(gate.input)) == [gate]:
            plan.append((gate, [(producer, "columns")]))
            continue
        readers = consumers.get(id(gate.output), [])
        if readers and all(_is_linear(layer) for layer in readers):
            plan.append((gate, [(layer, "rows") for layer in readers]))
    return plan


def _mask(gate):
    if isinstance(gate, FrozenGate):
        return gate.scale
    return gate.inference_mask()


def folded_values(plan):
    """[(variable, folded value)] for keras.StatelessScope, from the
    current masks. Call it once per attack, outside its loop."""
    values = {}

    def scaled(variable, factor):
        _, value = values.get(id(variable), (variable, variable.value))
        values[id(variable)] = (variable, value * factor)

    for gate, targets in plan:
        mask = keras.ops.cast(_mask(gate), "float32")
        for layer, where in targets:
            if where == "columns":
                scaled(layer.kernel, mask)
                if layer.use_bias:
                    scaled(layer.bias, mask)
            else:
                scaled(layer.kernel, keras.ops.expand_dims(mask, -1))
    return list(values.values())


def folded_scope(plan):
    """A context to call the network in with the gates of `plan` folded
    into their kernels, the masks read now (once per attack); enter it
    around every inference-mode call of the attack. An empty plan folds
    nothing and changes nothing."""
    if not plan:
        return contextlib.nullcontext
    mapping = folded_values(plan)
    gates = [gate for gate, _ in plan]

    @contextlib.contextmanager
    def scope():
        for gate in gates:
            gate.bypassed = True
        try:
            with keras.StatelessScope(state_mapping=mapping):
                yield
        finally:
            for gate in gates:
                gate.bypassed = False

    return scope


def folded_logits_fn(network, plan):
    """images -> inference-mode logits of `network` with the gates of
    `plan` folded into their kernels (the masks read now)."""
    scope = folded_scope(plan)

    def logits(images):
        with scope():
            return network(images, training=False)["logits"]

    return logits
