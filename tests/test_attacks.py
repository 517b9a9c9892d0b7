"""Tests for anpvs_tf.attacks: L-inf and L2 threat models, attack strength."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf.attacks import dlr_loss_per_example
from anpvs_tf.attacks import fgsm_attack
from anpvs_tf.attacks import pgd_attack
from anpvs_tf.attacks import random_start_point
from anpvs_tf.registry import build_network

# Float slack of the L-inf bound: x +- eps is rounded in float32.
BOUND_SLACK = 1e-6


def _logits_fn(network):
    return lambda images: network(images, training=False)["logits"]


def _cross_entropy(logits_fn, x, y):
    """Per-example cross-entropy, numpy."""
    return keras.losses.sparse_categorical_crossentropy(
        y, logits_fn(x), from_logits=True
    ).numpy()


def _accuracy(logits_fn, x, y):
    return float(np.mean(np.argmax(logits_fn(x), axis=-1) == y))


@pytest.fixture(scope="module")
def trained_lenet(briefly_trained_lenets):
    """A plain LeNet-5-Caffe trained for a few seconds (conftest)."""
    return briefly_trained_lenets[0]


@pytest.fixture(scope="module")
def untrained_lenet():
    keras.utils.set_random_seed(0)
    return build_network("lenet5_caffe", gated=False, seed=0)


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_threat_model(
    untrained_lenet, mnist_test_batch, random_start
):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(untrained_lenet)
    rng = np.random.RandomState(1 if random_start else 2)
    for epsilon in rng.uniform(0.01, 0.5, size=3):
        epsilon = float(epsilon)
        x_adv = pgd_attack(
            logits_fn,
            x,
            y,
            epsilon=epsilon,
            # Steps larger than the ball, so the projection is exercised.
            step_size=0.6 * epsilon,
            num_steps=3,
            random_start=random_start,
            seed_generator=keras.random.SeedGenerator(0),
        ).numpy()
        assert x_adv.shape == x.shape
        assert x_adv.dtype == np.float32
        distance = np.abs(x_adv - x)
        assert distance.max() <= epsilon + BOUND_SLACK
        assert x_adv.min() >= 0.0
        assert x_adv.max() <= 1.0
        # It did move, up to the edge of the ball somewhere.
        assert distance.max() >= epsilon - BOUND_SLACK


def test_pgd_random_start_reproducible_for_fixed_seed(
    untrained_lenet, mnist_test_batch
):
    x, y = mnist_test_batch
    kwargs = {"epsilon": 0.3, "step_size": 0.1, "num_steps": 1,
              "random_start": True}
    logits_fn = _logits_fn(untrained_lenet)
    first = pgd_attack(
        logits_fn, x, y, seed_generator=keras.random.SeedGenerator(3), **kwargs
    )
    second = pgd_attack(
        logits_fn, x, y, seed_generator=keras.random.SeedGenerator(3), **kwargs
    )
    other = pgd_attack(
        logits_fn, x, y, seed_generator=keras.random.SeedGenerator(4), **kwargs
    )
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_pgd_raises_loss_and_lowers_accuracy(trained_lenet, mnist_test_batch):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(trained_lenet)
    clean_accuracy = _accuracy(logits_fn, x, y)
    # The test means something only for a model that has learned.
    assert clean_accuracy > 0.9

    x_adv = pgd_attack(
        logits_fn,
        x,
        y,
        epsilon=0.3,
        step_size=0.03,
        num_steps=20,
        random_start=True,
        seed_generator=keras.random.SeedGenerator(0),
    )
    clean_loss = _cross_entropy(logits_fn, x, y)
    adversarial_loss = _cross_entropy(logits_fn, x_adv, y)
    robust_accuracy = _accuracy(logits_fn, x_adv, y)

    assert adversarial_loss.mean() > clean_loss.mean()
    assert robust_accuracy < clean_accuracy
    # A standard model is nearly defenceless at eps 0.3 on MNIST (the
    # paper's table: 0.00% PGD accuracy): the attack must be strong, not
    # merely better than nothing.
    assert robust_accuracy < 0.5 * clean_accuracy


def test_pgd_at_least_as_strong_as_fgsm(trained_lenet, mnist_test_batch):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(trained_lenet)
    x_fgsm = fgsm_attack(logits_fn, x, y, epsilon=0.3)
    x_pgd = pgd_attack(
        logits_fn,
        x,
        y,
        epsilon=0.3,
        step_size=0.03,
        num_steps=20,
        random_start=False,
    )
    fgsm_loss = _cross_entropy(logits_fn, x_fgsm, y).mean()
    pgd_loss = _cross_entropy(logits_fn, x_pgd, y).mean()
    assert pgd_loss >= fgsm_loss
    assert fgsm_loss > _cross_entropy(logits_fn, x, y).mean()


@pytest.mark.parametrize("epsilon", [0.1, 0.3])
def test_fgsm_is_one_signed_gradient_step(
    trained_lenet, mnist_test_batch, epsilon
):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(trained_lenet)
    x_tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = tf.reduce_sum(
            keras.losses.sparse_categorical_crossentropy(
                y, logits_fn(x_tensor), from_logits=True
            )
        )
    gradient = tape.gradient(loss, x_tensor).numpy()
    expected = np.clip(x + epsilon * np.sign(gradient), 0.0, 1.0)

    x_adv = fgsm_attack(logits_fn, x, y, epsilon=epsilon).numpy()

    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=BOUND_SLACK)
    # Non-trivial: most pixels moved.
    assert np.mean(x_adv != x) > 0.5


def test_zero_steps_or_zero_epsilon_return_input(
    untrained_lenet, mnist_test_batch
):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(untrained_lenet)
    no_steps = pgd_attack(
        logits_fn,
        x,
        y,
        epsilon=0.3,
        step_size=0.1,
        num_steps=0,
        random_start=False,
    )
    np.testing.assert_array_equal(no_steps, x)
    for random_start in (True, False):
        no_radius = pgd_attack(
            logits_fn,
            x,
            y,
            epsilon=0.0,
            step_size=0.1,
            num_steps=3,
            random_start=random_start,
            seed_generator=keras.random.SeedGenerator(0),
        )
        np.testing.assert_array_equal(no_radius, x)


def test_pgd_in_tf_function_matches_eager(trained_lenet, mnist_test_batch):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(trained_lenet)
    kwargs = {
        "epsilon": 0.3, "step_size": 0.05, "num_steps": 5, "random_start": False
    }

    @tf.function
    def attack(images, labels):
        return pgd_attack(logits_fn, images, labels, **kwargs)

    eager = pgd_attack(logits_fn, x, y, **kwargs).numpy()
    graph = attack(tf.constant(x), tf.constant(y)).numpy()
    np.testing.assert_allclose(graph, eager, rtol=0, atol=BOUND_SLACK)


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
@pytest.mark.parametrize("random_start", [True, False])
def test_l2_pgd_stays_in_threat_model(
    untrained_lenet, mnist_test_batch, epsilon, random_start
):
    x, y = mnist_test_batch
    x_adv = pgd_attack(
        _logits_fn(untrained_lenet), x, y, epsilon=epsilon,
        # Steps larger than the ball, so the projection is exercised.
        step_size=0.8 * epsilon, num_steps=3, random_start=random_start,
        seed_generator=keras.random.SeedGenerator(0), norm="l2",
    ).numpy()
    distance = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
    assert distance.max() <= epsilon * (1 + 1e-5)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # Most examples reach the sphere (clipping to [0, 1] can stop a few).
    assert np.median(distance) >= 0.9 * epsilon


def test_l2_random_start_is_inside_the_ball_and_spread(mnist_test_batch):
    x, _ = mnist_test_batch
    x = np.full_like(x, 0.5)  # far from the [0, 1] edges: no clipping
    start = random_start_point(
        tf.constant(x), 2.0, "l2", keras.random.SeedGenerator(0)).numpy()
    radius = np.linalg.norm((start - x).reshape(len(x), -1), axis=1)
    assert radius.max() <= 2.0 * (1 + 1e-5)
    # Uniform in a 784-d ball: almost all mass lies near the sphere.
    assert np.median(radius) > 1.9


def test_l2_pgd_lowers_accuracy(trained_lenet, mnist_test_batch):
    x, y = mnist_test_batch
    logits_fn = _logits_fn(trained_lenet)
    x_adv = pgd_attack(
        logits_fn, x, y, epsilon=3.0, step_size=0.5, num_steps=20,
        seed_generator=keras.random.SeedGenerator(0), norm="l2")
    assert _accuracy(logits_fn, x_adv, y) < 0.5 * _accuracy(logits_fn, x, y)


def test_dlr_loss_is_shift_and_scale_invariant_and_signed():
    logits = tf.constant([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 1.0, -3.0]])
    labels = tf.constant([0, 0])
    loss = dlr_loss_per_example(logits, labels).numpy()
    moved = dlr_loss_per_example(7.0 * logits - 2.0, labels).numpy()
    np.testing.assert_allclose(loss, moved, rtol=1e-5)
    # Correct with a margin: negative loss; wrong: positive.
    assert loss[0] < 0 < loss[1]
    # -(z_y - max other) / (z_1 - z_3): (3 - 1) / (3 - 0.5) for the first.
    np.testing.assert_allclose(loss[0], -2.0 / 2.5, rtol=1e-5)


def test_restarts_keep_the_worst_example(trained_lenet, mnist_test_batch):
    """More restarts can only add misclassified examples (the first restart
    draws the same noise as a single run)."""
    x, y = mnist_test_batch
    logits_fn = _logits_fn(trained_lenet)
    kwargs = {"epsilon": 0.15, "step_size": 0.02, "num_steps": 5}
    single, restarted = (
        np.argmax(logits_fn(pgd_attack(
            logits_fn, x, y, restarts=restarts,
            seed_generator=keras.random.SeedGenerator(0), **kwargs)),
            axis=-1) == y
        for restarts in (1, 4)
    )
    assert not np.any(restarted & ~single)


def test_eot_averages_gradients_of_a_stochastic_model(mnist_test_batch):
    """With K draws of a noisy linear model the gradient is the mean of
    the draws' gradients: for noise w * (1 + u), u ~ U(-1, 1), the average
    over many draws approaches w, a single draw does not."""
    x, y = mnist_test_batch
    x = tf.constant(x[:8])
    weights = tf.constant(
        np.random.RandomState(0).normal(size=(784, 10)).astype("float32"))
    generator = keras.random.SeedGenerator(0)

    def noisy_logits(images):
        scale = 1.0 + keras.random.uniform((), -1.0, 1.0, seed=generator)
        return scale * tf.matmul(tf.reshape(images, (-1, 784)), weights)

    def exact_logits(images):
        return tf.matmul(tf.reshape(images, (-1, 784)), weights)

    from anpvs_tf.attacks import cross_entropy_per_example
    from anpvs_tf.attacks import loss_and_gradient

    _, exact, _ = loss_and_gradient(
        exact_logits, cross_entropy_per_example, x, y[:8])
    _, one, _ = loss_and_gradient(
        noisy_logits, cross_entropy_per_example, x, y[:8])
    _, averaged, _ = loss_and_gradient(
        noisy_logits, cross_entropy_per_example, x, y[:8], eot_samples=200)

    def error(gradient):
        return float(tf.norm(gradient - exact) / tf.norm(exact))

    assert error(averaged) < 0.5 * error(one)
