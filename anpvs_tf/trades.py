"""TRADES (Zhang et al., ICML 2019): its loss and its attack.

The loss trades accuracy for smoothness: CE(f(x), y) + beta *
KL(p(x) || p(x')), where x' maximises that KL in the eps ball. Unlike PGD
adversarial training, the attack needs no label: it pushes the prediction
away from the clean one.
"""

import keras
import tensorflow as tf

from anpvs_tf.attacks import ascent_direction
from anpvs_tf.attacks import loss_and_gradient
from anpvs_tf.attacks import project
from anpvs_tf.replicas import sample_for_global_batch

# The attack starts this close to x (a Gaussian of this std), as TRADES.
START_STD = 0.001


def kl_per_example(clean_probabilities, adversarial_logits):
    """KL(p || softmax(adversarial_logits)) per example, p given."""
    log_q = tf.nn.log_softmax(adversarial_logits, axis=-1)
    log_p = tf.math.log(tf.maximum(clean_probabilities, 1e-30))
    return tf.reduce_sum(clean_probabilities * (log_p - log_q), axis=-1)


def trades_kl(clean_logits, adversarial_logits):
    """The TRADES regulariser: KL(p(x) || p(x')), averaged over the batch.

    Gradients flow through both distributions, as in the reference code.
    """
    return tf.reduce_mean(
        kl_per_example(tf.nn.softmax(clean_logits, axis=-1),
                       adversarial_logits)
    )


def trades_attack(logits_fn, x, *, epsilon, step_size, num_steps,
                  seed_generator=None):
    """L-inf sign-gradient ascent on KL(p(x) || p(x')) from x + N(0, 0.001).

    Returns adversarial images in the eps ball and [0, 1], with no gradient
    path to `x`.
    """
    x = tf.convert_to_tensor(x)
    clean = tf.stop_gradient(tf.nn.softmax(logits_fn(x), axis=-1))
    noise = sample_for_global_batch(
        lambda n: START_STD * keras.random.normal(
            (n, *x.shape[1:]), seed=seed_generator),
        tf.shape(x)[0],
    )
    x_adv = project(x + noise, x, epsilon, "linf")

    def loss_fn(logits, probabilities):
        return kl_per_example(probabilities, logits)

    def step(i, x_adv):
        _, gradient, _ = loss_and_gradient(logits_fn, loss_fn, x_adv, clean)
        x_adv = x_adv + step_size * ascent_direction(gradient, "linf")
        return i + 1, project(x_adv, x, epsilon, "linf")

    _, x_adv = tf.while_loop(
        lambda i, _: i < num_steps, step, (tf.constant(0), x_adv)
    )
    return tf.stop_gradient(x_adv)
