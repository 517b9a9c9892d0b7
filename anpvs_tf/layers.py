"""Helpers that place gates in functional networks."""

from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.gates import FrozenGate


class GatePlacer:
    """Inserts a named gate after a tensor, or nothing in an ungated network.

    Builders call it at every prunable position, so the gated and the plain
    variant of an architecture are the same code and share layer names
    (base weights transfer by name). Each gate gets its own seed derived from
    the network seed.
    """

    def __init__(
        self,
        gated,
        concentration1_init,
        concentration0_init=0.5413,
        seed=None,
    ):
        self.gated = gated
        self.concentration1_init = concentration1_init
        self.concentration0_init = concentration0_init
        self.seed = seed
        self._count = 0

    def __call__(self, x, name, concentration1_init=None):
        if not self.gated:
            return x
        seed = None if self.seed is None else self.seed + 1000 * self._count
        self._count += 1
        if concentration1_init is None:
            concentration1_init = self.concentration1_init
        return BetaBernoulliGate(
            concentration1_init=concentration1_init,
            concentration0_init=self.concentration0_init,
            seed=seed,
            name=name,
        )(x)


def network_outputs(logits, features):
    """The output structure every zoo network returns.

    `features` maps each gated position to its post-activation feature map:
    the vulnerability (SPEC: |f_l(x) - f_l(x_adv)|) is measured there, in
    gated and ungated networks alike.
    """
    return {"logits": logits, "features": features}


def gates_of(network):
    """The gate layers of a network, in forward order (the frozen gates
    of a compact fine-tune network included)."""
    return [
        layer
        for layer in network.layers
        if isinstance(layer, (BetaBernoulliGate, FrozenGate))
    ]
