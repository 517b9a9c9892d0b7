"""Tests for anpvs_tf.apgd: threat model, schedule and strength."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf.apgd import apgd_attack
from anpvs_tf.apgd import checkpoints
from anpvs_tf.attacks import pgd_attack
from anpvs_tf.registry import build_network

# x +- eps and the L2 rescaling are rounded in float32.
BOUND_SLACK = 1e-5


def _logits_fn(network):
    return lambda images: network(images, training=False)["logits"]


def _accuracy(logits_fn, x, y):
    return float(np.mean(np.argmax(logits_fn(x), axis=-1) == y))


def _distance(x_adv, x, norm):
    delta = (x_adv - x).reshape(len(x), -1)
    if norm == "linf":
        return np.abs(delta).max(axis=1)
    return np.linalg.norm(delta, axis=1)


def test_checkpoints_follow_the_papers_schedule():
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein)
    assert checkpoints(100) == [22, 41, 58, 70, 80, 87, 93, 99]
    gaps = np.diff([0, *checkpoints(1000)])
    # The intervals shrink by 3 % of the budget down to 6 %.
    assert gaps[0] == 220
    assert all(a >= b for a, b in itertools.pairwise(gaps))
    assert gaps.min() >= 60
    assert checkpoints(1) == []


@pytest.mark.parametrize(
    "norm, epsilon", [("linf", 0.1), ("linf", 0.3), ("l2", 1.0), ("l2", 3.0)]
)
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_stays_in_threat_model(mnist_test_batch, norm, epsilon, loss):
    x, y = mnist_test_batch
    network = build_network("lenet5_caffe", gated=False, seed=0)
    x_adv = apgd_attack(
        _logits_fn(network), x, y, epsilon=epsilon, num_steps=12,
        loss=loss, norm=norm, seed_generator=keras.random.SeedGenerator(0),
    ).numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    distance = _distance(x_adv, x, norm)
    assert distance.max() <= epsilon * (1 + BOUND_SLACK) + BOUND_SLACK
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # It moved, out to most of the radius for some example.
    assert distance.max() >= 0.5 * epsilon


def test_apgd_without_gradient_or_start_returns_the_input(mnist_test_batch):
    """A network that ignores its input gives zero gradients: APGD (no
    random start) must stay at x, not wander or fail."""
    x, y = mnist_test_batch

    def rounded_logits(images):
        # tf.round has no gradient: the tape returns None for the input.
        brightness = tf.reduce_mean(tf.round(images), axis=[1, 2])
        return tf.one_hot(y, 10) + 0.0 * brightness

    x_adv = apgd_attack(rounded_logits, x, y, epsilon=0.3, num_steps=5,
                        random_start=False)
    np.testing.assert_array_equal(x_adv, x)


def test_apgd_is_deterministic_for_a_seed(mnist_test_batch):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(build_network("lenet5_caffe", gated=False,
                                         seed=0))
    runs = [
        apgd_attack(logits_fn, x, y, epsilon=0.3, num_steps=5,
                    seed_generator=keras.random.SeedGenerator(seed)).numpy()
        for seed in (1, 1, 2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_at_least_as_strong_as_pgd_with_the_same_budget(
    briefly_trained_lenets, mnist_eval_batch, loss
):
    """Same loss, same eps, same 20 gradient steps, on a trained model:
    APGD must leave at most as many examples correctly classified as PGD
    (with the paper's step 0.01 and with the 2.5 * eps / steps rule)."""
    network, _ = briefly_trained_lenets
    x, y = mnist_eval_batch
    logits_fn = _logits_fn(network)
    epsilon, steps = 0.15, 20
    clean = _accuracy(logits_fn, x, y)
    apgd = _accuracy(logits_fn, apgd_attack(
        logits_fn, x, y, epsilon=epsilon, num_steps=steps, loss=loss,
        seed_generator=keras.random.SeedGenerator(0)), y)
    for step_size in (0.01, 2.5 * epsilon / steps):
        pgd = _accuracy(logits_fn, pgd_attack(
            logits_fn, x, y, epsilon=epsilon, step_size=step_size,
            num_steps=steps, loss=loss,
            seed_generator=keras.random.SeedGenerator(0)), y)
        # Non-trivial: PGD neither fails nor breaks every example.
        assert 0.2 < pgd < clean - 0.2
        assert apgd <= pgd


def test_apgd_restarts_never_weaken_the_attack(
    briefly_trained_lenets, mnist_eval_batch
):
    network, _ = briefly_trained_lenets
    x, y = mnist_eval_batch
    logits_fn = _logits_fn(network)
    single, restarted = (
        _accuracy(logits_fn, apgd_attack(
            logits_fn, x, y, epsilon=0.15, num_steps=10, restarts=restarts,
            seed_generator=keras.random.SeedGenerator(0)), y)
        for restarts in (1, 3)
    )
    # The first restart uses the same noise as the single run.
    assert restarted <= single
