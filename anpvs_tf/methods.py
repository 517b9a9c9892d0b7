"""The training methods as data: what each one attacks and minimises.

ANPVSModel reads a method's Objective instead of branching on its name,
so a method is one row here. A loss is an ordered sum of terms, each
optionally scaled by one of the model's weights (an attribute name such
as "vs_weight"); the order is the order of the additions, which fixes
the floating-point result.

Terms (model.py computes them): ce_loss = CE(x); adv_ce_loss = CE(x_adv);
mixed_ce_loss = (CE(x) + w * CE(x_adv)) / (1 + w), w = adv_weight;
vs_loss = V(x, x_adv) (SPEC); trades_loss = KL(p(x) || p(x_adv));
kl_loss = beta * gate KL / N; l2_penalty = sum ||W||^2 / 2.
"""

import dataclasses

# The attacks that craft a training batch (None: clean training only).
TRAINING_ATTACKS = (None, "pgd", "trades")


@dataclasses.dataclass(frozen=True)
class Objective:
    """One method: its training attack and the two losses it minimises.

    Args:
        attack: which attack crafts the adversarial batch, against the
            inference-mode network: "pgd", "trades" (TRADES' KL ascent)
            or None (no adversarial batch).
        gated: the network carries Beta-Bernoulli gates.
        weight_loss: ordered (term, weight attribute or None) pairs the
            weights minimise.
        gate_loss: the same for the gate parameters (empty if ungated).
    """

    attack: str | None
    gated: bool
    weight_loss: tuple
    gate_loss: tuple = ()

    def __post_init__(self):
        if self.attack not in TRAINING_ATTACKS:
            raise ValueError(
                f"`attack` must be one of {TRAINING_ATTACKS}. Received: "
                f"attack={self.attack!r}")
        if self.gated != bool(self.gate_loss):
            raise ValueError(
                "a gated method needs a gate loss and a plain one none. "
                f"Received: gated={self.gated}, gate_loss={self.gate_loss}")

    @property
    def terms(self):
        """Names of every term either loss reads."""
        return {name for name, _ in (*self.weight_loss, *self.gate_loss)}


_L2 = ("l2_penalty", "l2_weight")
_KL = ("kl_loss", None)
_ADVERSARIAL_GATES = (("adv_ce_loss", None), _KL)

OBJECTIVES = {
    "standard": Objective(None, False, (("ce_loss", None), _L2)),
    "at": Objective("pgd", False, (("mixed_ce_loss", None), _L2)),
    # The same objective, from a trained standard model (training.py).
    "at_pretrained": Objective(
        "pgd", False, (("mixed_ce_loss", None), _L2)),
    "trades": Objective(
        "trades", False,
        (("ce_loss", None), ("trades_loss", "trades_weight"), _L2)),
    # Beta-Bernoulli pruning without an adversary.
    "bp": Objective(
        None, True, (("ce_loss", None), _KL, _L2),
        gate_loss=(("ce_loss", None), _KL)),
    "anp": Objective(
        "pgd", True, (("mixed_ce_loss", None), _KL, _L2),
        gate_loss=_ADVERSARIAL_GATES),
    "anp_vs": Objective(
        "pgd", True,
        (("mixed_ce_loss", None), ("vs_loss", "vs_weight"), _KL, _L2),
        gate_loss=_ADVERSARIAL_GATES),
    # ANP-VS on TRADES' robust loss: weights and gates minimise CE(x) +
    # beta_T KL(p(x) || p(x_adv)) against TRADES' attack, the weights
    # with VS beside it (beyond the paper, which prunes on AT's loss).
    "anp_vs_trades": Objective(
        "trades", True,
        (("ce_loss", None), ("trades_loss", "trades_weight"),
         ("vs_loss", "vs_weight"), _KL, _L2),
        gate_loss=(("ce_loss", None), ("trades_loss", "trades_weight"),
                   _KL)),
}

METHODS = tuple(OBJECTIVES)
# Methods whose network carries Beta-Bernoulli gates.
GATED_METHODS = tuple(m for m, o in OBJECTIVES.items() if o.gated)
# Methods that train on adversarial examples.
ADVERSARIAL_METHODS = tuple(
    m for m, o in OBJECTIVES.items() if o.attack is not None)
# Methods that start from a trained base model (the paper prunes a
# trained network; at_pretrained fine-tunes one adversarially).
FROM_BASE_METHODS = (*GATED_METHODS, "at_pretrained")
# Methods a base model may be trained with.
BASE_METHODS = ("standard", "at", "trades")
