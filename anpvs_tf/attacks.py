"""L-inf attacks in [0, 1] pixel space, entirely in-graph."""

import keras
import tensorflow as tf

from anpvs_tf.replicas import sample_for_global_batch


def _cross_entropy_sum(logits_fn, x, y):
    # A sum, not a mean: each example's gradient is then independent of the
    # batch size (only its sign is used).
    logits = logits_fn(x)
    return tf.reduce_sum(
        keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True
        )
    )


def _project(x_adv, x, epsilon):
    x_adv = tf.clip_by_value(x_adv, x - epsilon, x + epsilon)
    return tf.clip_by_value(x_adv, 0.0, 1.0)


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
):
    """Projected gradient descent on the cross-entropy (Madry et al., 2018).

    Args:
        logits_fn: maps images to logits; call the model with an explicit
            `training=` inside it (ANP-VS attacks the inference-mode gates).
        x: clean images in [0, 1]. y: integer labels.
        epsilon: L-inf radius. step_size: size of each signed step.
        num_steps: number of steps; 0 returns the (randomly started) input.
        random_start: start from a uniform point of the eps ball.
        seed_generator: keras.random.SeedGenerator for the random start.

    Returns:
        Adversarial images, with no gradient path to `x`.
    """
    x = tf.convert_to_tensor(x)
    if random_start and epsilon > 0:
        noise = sample_for_global_batch(
            lambda n: keras.random.uniform(
                (n, *x.shape[1:]),
                minval=-epsilon,
                maxval=epsilon,
                seed=seed_generator,
            ),
            tf.shape(x)[0],
        )
        x_adv = _project(x + noise, x, epsilon)
    else:
        x_adv = x

    def step(i, x_adv):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = _cross_entropy_sum(logits_fn, x_adv, y)
        gradient = tape.gradient(loss, x_adv)
        x_adv = _project(x_adv + step_size * tf.sign(gradient), x, epsilon)
        return i + 1, x_adv

    _, x_adv = tf.while_loop(
        lambda i, _: i < num_steps,
        step,
        (tf.constant(0), x_adv),
        maximum_iterations=num_steps,
    )
    return tf.stop_gradient(x_adv)


def fgsm_attack(logits_fn, x, y, *, epsilon):
    """Fast gradient sign method: one step of size epsilon, no random start."""
    return pgd_attack(
        logits_fn,
        x,
        y,
        epsilon=epsilon,
        step_size=epsilon,
        num_steps=1,
        random_start=False,
    )
