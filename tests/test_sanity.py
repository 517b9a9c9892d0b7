"""Each sanity check passes on a normal model and fails on a broken one.

The broken models are the classic ways an evaluation overestimates
robustness: a non-differentiable input step (zero gradients), a model that
is random at inference, a model whose accuracy rises with the size of the
perturbation, and an APGD given too small a budget.
"""

import dataclasses
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf.evaluation import sanity
from anpvs_tf.evaluation.classifier import Classifier
from anpvs_tf.evaluation.suites import SuiteSettings
from anpvs_tf.evaluation.suites import run_suite

# Small budgets; the tolerance is 2 examples of the 100 in the sweeps.
SMALL = SuiteSettings(
    suite="full", epsilon=0.15, step_size=0.02, pgd_steps=10,
    apgd_steps=10, sweep_epsilons=(0.05, 0.1, 0.2, 0.3),
    sweep_steps=(1, 5, 10, 20), sweep_examples=100, batch_size=100,
    tolerance=0.02,
)
CHECKS = (
    "eps_zero_equals_clean",
    "non_increasing_in_eps",
    "non_increasing_in_steps",
    "large_eps_at_chance",
    "blackbox_not_below_whitebox",
    "apgd_not_weaker_than_pgd",
)


class FunctionNetwork:
    """A stand-in zoo network around a logits function."""

    layers = ()

    def __init__(self, logits_fn):
        self.logits_fn = logits_fn

    def __call__(self, x, training=False):
        logits = self.logits_fn(x)
        return {"logits": logits, "features": {"logits": logits}}


def _checks(network, batch, settings=SMALL, source=None):
    images, labels = batch
    report = run_suite(
        Classifier(network), images[:100], labels[:100], settings,
        source=None if source is None else Classifier(source),
        source_name="source", complexity=False)
    return {name: check["passed"]
            for name, check in report["sanity_checks"].items()}


def _failed(checks):
    return {name for name, passed in checks.items() if passed is False}


@pytest.fixture(scope="module")
def normal_checks(briefly_trained_lenets, mnist_eval_batch_module):
    target, source = briefly_trained_lenets
    return _checks(target, mnist_eval_batch_module, source=source)


@pytest.fixture(scope="module")
def mnist_eval_batch_module():
    from anpvs_tf import data

    images, labels = data.load_arrays("mnist", "test", "embedded")
    return images[:100], labels[:100]


def test_every_check_passes_on_a_normal_model(normal_checks):
    assert set(normal_checks) == set(CHECKS)
    assert all(passed is True for passed in normal_checks.values()), (
        normal_checks)


def test_input_quantisation_fails_large_eps_and_blackbox(
    briefly_trained_lenets, mnist_eval_batch_module
):
    """tf.round has no gradient: white-box PGD (without random start) never
    moves, so it reports the clean accuracy even at eps 1, while examples
    transferred from a separately trained model do get through."""
    target, source = briefly_trained_lenets
    quantised = FunctionNetwork(
        lambda x: target(tf.round(2.0 * x) / 2.0)["logits"])
    settings = dataclasses.replace(
        SMALL, epsilon=0.3, random_start=False, attacks=("pgd",))
    checks = _checks(quantised, mnist_eval_batch_module, settings, source)
    assert _failed(checks) == {"large_eps_at_chance",
                               "blackbox_not_below_whitebox"}


def test_random_inference_fails_the_eps_zero_check(
    briefly_trained_lenets, mnist_eval_batch_module
):
    """Noise left on at inference (e.g. dropout): eps = 0 no longer scores
    the clean accuracy."""
    target, _ = briefly_trained_lenets
    generator = keras.random.SeedGenerator(0)
    noisy = FunctionNetwork(
        lambda x: target(x)["logits"] + 30.0 * keras.random.normal(
            (tf.shape(x)[0], 10), seed=generator))
    settings = dataclasses.replace(SMALL, attacks=("pgd",))
    checks = _checks(noisy, mnist_eval_batch_module, settings)
    assert "eps_zero_equals_clean" in _failed(checks)


def _far_is_right_network(images, labels, threshold=0.12):
    """Classifies an input right only when it lies farther than
    `threshold` (L-inf) from its nearest clean image: accuracy rises with
    the perturbation. A small linear term gives PGD a gradient to follow."""
    stored = tf.constant(images.reshape(len(images), -1))
    stored_labels = tf.constant(labels.astype("int32"))
    weights = tf.constant(np.random.RandomState(0).normal(
        size=(stored.shape[1], 10)).astype("float32"))

    def logits_fn(x):
        flat = tf.reshape(x, (tf.shape(x)[0], -1))
        squared = tf.reduce_sum(
            tf.square(flat[:, None, :] - stored[None]), axis=-1)
        nearest = tf.argmin(squared, axis=-1, output_type=tf.int32)
        distance = tf.reduce_max(
            tf.abs(flat - tf.gather(stored, nearest)), axis=-1)
        label = tf.gather(stored_labels, nearest)
        shown = tf.where(distance > threshold, label, (label + 1) % 10)
        return 10.0 * tf.one_hot(shown, 10) + 0.01 * flat @ weights

    return FunctionNetwork(logits_fn)


def test_accuracy_rising_with_eps_and_steps_fails_monotonicity(
    mnist_eval_batch_module
):
    images, labels = mnist_eval_batch_module
    network = _far_is_right_network(images, labels)
    settings = dataclasses.replace(
        SMALL, random_start=False, attacks=("pgd",))
    checks = _checks(network, mnist_eval_batch_module, settings)
    failed = _failed(checks)
    assert {"non_increasing_in_eps", "non_increasing_in_steps"} <= failed
    # The clean accuracy is 0 and eps = 0 still reproduces it.
    assert checks["eps_zero_equals_clean"] is True


def test_starved_apgd_fails_the_apgd_check(
    briefly_trained_lenets, mnist_eval_batch_module
):
    """One APGD iteration against PGD-40: APGD is weaker, and says so."""
    target, _ = briefly_trained_lenets
    settings = dataclasses.replace(
        SMALL, pgd_steps=40, step_size=0.01, apgd_steps=1,
        attacks=("pgd", "apgd_ce"))
    checks = _checks(target, mnist_eval_batch_module, settings)
    assert _failed(checks) == {"apgd_not_weaker_than_pgd"}


@pytest.mark.parametrize(
    "check, good, bad",
    [
        (lambda a: sanity.zero_epsilon_equals_clean(0.9, a), 0.9, 0.9001),
        (lambda a: sanity.non_increasing("eps", [0, 1, 2], [0.9, a, 0.1]),
         0.5, 0.95),
        (lambda a: sanity.large_epsilon_at_chance(a, 1.0, 10), 0.1, 0.11),
        (lambda a: sanity.blackbox_not_below_whitebox(a, 0.6), 0.6, 0.5),
        (lambda a: sanity.apgd_not_weaker_than_pgd({"apgd_ce": a}, 0.5),
         0.5, 0.6),
    ],
)
def test_check_functions_decide_on_the_numbers(check, good, bad):
    assert check(good)["passed"] is True
    assert check(bad)["passed"] is False


def test_failed_checks_print_a_loud_warning():
    checks = {
        "large_eps_at_chance": sanity.large_epsilon_at_chance(0.9, 1.0, 10),
        "eps_zero_equals_clean": sanity.zero_epsilon_equals_clean(0.9, 0.9),
        "blackbox_not_below_whitebox": sanity.skipped("no source"),
    }
    stream = io.StringIO()
    assert sanity.warn_if_failed(checks, stream) == ["large_eps_at_chance"]
    text = stream.getvalue()
    assert "WARNING" in text and "large_eps_at_chance" in text
    assert "eps_zero_equals_clean" not in text
    quiet = io.StringIO()
    assert sanity.warn_if_failed(
        {"eps_zero_equals_clean": checks["eps_zero_equals_clean"]}, quiet
    ) == []
    assert quiet.getvalue() == ""
