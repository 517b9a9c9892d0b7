"""A trained network as the attacker and the scorer of an evaluation see it."""

import keras
import tensorflow as tf

from anpvs_tf.layers import gates_of
from anpvs_tf.pruning import compact_network

GATE_MODES = ("inference", "sampled")


class Classifier:
    """A network as an attacker and a scorer see it.

    gates="inference" (default) uses the deterministic E[pi] gates for the
    attack and for the prediction. gates="sampled" attacks the
    training-mode gates (a fresh mask per call) with gradients averaged
    over `eot_samples` draws, and predicts with the mean probability over
    `eot_samples` draws; the draws of a batch's prediction are reset to the
    same noise for clean and adversarial inputs, so eps = 0 scores exactly
    the clean accuracy. The vulnerability is always measured on the
    inference gates, as in the paper.

    compact_attacks: with inference gates, the attacks take their
    gradients through the compact network (pruned units removed,
    pruning.compact_network): the same function, logits within float
    rounding (tested to 1e-4), and as much cheaper per attack step as the
    network is pruned. Predictions and features still come from
    `network`, so every score is the gated network's own.
    """

    def __init__(self, network, gates="inference", eot_samples=1, seed=0,
                 compact_attacks=True):
        if gates not in GATE_MODES:
            raise ValueError(f"unknown gates mode '{gates}'; choose from "
                             f"{', '.join(GATE_MODES)}")
        self.network = network
        self.gates = gates
        self.attack_network = None
        if compact_attacks and gates == "inference" and gates_of(network):
            self.attack_network = compact_network(network)
        self.eot_samples = int(eot_samples) if gates == "sampled" else 1
        self.seed = int(seed)
        self._noise_sources = [
            layer.seed_generator
            for layer in network.layers
            if isinstance(
                getattr(layer, "seed_generator", None),
                keras.random.SeedGenerator,
            )
        ]

    def _outputs(self, x, training):
        # float32 whatever the layers' policy, as the training model's
        # (model.py): attacks and scores then see the same numbers.
        return tf.nest.map_structure(
            lambda t: tf.cast(t, tf.float32),
            self.network(x, training=training))

    @property
    def sampled(self):
        return self.gates == "sampled"

    def attack_logits(self, x):
        if self.attack_network is not None:
            return tf.cast(self.attack_network(x, training=False),
                           tf.float32)
        return self._outputs(x, self.sampled)["logits"]

    def _reset_noise(self, batch_index):
        for generator in self._noise_sources:
            state = tf.stack([tf.cast(self.seed, tf.int64),
                              tf.cast(batch_index, tf.int64) * 1_000_003])
            generator.state.assign(tf.cast(state, generator.state.dtype))

    def predict_logits(self, x, batch_index):
        """Logits that decide the prediction (log mean probs if sampled)."""
        if not self.sampled:
            return self._outputs(x, False)["logits"]
        self._reset_noise(batch_index)
        probs = [
            tf.nn.softmax(self._outputs(x, True)["logits"])
            for _ in range(self.eot_samples)
        ]
        return tf.math.log(tf.add_n(probs) / self.eot_samples + 1e-30)

    def features(self, x):
        return self._outputs(x, False)["features"]
