"""White-box attacks in [0, 1] pixel space, entirely in-graph.

L-inf and L2 threat models, restarts, the cross-entropy and DLR losses,
and expectation over transformation (EOT) for stochastic networks: the
building blocks of PGD and FGSM here and of APGD in `apgd.py`.
"""

import math

import keras
import tensorflow as tf

from anpvs_tf.config import ATTACK_NORMS
from anpvs_tf.replicas import sample_for_global_batch

# Keeps divisions by a norm finite when a gradient or step is all zeros.
_TINY = 1e-12


def cross_entropy_per_example(logits, labels):
    return keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True
    )


def dlr_loss_per_example(logits, labels):
    """Difference of logits ratio (Croce & Hein, 2020), untargeted.

    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), with z sorted in
    decreasing order: invariant to shifting and scaling the logits, so a
    network cannot hide behind saturated softmax outputs.
    """
    labels = tf.cast(labels, tf.int32)
    num_classes = tf.shape(logits)[-1]
    true_mask = tf.one_hot(labels, num_classes, dtype=logits.dtype)
    true_logit = tf.reduce_sum(logits * true_mask, axis=-1)
    other_max = tf.reduce_max(logits - 1e9 * true_mask, axis=-1)
    top3 = tf.math.top_k(logits, k=3).values
    scale = top3[:, 0] - top3[:, 2] + _TINY
    return -(true_logit - other_max) / scale


ATTACK_LOSSES = {"ce": cross_entropy_per_example, "dlr": dlr_loss_per_example}


def check_attack_arguments(norm, loss, eot_samples, restarts=1):
    if norm not in ATTACK_NORMS:
        raise ValueError(
            f"`norm` must be one of {ATTACK_NORMS}. Received: {norm=}")
    if loss not in ATTACK_LOSSES:
        raise ValueError(
            f"`loss` must be one of {tuple(ATTACK_LOSSES)}. Received: {loss=}"
        )
    if eot_samples < 1 or restarts < 1:
        raise ValueError(
            "`eot_samples` and `restarts` must be >= 1. Received: "
            f"{eot_samples=}, {restarts=}"
        )


def _norm_per_example(values):
    """L2 norm of each example, shaped to broadcast over its pixels."""
    axes = list(range(1, len(values.shape)))
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=axes, keepdims=True))


def project(x_adv, x, epsilon, norm):
    """Nearest point of the eps ball around x, then clipped to [0, 1].

    Clipping after the L2 projection keeps it in the ball: each coordinate
    only moves towards x, which lies in [0, 1].
    """
    if norm == "linf":
        x_adv = tf.clip_by_value(x_adv, x - epsilon, x + epsilon)
    else:
        delta = x_adv - x
        factor = tf.minimum(
            1.0, epsilon / (_norm_per_example(delta) + _TINY)
        )
        x_adv = x + delta * factor
    return tf.clip_by_value(x_adv, 0.0, 1.0)


def ascent_direction(gradient, norm):
    """Steepest ascent step of unit size in the threat model's norm."""
    if norm == "linf":
        return tf.sign(gradient)
    return gradient / (_norm_per_example(gradient) + _TINY)


def random_start_point(x, epsilon, norm, seed_generator):
    """A uniform random point of the eps ball (in L2: uniform in volume)."""
    shape = tuple(x.shape[1:])

    def sample(n):
        if norm == "linf":
            return keras.random.uniform(
                (n, *shape), minval=-1.0, maxval=1.0, seed=seed_generator
            )
        direction = keras.random.normal((n, *shape), seed=seed_generator)
        direction = direction / (_norm_per_example(direction) + _TINY)
        dims = float(math.prod(shape))
        radius = keras.random.uniform(
            (n, *[1] * len(shape)), seed=seed_generator
        ) ** (1.0 / dims)
        return direction * radius

    noise = sample_for_global_batch(sample, tf.shape(x)[0])
    return project(x + epsilon * noise, x, epsilon, norm)


def loss_and_gradient(logits_fn, loss_fn, x, y, eot_samples=1):
    """Per-example loss, its input gradient, and the logits at x.

    With eot_samples > 1 all three are averaged over that many calls of a
    stochastic logits_fn (expectation over transformation), so sampled
    gates cannot hide the gradient behind their noise. A network whose
    output does not depend on x differentiably (e.g. a rounding step) gets
    a zero gradient instead of an error.
    """

    def one_sample():
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = logits_fn(x)
            losses = loss_fn(logits, y)
            # A sum, not a mean: each example's gradient is then independent
            # of the batch size.
            total = tf.reduce_sum(losses)
        gradient = tape.gradient(
            total,
            x,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return losses, gradient, logits

    if eot_samples == 1:
        return one_sample()

    def body(i, losses, gradient, logits):
        sample = one_sample()
        return (i + 1, losses + sample[0], gradient + sample[1],
                logits + sample[2])

    first = one_sample()
    _, losses, gradient, logits = tf.while_loop(
        lambda i, *_: i < eot_samples,
        body,
        (tf.constant(1), *first),
        maximum_iterations=eot_samples - 1,
    )
    return losses / eot_samples, gradient / eot_samples, logits / eot_samples


def is_fooled(logits, y):
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.not_equal(predictions, tf.cast(y, tf.int32))


def best_of_restarts(run_once, logits_fn, loss_fn, x, y, restarts,
                     eot_samples=1):
    """Runs an attack `restarts` times and keeps, per example, the worst.

    "Worst" means misclassified if any restart misclassified it, otherwise
    the restart with the highest loss.
    """
    if restarts == 1:
        return run_once()

    def score(x_adv):
        losses, _, logits = loss_and_gradient(
            logits_fn, loss_fn, x_adv, y, eot_samples
        )
        return is_fooled(logits, y), losses

    def body(i, best, best_fooled, best_loss):
        candidate = run_once()
        fooled, losses = score(candidate)
        better = (fooled & ~best_fooled) | (
            (fooled == best_fooled) & (losses > best_loss)
        )
        keep = tf.reshape(better, [-1] + [1] * (len(x.shape) - 1))
        return (
            i + 1,
            tf.where(keep, candidate, best),
            best_fooled | fooled,
            tf.where(better, losses, best_loss),
        )

    first = run_once()
    _, best, _, _ = tf.while_loop(
        lambda i, *_: i < restarts,
        body,
        (tf.constant(1), first, *score(first)),
        maximum_iterations=restarts - 1,
    )
    return best


def pgd_attack(
    logits_fn,
    x,
    y,
    *,
    epsilon,
    step_size,
    num_steps,
    random_start=True,
    seed_generator=None,
    norm="linf",
    restarts=1,
    loss="ce",
    eot_samples=1,
):
    """Projected gradient ascent on a loss (Madry et al., 2018).

    Args:
        logits_fn: maps images to logits; call the model with an explicit
            `training=` inside it (ANP-VS attacks the inference-mode gates).
        x: clean images in [0, 1]. y: integer labels.
        epsilon: radius of the ball (L-inf or L2, pixel units).
        step_size: size of each step (L-inf: signed, L2: normalised).
        num_steps: number of steps; 0 returns the (randomly started) input.
            epsilon, step_size and num_steps may be tensors, so one traced
            function serves a whole sweep.
        random_start: start from a uniform point of the eps ball.
        seed_generator: keras.random.SeedGenerator for the random start.
        norm: "linf" or "l2". loss: "ce" or "dlr".
        restarts: independent runs; the worst per example is returned.
        eot_samples: gradients averaged over this many calls of logits_fn.

    Returns:
        Adversarial images (the last iterate of the worst restart), with no
        gradient path to `x`.
    """
    check_attack_arguments(norm, loss, eot_samples, restarts)
    x = tf.convert_to_tensor(x)
    loss_fn = ATTACK_LOSSES[loss]
    # A python 0 skips the noise; a tensor epsilon of 0 draws noise of
    # size 0, which also leaves x unchanged.
    noisy = random_start and not (
        isinstance(epsilon, (int, float)) and epsilon == 0
    )

    def run_once():
        x_adv = x
        if noisy:
            x_adv = random_start_point(x, epsilon, norm, seed_generator)

        def step(i, x_adv):
            _, gradient, _ = loss_and_gradient(
                logits_fn, loss_fn, x_adv, y, eot_samples
            )
            x_adv = x_adv + step_size * ascent_direction(gradient, norm)
            return i + 1, project(x_adv, x, epsilon, norm)

        _, x_adv = tf.while_loop(
            lambda i, _: i < num_steps,
            step,
            (tf.constant(0), x_adv),
        )
        return x_adv

    x_adv = best_of_restarts(
        run_once, logits_fn, loss_fn, x, y, restarts, eot_samples
    )
    return tf.stop_gradient(x_adv)


def fgsm_attack(logits_fn, x, y, *, epsilon, norm="linf", eot_samples=1):
    """Fast gradient sign method: one step of size epsilon, no random start."""
    return pgd_attack(
        logits_fn,
        x,
        y,
        epsilon=epsilon,
        step_size=epsilon,
        num_steps=1,
        random_start=False,
        norm=norm,
        eot_samples=eot_samples,
    )
