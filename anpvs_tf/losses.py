"""The loss terms of ANP-VS other than cross-entropy."""

import keras
import tensorflow as tf


def vulnerability(clean_features, adversarial_features):
    """Mean over gated layers of mean |f_l(x) - f_l(x_adv)| (SPEC).

    Used as the VS loss (training-mode gates, gradients flow into every
    layer, the first included: SPEC pitfall 4) and as a metric (inference
    gates). Both arguments map layer name -> feature tensor.
    """
    terms = vulnerability_per_layer(clean_features, adversarial_features)
    return tf.add_n(list(terms.values())) / len(terms)


def vulnerability_per_layer(clean_features, adversarial_features):
    """{layer: mean |f_l(x) - f_l(x_adv)|}, the terms averaged above."""
    return {
        name: tf.reduce_mean(
            tf.abs(clean_features[name] - adversarial_features[name])
        )
        for name in clean_features
    }


def gate_kl(gates):
    """Sum of the KL terms of all gates (0 for an ungated network)."""
    if not gates:
        return tf.constant(0.0)
    return tf.add_n([gate.kl_divergence() for gate in gates])


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
