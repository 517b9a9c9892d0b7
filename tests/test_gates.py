"""Tests for anpvs_tf.gates: the Beta-Bernoulli gate and its closed forms.

Stochastic properties are checked against tensorflow-probability
distributions, with tolerances taken from the Monte Carlo standard error
(as tensorflow/probability's beta_test.py `testBetaSample`).
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.gates import kumaraswamy_beta_kl
from anpvs_tf.gates import kumaraswamy_log_sample
from anpvs_tf.gates import kumaraswamy_mean
from anpvs_tf.gates import logit_from_log_prob

tfd = tfp.distributions

# Number of Monte Carlo standard errors allowed between an estimate and its
# expected value: a correct implementation fails about once in 1.7 million.
NUM_STANDARD_ERRORS = 5.0


def _inverse_softplus(value):
    """The raw parameter whose softplus is `value` (float64 numpy)."""
    return np.log(np.expm1(np.asarray(value, dtype=np.float64)))


def _gate(units, concentration1_raw, concentration0_raw, **kwargs):
    """A built gate whose raw parameters are set with `.assign`."""
    gate = BetaBernoulliGate(**kwargs)
    gate.build((None, units))
    gate.concentration1_raw.assign(
        np.broadcast_to(concentration1_raw, (units,)).astype("float32")
    )
    gate.concentration0_raw.assign(
        np.broadcast_to(concentration0_raw, (units,)).astype("float32")
    )
    return gate


def _tiny_gated_model(seed=0):
    inputs = keras.Input(shape=(6,))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = BetaBernoulliGate(concentration1_init=0.5, seed=seed, name="gate")(x)
    outputs = keras.layers.Dense(3, name="classifier")(x)
    return keras.Model(inputs, outputs)


# === Layer contract (keras-hub run_layer_test) ===


def test_get_config_round_trip():
    gate = BetaBernoulliGate(
        concentration1_init=2.0,
        concentration0_init=0.25,
        temperature=0.2,
        threshold=0.01,
        prior_concentration1=0.5,
        seed=7,
        name="my_gate",
    )
    config = gate.get_config()
    # Every __init__ argument is in the config with its non-default value.
    expected = {
        "concentration1_init": 2.0,
        "concentration0_init": 0.25,
        "temperature": 0.2,
        "threshold": 0.01,
        "prior_concentration1": 0.5,
        "seed": 7,
        "name": "my_gate",
    }
    assert {key: config[key] for key in expected} == expected
    restored = BetaBernoulliGate.from_config(config)
    assert restored.get_config() == config
    # JSON-serialisable, and equal after a JSON round trip.
    from_json = BetaBernoulliGate.from_config(json.loads(json.dumps(config)))
    assert from_json.get_config() == config
    # Registered: keras can deserialise it by its registered name.
    revived = keras.layers.deserialize(keras.layers.serialize(gate))
    assert isinstance(revived, BetaBernoulliGate)
    assert revived.get_config() == config


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": 0.0}, {"threshold": 1.0}, {"prior_concentration1": 0.0}],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        BetaBernoulliGate(**kwargs)


@pytest.mark.parametrize(
    "shape", [(2, 5, 5, 3), (4, 6)], ids=["conv", "dense"]
)
def test_build_and_call_shapes(shape):
    units = shape[-1]
    gate = BetaBernoulliGate(
        concentration1_init=1.5, concentration0_init=0.25, seed=0
    )
    gate.build(shape)
    assert gate.units == units
    assert tuple(gate.concentration1_raw.shape) == (units,)
    assert tuple(gate.concentration0_raw.shape) == (units,)
    np.testing.assert_array_equal(gate.concentration1_raw.numpy(), 1.5)
    np.testing.assert_array_equal(gate.concentration0_raw.numpy(), 0.25)
    assert len(gate.trainable_variables) == 2

    x = np.random.RandomState(0).uniform(size=shape).astype("float32")
    for training in (False, True):
        assert tuple(gate(x, training=training).shape) == shape

    # Symbolic call inside a functional model, then eager use of the model.
    inputs = keras.Input(shape=shape[1:])
    outputs = BetaBernoulliGate(seed=0)(inputs)
    assert tuple(outputs.shape) == (None, *shape[1:])
    model = keras.Model(inputs, outputs)
    assert tuple(model(x).shape) == shape
    assert tuple(model(x, training=True).shape) == shape


def test_keras_save_and_load_gives_equal_outputs(tmp_path):
    model = _tiny_gated_model()
    gate = model.get_layer("gate")
    # Move the gate off its initial values, so loading must restore them.
    gate.concentration1_raw.assign([-12.0, -0.5, 0.7, 3.0])
    gate.concentration0_raw.assign([0.1, 2.0, -1.0, 0.5413])
    x = np.random.RandomState(1).normal(size=(5, 6)).astype("float32")
    expected = model.predict(x, verbose=0)

    path = tmp_path / "gated.keras"
    model.save(path)
    # No custom_objects: the gate is a registered serializable.
    loaded = keras.saving.load_model(path)

    assert isinstance(loaded.get_layer("gate"), BetaBernoulliGate)
    np.testing.assert_array_equal(
        loaded.get_layer("gate").concentration1_raw.numpy(),
        gate.concentration1_raw.numpy(),
    )
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


def test_one_fit_step_updates_gate_variables():
    model = _tiny_gated_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    gate = model.get_layer("gate")
    before = [v.numpy().copy() for v in gate.trainable_variables]
    rng = np.random.RandomState(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.randint(0, 3, size=(16,))

    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)

    assert np.isfinite(history.history["loss"][0])
    for old, variable in zip(before, gate.trainable_variables):
        new = variable.numpy()
        assert np.all(np.isfinite(new))
        # Adam's first step moves every parameter with a non-zero gradient
        # by about the learning rate.
        assert not np.allclose(new, old), variable.name


# === Closed forms against tfp ===

_RAW_B_GRID = np.linspace(-10.0, 50.0, 31)
# Relative accuracy asked of E[pi]: float32 has eps 1.2e-7 and E[pi] has a
# condition number up to about b = 50 in the parameters, so about 1e-5 is
# attainable (tfd.Kumaraswamy.mean in float32 reaches it over this grid);
# 1e-4 leaves a factor of 10.
_MEAN_RTOL = 1e-4
# True means below float32's normal range may flush to zero.
_MEAN_ATOL = 100 * float(np.finfo(np.float32).tiny)


@pytest.mark.parametrize("raw_a", np.arange(-10.0, 11.0))
def test_keep_probability_matches_tfp_mean(raw_a):
    gate = _gate(len(_RAW_B_GRID), raw_a, _RAW_B_GRID)
    concentration1 = gate.concentration1()
    concentration0 = gate.concentration0()
    # Reference: tfp's mean in float64 at the same (float32) parameters.
    expected = tfd.Kumaraswamy(
        tf.cast(concentration1, tf.float64),
        tf.cast(concentration0, tf.float64),
    ).mean()

    np.testing.assert_allclose(
        gate.keep_probability(), expected, rtol=_MEAN_RTOL, atol=_MEAN_ATOL
    )
    np.testing.assert_allclose(
        kumaraswamy_mean(concentration1, concentration0),
        expected,
        rtol=_MEAN_RTOL,
        atol=_MEAN_ATOL,
    )


def test_pruning_decision_matches_tfp_mean_on_whole_grid():
    # What the threshold decides must not depend on the precision issue of
    # the test above: active() == (tfp mean > threshold) everywhere.
    raw_a, raw_b = np.meshgrid(np.arange(-10.0, 11.0), _RAW_B_GRID)
    gate = _gate(raw_a.size, raw_a.ravel(), raw_b.ravel())
    expected = tfd.Kumaraswamy(
        tf.cast(gate.concentration1(), tf.float64),
        tf.cast(gate.concentration0(), tf.float64),
    ).mean()
    np.testing.assert_array_equal(
        gate.active(), expected.numpy() > gate.threshold
    )


@pytest.mark.parametrize("use_tf_function", [False, True])
def test_logit_is_finite_at_zero_and_one(use_tf_function):
    # Graph optimisation folded the reference code's 1e-20 away (SPEC
    # pitfall 1), so the graph path is tested too. Inputs are log p:
    # -inf is p = 0 and 0 is p = 1, exactly.
    fn = (tf.function(logit_from_log_prob) if use_tf_function
          else logit_from_log_prob)
    log_probs = tf.constant(
        [-np.inf, 0.0, np.log(0.25), np.log(0.5)], dtype=tf.float32
    )
    with tf.GradientTape() as tape:
        tape.watch(log_probs)
        logits = fn(log_probs)
    gradient = tape.gradient(logits, log_probs)

    assert logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))
    assert np.all(np.isfinite(gradient.numpy()))
    # p = 0 and 1 map to the far ends, in the right order.
    assert logits[0] < -10.0
    assert logits[1] > 10.0
    # Inside (0, 1) it is the logit, with d logit / d log p = 1 / (1 - p).
    np.testing.assert_allclose(logits[2:], [-np.log(3.0), 0.0], atol=1e-6)
    np.testing.assert_allclose(gradient[2:], [4.0 / 3.0, 2.0], rtol=1e-5)


@pytest.mark.parametrize("a, b", [(0.31, 1.0), (2.0, 3.0), (0.05, 20.0)])
def test_log_space_sampler_follows_the_kumaraswamy_cdf(a, b):
    """Kolmogorov-Smirnov against F(x) = 1 - (1 - x^a)^b."""
    n = 100_000
    log_pi = kumaraswamy_log_sample(
        tf.fill([n], a), tf.fill([n], b), seed=tf.constant([3, 4])
    ).numpy().astype(np.float64)
    # The CDF in log space: x^a = exp(a log x).
    cdf = -np.expm1(b * np.log1p(-np.exp(a * np.sort(log_pi))))
    empirical = np.arange(1, n + 1) / n
    statistic = np.max(np.abs(cdf - empirical))
    # 1.95 / sqrt(n) is the 0.1% critical value of the KS statistic.
    assert statistic < 1.95 / np.sqrt(n)


def test_log_space_sampler_gradients_are_finite_where_tfp_gave_nan():
    """b = 50 (pruned units get there): tfd.Kumaraswamy.sample returned
    pi = 0 with NaN gradients for 2 of these 2,000,000 draws."""
    n = 2_000_000
    a = tf.Variable(tf.fill([n], 0.3))
    b = tf.Variable(tf.fill([n], 50.0))
    with tf.GradientTape() as tape:
        logits = logit_from_log_prob(
            kumaraswamy_log_sample(a, b, seed=tf.constant([1, 2]))
        )
    gradients = tape.gradient(logits, [a, b])
    assert np.all(np.isfinite(logits.numpy()))
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))


def test_kl_and_gradients_finite_at_clamp_extremes():
    raw_a, raw_b = np.meshgrid([-25.0, -10.0, 10.0], [-25.0, -10.0, 50.0, 75.0])
    gate = _gate(raw_a.size, raw_a.ravel(), raw_b.ravel())
    with tf.GradientTape() as tape:
        per_unit = kumaraswamy_beta_kl(
            gate.concentration1(),
            gate.concentration0(),
            gate.prior_concentration1,
        )
        kl = gate.kl_divergence()
    gradients = tape.gradient(kl, gate.trainable_variables)

    assert np.all(np.isfinite(per_unit.numpy()))
    assert np.isfinite(kl.numpy())
    np.testing.assert_allclose(kl, tf.reduce_sum(per_unit), rtol=1e-6)
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))
    # The clamps: raw a below -10 acts as -10, raw b outside [-10, 50] as
    # the nearest end.
    concentration1 = gate.concentration1().numpy().reshape(raw_a.shape)
    concentration0 = gate.concentration0().numpy().reshape(raw_a.shape)
    np.testing.assert_array_equal(concentration1[:, 0], concentration1[:, 1])
    np.testing.assert_array_equal(concentration0[0], concentration0[1])
    np.testing.assert_array_equal(concentration0[3], concentration0[2])


@pytest.mark.parametrize("use_tf_function", [False, True])
def test_training_call_finite_for_thousands_of_extreme_units(use_tf_function):
    raw_a, raw_b = np.meshgrid(
        [-30.0, -10.0, -5.0, 0.0, 10.0, 30.0], [-20.0, -10.0, 0.5, 50.0, 60.0]
    )
    units = 4096
    gate = _gate(
        units,
        np.resize(raw_a.ravel(), units),
        np.resize(raw_b.ravel(), units),
        seed=1,
    )
    x = tf.constant(
        np.random.RandomState(0).normal(size=(16, units)).astype("float32")
    )

    def forward_backward(x):
        with tf.GradientTape() as tape:
            y = gate(x, training=True)
            loss = tf.reduce_sum(y**2) + gate.kl_divergence()
        return y, tape.gradient(loss, gate.trainable_variables)

    if use_tf_function:
        # Graph optimisation is where the reference code's guard vanished.
        forward_backward = tf.function(forward_backward)
    for _ in range(5):
        y, gradients = forward_backward(x)
        assert np.all(np.isfinite(y.numpy()))
        for gradient in gradients:
            assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize(
    "concentration1, concentration0, prior_concentration1",
    [
        # The paper's LeNet initialisation (raw a = -1, b = 1), alpha 1e-4.
        (float(tf.nn.softplus(-1.0)), 1.0, 1e-4),
        (2.0, 0.5, 1e-4),
        (0.8, 3.0, 0.5),
        (1.0, 1.0, 0.5),
    ],
)
def test_kl_matches_monte_carlo(
    concentration1, concentration0, prior_concentration1
):
    gate = _gate(
        1,
        _inverse_softplus(concentration1),
        _inverse_softplus(concentration0),
        prior_concentration1=prior_concentration1,
    )
    # The float32 parameters the gate actually uses, in float64 for the MC.
    a = tf.cast(gate.concentration1(), tf.float64)
    b = tf.cast(gate.concentration0(), tf.float64)
    posterior = tfd.Kumaraswamy(a, b)
    prior = tfd.Beta(tf.constant(prior_concentration1, tf.float64), 1.0)
    samples = posterior.sample(200_000, seed=(1, 2))
    log_ratio = posterior.log_prob(samples) - prior.log_prob(samples)
    log_ratio = log_ratio.numpy()
    estimate = log_ratio.mean()
    standard_error = log_ratio.std() / np.sqrt(log_ratio.size)
    # The check is only meaningful if the MC is precise.
    assert standard_error < 0.01

    closed_form = kumaraswamy_beta_kl(a, b, prior_concentration1).numpy()
    assert abs(closed_form[0] - estimate) < NUM_STANDARD_ERRORS * standard_error
    # The gate (float32) gives the same value.
    np.testing.assert_allclose(gate.kl_divergence(), closed_form[0], rtol=1e-5)


# === Training-mode masks ===


def test_training_masks_per_example_and_in_unit_interval():
    gate = _gate(50, 0.0, 0.5413, seed=3)
    mask = gate(tf.ones((8, 50)), training=True).numpy()
    assert np.all((mask >= 0.0) & (mask <= 1.0))
    for i in range(8):
        for j in range(i):
            assert not np.array_equal(mask[i], mask[j]), (i, j)

    # Conv maps: one mask value per example and channel, shared over space.
    conv_mask = gate(tf.ones((4, 3, 3, 50)), training=True).numpy()
    np.testing.assert_array_equal(
        conv_mask, np.broadcast_to(conv_mask[:, :1, :1, :], conv_mask.shape)
    )
    assert not np.array_equal(conv_mask[0, 0, 0], conv_mask[1, 0, 0])


def test_training_masks_reproducible_for_fixed_seed():
    x = tf.ones((4, 30))
    first = _gate(30, 0.0, 0.5413, seed=42)
    second = _gate(30, 0.0, 0.5413, seed=42)
    other_seed = _gate(30, 0.0, 0.5413, seed=43)

    calls_first = [first(x, training=True).numpy() for _ in range(2)]
    calls_second = [second(x, training=True).numpy() for _ in range(2)]

    # Same seed: the same sequence of masks.
    np.testing.assert_array_equal(calls_first[0], calls_second[0])
    np.testing.assert_array_equal(calls_first[1], calls_second[1])
    # Successive calls draw new masks; another seed draws other masks.
    assert not np.array_equal(calls_first[0], calls_first[1])
    assert not np.array_equal(
        calls_first[0], other_seed(x, training=True).numpy()
    )


def _per_unit_mask_means(gate, batch_size):
    """Mean mask of each unit over a batch: iid across units.

    Examples of one call share the unit's pi, so they are not independent;
    the units are, which gives an honest standard error.
    """
    mask = gate(tf.ones((batch_size, gate.units)), training=True)
    return tf.reduce_mean(mask, axis=0).numpy().astype(np.float64)


def test_mean_mask_is_half_for_uniform_keep_probability():
    # a = b = 1: pi ~ Uniform(0, 1), E[pi] = 1/2. logit(pi) is then a
    # standard logistic, symmetric around 0, and the relaxed mask
    # sigmoid((logit(pi) + noise) / T) maps (pi, noise) -> 1 - mask under
    # the symmetry, so E[mask] = 1/2 exactly at any temperature.
    raw_one = _inverse_softplus(1.0)
    gate = _gate(20_000, raw_one, raw_one, seed=5)
    np.testing.assert_allclose(gate.keep_probability(), 0.5, rtol=1e-5)
    means = _per_unit_mask_means(gate, batch_size=16)
    standard_error = means.std() / np.sqrt(means.size)
    assert abs(means.mean() - 0.5) < NUM_STANDARD_ERRORS * standard_error


def test_mean_mask_matches_relaxed_bernoulli_monte_carlo():
    # a = 2, b = 1: E[pi] = b B(1 + 1/a, b) = 2/3. At temperature 0.1 the
    # relaxed Bernoulli's mean is not exactly its probability (it is off by
    # about 1e-3 near p = 2/3, as large as the standard error here), so the
    # reference is a Monte Carlo of pi ~ Kumaraswamy(a, b), mask ~
    # RelaxedBernoulli(0.1, probs=pi) drawn with tfp. Its draws are
    # independent of the layer's, so the two standard errors add.
    gate = _gate(20_000, _inverse_softplus(2.0), _inverse_softplus(1.0), seed=6)
    np.testing.assert_allclose(gate.keep_probability(), 2.0 / 3.0, rtol=1e-4)
    means = _per_unit_mask_means(gate, batch_size=16)

    a = tf.cast(gate.concentration1()[0], tf.float64)
    b = tf.cast(gate.concentration0()[0], tf.float64)
    pi = tfd.Kumaraswamy(a, b).sample(400_000, seed=(3, 4))
    reference = tfd.RelaxedBernoulli(
        tf.constant(gate.temperature, tf.float64), probs=pi
    ).sample(seed=(5, 6))
    reference = reference.numpy()

    standard_error = np.hypot(
        means.std() / np.sqrt(means.size),
        reference.std() / np.sqrt(reference.size),
    )
    difference = means.mean() - reference.mean()
    assert abs(difference) < NUM_STANDARD_ERRORS * standard_error


# === Inference mode ===


def test_pruned_units_output_exact_zero_at_inference():
    raw_a = np.array([-10.0, 0.0, -10.0, 2.0, -1.0, -12.0])
    pruned = raw_a <= -10.0
    gate = _gate(6, raw_a, 0.5413)
    keep = gate.keep_probability().numpy()
    # b = 1: E[pi] = a / (a + 1) with a = softplus(-10) = 4.5e-5.
    assert np.all(keep[pruned] < gate.threshold)
    assert np.all(keep[~pruned] > gate.threshold)

    np.testing.assert_array_equal(gate.active(), ~pruned)
    assert int(gate.active_units()) == int((~pruned).sum())

    x = np.random.RandomState(0).uniform(0.1, 1.0, size=(2, 4, 4, 6))
    x = x.astype("float32")
    y = gate(x, training=False).numpy()
    assert np.all(y[..., pruned] == 0.0)
    np.testing.assert_allclose(
        y[..., ~pruned], x[..., ~pruned] * keep[~pruned], rtol=1e-6
    )


def test_inference_is_deterministic():
    gate = _gate(10, np.linspace(-3.0, 3.0, 10), 0.5413, seed=0)
    x = np.random.RandomState(0).normal(size=(4, 10)).astype("float32")
    first = gate(x, training=False)
    np.testing.assert_array_equal(first, gate(x, training=False))
    # training defaults to False.
    np.testing.assert_array_equal(first, gate(x))
