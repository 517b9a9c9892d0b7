"""The training methods by name, and the groups the code branches on."""

METHODS = ("standard", "at", "at_pretrained", "trades", "bp", "anp",
           "anp_vs")
# Methods whose network carries Beta-Bernoulli gates.
GATED_METHODS = ("bp", "anp", "anp_vs")
# Methods that train on adversarial examples.
ADVERSARIAL_METHODS = ("at", "at_pretrained", "trades", "anp", "anp_vs")
# Methods that start from a trained base model (the paper prunes a
# trained network; at_pretrained fine-tunes one adversarially).
FROM_BASE_METHODS = (*GATED_METHODS, "at_pretrained")
# Methods a base model may be trained with.
BASE_METHODS = ("standard", "at")
