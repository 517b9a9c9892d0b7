"""Fine-tuning after the gates freeze, on the network without pruned units.

Once the gates are frozen (`train.gate_epochs`), a pruned unit is an exact
zero from its gate on and the weights fine-tune a fixed sub-network, yet
the masked network still computes every unit. `narrow` builds that
sub-network for training from the shared channel analysis
(anpvs_tf.channels): the channels it carries, nothing else.

Unlike the inference compaction (anpvs_tf.pruning, which folds every gate
into the weights), it keeps the masked network's parametrisation:

- kernels, biases and batch-norms are sliced, never scaled; each gate
  becomes a `FrozenGate` that multiplies the surviving units by their
  fixed E[pi], as the frozen gate did. So every surviving weight gets the
  gradient it gets in the masked network, and Adam's per-weight moments
  carry over unchanged (Adam is not scale-invariant in its step size: a
  folded E[pi] would change the steps of every weight it scales, and the
  L2 penalty's value);
- each feature map of the vulnerability loss is multiplied by (carried /
  full width): the pruned units' distances are exact zeros, so the mean
  over the carried units, rescaled, is the mean over all of them;
- the frozen gates report the full width, the active units and their KL,
  so sparsity and the losses are logged as before. The logged `loss` lacks
  only the L2 of pruned weights, whose gradient reaches no surviving one.

The compact fine-tune therefore takes the masked fine-tune's steps (up to
float rounding) and `widen` writes its weights back into the gated network,
which evaluation and export read as before. Exact only where every pruned
unit stays an exact zero in training as well; `obstacle` names what breaks
that (a batch-norm after pruned units: its offset keeps learning and feeds
the next layer; a dropout whose masks would be drawn over another width).
There the fine-tune stays masked.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from anpvs_tf import channels as graph_analysis
from anpvs_tf import precision
from anpvs_tf.assembly import compile_model
from anpvs_tf.callbacks import FreezeAtSparsity
from anpvs_tf.gates import FrozenGate
from anpvs_tf.layers import network_outputs
from anpvs_tf.pruning import check_compactable
from anpvs_tf.pruning import connect

# Layers that draw random numbers in training.
_RANDOM_LAYERS = (
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.SpatialDropout2D,
)
# Optimizer slots kept per trainable variable (Keras' Adam family).
_SLOTS = ("_momentums", "_velocities", "_velocity_hats")


@dataclasses.dataclass(frozen=True)
class Slice:
    """A compact variable is the full one restricted to `index`:
    {axis: kept positions}; axes not named are kept whole."""

    full: object
    compact: object
    index: dict

    def grid(self, shape):
        """numpy index of the kept positions in a full-shaped array."""
        return np.ix_(*[self.index.get(axis, np.arange(size))
                        for axis, size in enumerate(shape)])

    def take(self, full_value):
        full_value = keras.ops.convert_to_numpy(full_value)
        return full_value[self.grid(full_value.shape)]


@dataclasses.dataclass(frozen=True)
class Narrowed:
    """The compact training network and how its variables map back."""

    network: keras.Model
    slices: tuple


def obstacle(analysis):
    """Why the compact fine-tune would not be the masked one, or None."""
    if analysis.obstacles:
        return analysis.obstacles[0]
    for step in analysis.steps:
        state = analysis.state(step.inputs[0])
        name = step.layer.name
        if step.kind == graph_analysis.BATCH_NORM and state.removed.any():
            return (f"batch-norm '{name}' follows pruned units: their "
                    "offset keeps learning in the masked fine-tune")
        if (isinstance(step.layer, _RANDOM_LAYERS)
                and not analysis.carried(step.inputs[0]).all()):
            return (f"'{name}' would draw its random masks over fewer "
                    "units than in the masked fine-tune")
        if np.any(state.constant[state.removed]):
            return (f"pruned units reach '{name}' as non-zero constants")
    return None


def _linear(layer, analysis):
    keep_in = np.flatnonzero(analysis.carried(layer.input))
    keep_out = np.flatnonzero(analysis.carried(layer.output))
    config = layer.get_config()
    width_key = "filters" if isinstance(layer, keras.layers.Conv2D) \
        else "units"
    config[width_key] = int(keep_out.size)
    kernel_axes = len(layer.kernel.shape)
    indices = [{kernel_axes - 2: keep_in, kernel_axes - 1: keep_out}]
    if layer.use_bias:
        indices.append({0: keep_out})
    return type(layer).from_config(config), indices


def _frozen_gate(layer, analysis):
    keep = analysis.carried(layer.output)
    mask = keras.ops.convert_to_numpy(layer.inference_mask())
    gate = FrozenGate(
        full_units=layer.units,
        active=int(keras.ops.convert_to_numpy(layer.active_units())),
        kl=float(keras.ops.convert_to_numpy(layer.kl_divergence())),
        name=layer.name,
    )
    return gate, mask[keep]


def narrow(network):
    """The compact training network of a gated network with frozen gates.

    Raises ValueError (`obstacle`'s reason) where it would not train as
    the masked network does.
    """
    analysis = graph_analysis.analyse(network)
    check_compactable(analysis)
    reason = obstacle(analysis)
    if reason is not None:
        raise ValueError(reason)
    source = analysis.input
    inputs = keras.Input(shape=source.shape[1:], dtype=source.dtype,
                         name=source.name)
    tensors = {id(source): inputs}
    pairs = []  # (full layer, compact layer, per-variable index or None)
    scales = []
    for step in analysis.steps:
        layer = step.layer
        if step.kind == graph_analysis.GATE:
            new_layer, scale = _frozen_gate(layer, analysis)
            scales.append((new_layer, scale))
            indices = []
        elif step.kind == graph_analysis.LINEAR:
            new_layer, indices = _linear(layer, analysis)
        elif step.kind == graph_analysis.BATCH_NORM:
            keep = np.flatnonzero(analysis.carried(layer.output))
            new_layer = type(layer).from_config(layer.get_config())
            indices = [{0: keep}] * len(layer.variables)
        else:
            # Weightless, or untouched (obstacle checked): copied whole,
            # a dropout's random stream included.
            new_layer = type(layer).from_config(layer.get_config())
            indices = [{}] * len(layer.variables)
        tensors[id(step.output)] = connect(new_layer, step, analysis,
                                           tensors)
        pairs.append((layer, new_layer, indices))

    features = {}
    for name, tensor in network.output["features"].items():
        carried = int(analysis.carried(tensor).sum())
        width = int(tensor.shape[-1])
        features[name] = tensors[id(tensor)]
        if carried != width:
            features[name] = keras.layers.Rescaling(
                carried / width, dtype="float32",
                name=f"{name}_vulnerability_scale")(features[name])
    compact = keras.Model(
        inputs,
        network_outputs(tensors[id(analysis.logits)], features),
        name=network.name.removesuffix("_gated") + "_compact_training",
    )
    slices = tuple(
        Slice(full, part, index)
        for layer, new_layer, indices in pairs
        for full, part, index in zip(layer.variables, new_layer.variables,
                                     indices)
    )
    for item in slices:
        item.compact.assign(item.take(item.full))
    for gate, scale in scales:
        gate.scale.assign(scale)
    return Narrowed(compact, slices)


def _inner(optimizer):
    """The optimizer holding the slots (inside a loss-scaling wrapper)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def carry_optimizer_state(full_optimizer, compact_optimizer, narrowed):
    """Continues `full_optimizer` in `compact_optimizer` (built on the
    compact weights): each surviving weight's moments, and every other
    optimizer variable (step count, loss scale) as it is."""
    full, compact = _inner(full_optimizer), _inner(compact_optimizer)
    slot_ids = set()
    for slot_name in _SLOTS:
        full_slots = getattr(full, slot_name, None)
        compact_slots = getattr(compact, slot_name, None)
        if not full_slots or not compact_slots:
            continue
        slot_ids |= {id(v) for v in (*full_slots, *compact_slots)}
        for item in narrowed.slices:
            if not item.compact.trainable:
                continue
            source = full_slots[full._get_variable_index(item.full)]
            target = compact_slots[
                compact._get_variable_index(item.compact)]
            target.assign(item.take(source))
    rest = [[v for v in optimizer.variables if id(v) not in slot_ids]
            for optimizer in (full_optimizer, compact_optimizer)]
    if len(rest[0]) != len(rest[1]):
        raise ValueError("The two optimizers hold different variables.")
    for source, target in zip(*rest):
        target.assign(source)


def compact_fine_tune_model(model, config, strategy, num_train_examples):
    """The compiled model that continues `model` (gates frozen) on its
    compact network, and the Narrowed that maps it back.

    Its optimizer is the config's, continuing `model`'s: the same
    learning-rate schedule at the same step, each surviving weight's
    moments. Raises ValueError where the compact fine-tune would not take
    the masked one's steps.
    """
    with strategy.scope(), precision.dtype_policy(
            config.train.mixed_precision):
        narrowed = narrow(model.network)
        compact = compile_model(model.on_network(narrowed.network), config,
                                num_train_examples)
        carry_optimizer_state(model.optimizer, compact.optimizer, narrowed)
    return compact, narrowed


def widen(narrowed):
    """Writes the compact network's variables into the full one's kept
    positions (the pruned positions keep their frozen values: they are
    multiplied by exact zeros)."""
    for item in narrowed.slices:
        full = np.array(keras.ops.convert_to_numpy(item.full))
        full[item.grid(full.shape)] = keras.ops.convert_to_numpy(
            item.compact)
        item.full.assign(full)


def fit_in_phases(model, config, strategy, num_train_examples, fit,
                  initial_epoch=0, on_compact=None, log=lambda _: None,
                  frozen_at_step=None):
    """Trains `model` in the order every run trains: where the config
    freezes the gates (`train.gate_epochs`), the gates learn until then,
    freeze, and the rest of `train.epochs` fine-tunes the weights, on the
    compact network (faster per step) where `train.compact_fine_tune`
    allows it, otherwise on `model`, masked; without `gate_epochs` the
    whole run trains `model`.

    `fit(trainee, first, last, *callbacks)` trains `trainee` over epochs
    [first, last) (nothing where first >= last: a resumed run skips what
    is done) with these Keras callbacks besides its own: the gate phase
    gets a FreezeAtSparsity where the config sets `train.freeze_at_sparsity`
    (keeping the step it froze at in `frozen_at_step`, an int64 variable,
    which train.py checkpoints).
    `on_compact(compact)` runs once the compact model exists, before it
    trains (train.py restores its checkpoint there). Where the compact
    fine-tune would not take the masked one's steps, the fine-tune stays
    masked, and says so through `log`.
    """
    epochs, gate_epochs = config.train.epochs, config.train.gate_epochs
    if not model.gates or gate_epochs is None:
        fit(model, initial_epoch, epochs)
        return
    freeze_early = ()
    if config.train.freeze_at_sparsity is not None:
        if frozen_at_step is None:
            frozen_at_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        freeze_early = (FreezeAtSparsity(config.train.freeze_at_sparsity,
                                         frozen_at_step, log=log),)
    fit(model, initial_epoch, gate_epochs, *freeze_early)  # gates learn
    model.freeze_gates()  # also where a resumed run starts past them
    rest = max(initial_epoch, gate_epochs)
    if not config.train.compact_fine_tune:
        fit(model, rest, epochs)
        return
    try:
        compact, narrowed = compact_fine_tune_model(
            model, config, strategy, num_train_examples)
    except ValueError as error:
        log(f"The fine-tune stays masked: {error}.")
        fit(model, rest, epochs)
        return
    if on_compact is not None:
        on_compact(compact)
    fit(compact, rest, epochs)
    widen(narrowed)
