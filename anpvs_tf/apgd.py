"""Auto-PGD (Croce & Hein, ICML 2020), untargeted, in one tf.while_loop.

APGD needs no step-size tuning: it starts with a step of 2 * eps, adds
momentum (0.75), and halves an example's step at fixed checkpoints when
its loss has stalled, restarting it from its best point so far. Written
from the paper's description (Algorithm 1 and Section 3.2).
"""

import math

import tensorflow as tf

from anpvs_tf.attacks import ATTACK_LOSSES
from anpvs_tf.attacks import ascent_direction
from anpvs_tf.attacks import best_of_restarts
from anpvs_tf.attacks import check_attack_arguments
from anpvs_tf.attacks import is_fooled
from anpvs_tf.attacks import loss_and_gradient
from anpvs_tf.attacks import project
from anpvs_tf.attacks import random_start_point

MOMENTUM = 0.75
# A checkpoint halves the step when fewer than this fraction of the steps
# since the previous checkpoint increased the loss (condition 1).
RHO = 0.75


def checkpoints(num_steps):
    """Iterations w_j = ceil(p_j * N) at which the step size is reviewed.

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06):
    the intervals shrink from 22 % of the budget to 6 %.
    """
    fractions = [0.0, 0.22]
    while True:
        gap = max(fractions[-1] - fractions[-2] - 0.03, 0.06)
        if fractions[-1] + gap > 1.0:
            break
        fractions.append(fractions[-1] + gap)
    points = sorted({math.ceil(p * num_steps) for p in fractions[1:]})
    return [w for w in points if 0 < w < num_steps]


def _checkpoint_tables(num_steps):
    """Per iteration: is it a checkpoint, and the length of its interval."""
    is_checkpoint = [False] * max(num_steps, 1)
    interval = [1] * max(num_steps, 1)
    previous = 0
    for w in checkpoints(num_steps):
        is_checkpoint[w] = True
        interval[w] = w - previous
        previous = w
    return (tf.constant(is_checkpoint), tf.constant(interval, tf.float32))


def _where(mask, a, b):
    """tf.where with a per-example mask broadcast over image axes."""
    mask = tf.reshape(mask, [-1] + [1] * (len(a.shape) - 1))
    return tf.where(mask, a, b)


def apgd_attack(
    logits_fn,
    x,
    y,
    *,
    epsilon,
    num_steps=100,
    loss="ce",
    norm="linf",
    random_start=True,
    seed_generator=None,
    restarts=1,
    eot_samples=1,
):
    """APGD-CE (loss="ce") or APGD-DLR (loss="dlr"), untargeted.

    Args:
        logits_fn, x, y, epsilon, norm, random_start, seed_generator,
            restarts, eot_samples: as in `attacks.pgd_attack`.
        num_steps: gradient evaluations per restart (N_iter).

    Returns:
        Per example, the first misclassified iterate if there was one,
        otherwise the iterate of highest loss; no gradient path to `x`.
    """
    check_attack_arguments(norm, loss, eot_samples, restarts)
    x = tf.convert_to_tensor(x)
    loss_fn = ATTACK_LOSSES[loss]
    is_checkpoint, interval = _checkpoint_tables(num_steps)

    def evaluate(x_adv):
        return loss_and_gradient(logits_fn, loss_fn, x_adv, y, eot_samples)

    def run_once():
        x_start = x
        if random_start:
            x_start = random_start_point(x, epsilon, norm, seed_generator)
        losses, gradient, logits = evaluate(x_start)
        batch = tf.shape(x)[0]
        step = tf.fill([batch], tf.constant(2.0, x.dtype) * epsilon)
        state = {
            "x": x_start,
            "x_previous": x_start,
            "gradient": gradient,
            "loss": losses,
            "step": step,
            "best_x": x_start,
            "best_gradient": gradient,
            "best_loss": losses,
            "fooled": is_fooled(logits, y),
            "fooled_x": x_start,
            "increases": tf.zeros([batch]),
            "checkpoint_best_loss": losses,
            "reduced_at_last_checkpoint": tf.zeros([batch], tf.bool),
        }

        def take_step(s, first):
            factor = tf.reshape(s["step"], [-1] + [1] * (len(x.shape) - 1))
            z = project(
                s["x"] + factor * ascent_direction(s["gradient"], norm),
                x, epsilon, norm,
            )
            if first:
                return z
            return project(
                s["x"] + MOMENTUM * (z - s["x"])
                + (1.0 - MOMENTUM) * (s["x"] - s["x_previous"]),
                x, epsilon, norm,
            )

        def observe(s, x_new):
            """Evaluates the new iterate and updates the trackers."""
            losses, gradient, logits = evaluate(x_new)
            fooled_now = is_fooled(logits, y)
            improved = losses > s["best_loss"]
            first_fool = fooled_now & ~s["fooled"]
            return {
                **s,
                "x_previous": s["x"],
                "x": x_new,
                "gradient": gradient,
                "increases": s["increases"] + tf.cast(
                    losses > s["loss"], tf.float32),
                "loss": losses,
                "best_x": _where(improved, x_new, s["best_x"]),
                "best_gradient": _where(
                    improved, gradient, s["best_gradient"]),
                "best_loss": tf.where(improved, losses, s["best_loss"]),
                "fooled": s["fooled"] | fooled_now,
                "fooled_x": _where(first_fool, x_new, s["fooled_x"]),
            }

        def review_step_size(s, k):
            """At a checkpoint, halve stalled steps and restart from best."""
            stalled = s["increases"] < RHO * interval[k]
            unchanged = ~s["reduced_at_last_checkpoint"] & tf.equal(
                s["best_loss"], s["checkpoint_best_loss"])
            reduce = (stalled | unchanged) & is_checkpoint[k]
            at_checkpoint = tf.fill(tf.shape(reduce), is_checkpoint[k])
            return {
                **s,
                "step": tf.where(reduce, s["step"] / 2.0, s["step"]),
                "x": _where(reduce, s["best_x"], s["x"]),
                # No momentum across a restart from the best point.
                "x_previous": _where(reduce, s["best_x"], s["x_previous"]),
                "gradient": _where(
                    reduce, s["best_gradient"], s["gradient"]),
                "increases": tf.where(
                    at_checkpoint, tf.zeros_like(s["increases"]),
                    s["increases"]),
                "checkpoint_best_loss": tf.where(
                    at_checkpoint, s["best_loss"],
                    s["checkpoint_best_loss"]),
                "reduced_at_last_checkpoint": tf.where(
                    at_checkpoint, reduce, s["reduced_at_last_checkpoint"]),
            }

        if num_steps >= 1:
            state = observe(state, take_step(state, first=True))

        def body(k, s):
            s = review_step_size(s, k)
            return k + 1, observe(s, take_step(s, first=False))

        _, state = tf.while_loop(
            lambda k, _: k < num_steps,
            body,
            (tf.constant(1), state),
        )
        return _where(state["fooled"], state["fooled_x"], state["best_x"])

    x_adv = best_of_restarts(
        run_once, logits_fn, loss_fn, x, y, restarts, eot_samples
    )
    return tf.stop_gradient(x_adv)
