"""Refuses networks that are not results: non-finite or collapsed.

A run whose weights became NaN reports "100 % unit sparsity" and a huge
FLOPs speed-up (a NaN keep probability is below every threshold), and a
network whose gates pruned every unit of a layer computes a constant: both
look like triumphs in a table. Training stops on them (`DivergenceGuard`),
and evaluation and export refuse them (`check_usable`).
"""

import keras
import numpy as np

from anpvs_tf.errors import UnusableNetworkError


def non_finite_weights(network):
    """Names of the network's weights that hold NaN or inf."""
    return [
        weight.path for weight in network.weights
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight)))
    ]


def empty_gates(network):
    """Names of gates that prune every unit: the layer outputs zeros, so
    the network's prediction no longer depends on its input."""
    from anpvs_tf.gates import BetaBernoulliGate

    return [
        layer.name for layer in network.layers
        if isinstance(layer, BetaBernoulliGate)
        and int(layer.active_units()) == 0
    ]


def check_usable(network, where):
    """Raises UnusableNetworkError if `network` (found in `where`) is
    non-finite or collapsed."""
    bad = non_finite_weights(network)
    if bad:
        raise UnusableNetworkError(
            f"the network in {where} has non-finite weights ({bad[0]}"
            f"{' and others' if len(bad) > 1 else ''}): its training "
            "diverged, so it is not a result; train again with a lower "
            "`train.weight_learning_rate` or `train.gate_learning_rate`"
        )
    empty = empty_gates(network)
    if empty:
        raise UnusableNetworkError(
            f"the network in {where} collapsed: gate {empty[0]} prunes "
            "every unit, so its prediction ignores the input; train again "
            "with a lower `loss.kl_weight` or `train.gate_learning_rate`"
        )


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the end of the first epoch whose loss or weights
    are non-finite, or whose gates pruned a whole layer.

    Listed before the checkpoint callback, so that epoch is never saved:
    the last checkpoint stays the last good epoch. Checks once per epoch
    (no per-step host round-trip).
    """

    def on_epoch_end(self, epoch, logs=None):
        losses = {key: value for key, value in (logs or {}).items()
                  if key.endswith("loss") and not np.isfinite(value)}
        cause = None
        if losses:
            key = sorted(losses)[0]
            cause = f"its {key} is {losses[key]}"
        elif non_finite_weights(self.model.network):
            cause = "its weights hold NaN or inf"
        else:
            empty = empty_gates(self.model.network)
            if empty:
                cause = f"gate {empty[0]} pruned every unit of its layer"
        if cause:
            saved = (f"epochs 1-{epoch} stay checkpointed" if epoch
                     else "no epoch was saved")
            raise UnusableNetworkError(
                f"training diverged in epoch {epoch + 1}: {cause}; the "
                "likely cause is a learning rate too high for this recipe "
                "(`train.weight_learning_rate`, `train.gate_learning_rate`) or "
                "a `loss.kl_weight` that prunes "
                f"everything; no result was written and {saved}: train "
                "again with safer settings"
            )
