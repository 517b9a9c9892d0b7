"""The loss terms of ANP-VS other than cross-entropy."""

import keras
import tensorflow as tf


def vulnerability(clean_features, adversarial_features, per_unit=False):
    """Mean over gated layers of mean |f_l(x) - f_l(x_adv)| (SPEC).

    The one definition, used as the VS loss (training-mode gates, gradients
    flow into every layer, the first included: SPEC pitfall 4), as the
    model's metric and by the evaluation engine (inference gates). Both
    arguments map layer name -> feature tensor [batch, ..., units].

    per_unit=True returns the same distances before they are averaged:
    {layer: [batch, units]}, each averaged over spatial positions only, so
    an evaluation can sum them over batches and report every unit (the
    mean over a layer's examples and units is that layer's term).
    """
    distances = {
        name: tf.abs(clean_features[name] - adversarial_features[name])
        for name in clean_features
    }
    if per_unit:
        return {name: _mean_over_positions(distance)
                for name, distance in distances.items()}
    terms = [tf.reduce_mean(distance) for distance in distances.values()]
    return tf.add_n(terms) / len(terms)


def _mean_over_positions(features):
    """[batch, h, w, units] -> [batch, units]; dense features unchanged."""
    spatial = list(range(1, len(features.shape) - 1))
    return tf.reduce_mean(features, axis=spatial) if spatial else features


def gate_kl(gates, weights=None):
    """Sum of the KL terms of all gates (0 for an ungated network), each
    times weights[gate name] where `weights` names it."""
    if not gates:
        return tf.constant(0.0)
    weights = weights or {}
    return tf.add_n([
        weights.get(gate.name, 1.0) * gate.kl_divergence() for gate in gates
    ])


def l2_penalty(kernels):
    """sum ||W||^2 / 2 over kernels (tf.nn.l2_loss, as the reference code)."""
    if not kernels:
        return tf.constant(0.0)
    return tf.add_n([tf.nn.l2_loss(kernel) for kernel in kernels])


def cross_entropy(labels, logits):
    return tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True
        )
    )
