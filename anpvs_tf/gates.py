"""Beta-Bernoulli dropout gates: the learnable pruning masks of ANP-VS.

This is the only module that imports tensorflow-probability.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from anpvs_tf.replicas import sample_for_global_batch

tfd = tfp.distributions

# Clamps of the raw parameters, as in the reference implementation: they keep
# softplus away from 0 (division by a) and from overflow (lgamma of b).
_CONCENTRATION1_RAW_MIN = -10.0
_CONCENTRATION0_RAW_RANGE = (-10.0, 50.0)

# log of the smallest and of the largest float32 strictly inside (0, 1).
_LOG_PROB_RANGE = (
    float(np.log(np.finfo(np.float32).tiny)),
    float(np.log1p(-np.finfo(np.float32).epsneg)),
)
# The SPEC's uniform range for the Kumaraswamy inverse CDF.
_UNIFORM_MIN = 1e-10


def logit_from_log_prob(log_probs):
    """logit(p) from log p, finite (value and gradient) even for p = 0 or 1.

    The reference code computed log(p + 1e-20) - log(1 - p + 1e-20); in
    float32 the 1e-20 vanishes, a sample that rounds to 1.0 gives +inf and
    training turns to NaN (SPEC pitfall 1). Clipping log p to the log of the
    open float32 interval costs nothing: at temperature 0.1 a logit of +-16
    already saturates the relaxed mask.
    """
    log_probs = tf.clip_by_value(log_probs, *_LOG_PROB_RANGE)
    return log_probs - tf.math.log(-tf.math.expm1(log_probs))


def kumaraswamy_log_sample(concentration1, concentration0, seed):
    """log pi for pi ~ Kumaraswamy(a, b), one draw per element, in log space.

    Inverse CDF, pi = (1 - u^(1/b))^(1/a), u ~ U(1e-10, 1), written as
    log pi = log(-expm1(log(u) / b)) / a, which is finite with a finite
    gradient for every u in (0, 1). tfd.Kumaraswamy.sample rounds
    1 - (1 - u)^(1/b) to 0 for large b and returns pi = 0 with a NaN
    gradient (measured: 2 in 2,000,000 draws at b = 50, a value that units
    being pruned reach; it ended a 60-epoch run in NaN at epoch 36).
    """
    a, b = concentration1, concentration0
    u = tf.random.stateless_uniform(
        tf.shape(a), seed=seed, minval=_UNIFORM_MIN, maxval=1.0
    )
    return tf.math.log(-tf.math.expm1(tf.math.log(u) / b)) / a


def kumaraswamy_beta_kl(concentration1, concentration0, prior_concentration1):
    """KL(Kumaraswamy(a, b) || Beta(alpha, 1)), elementwise, closed form.

    TFP registers no Kumaraswamy-to-Beta KL. With a Beta prior whose second
    concentration is 1 the infinite series of the general formula vanishes.
    """
    a, b, alpha = concentration1, concentration0, prior_concentration1
    euler_gamma = np.euler_gamma
    return (
        (1.0 - alpha / a) * (-euler_gamma - tf.math.digamma(b) - 1.0 / b)
        + tf.math.log(a * b / alpha)
        - (b - 1.0) / b
    )


def kumaraswamy_mean(concentration1, concentration0):
    """E[pi] = b * B(1 + 1/a, b).

    tfp.math.lbeta, not lgamma(1 + 1/a) + lgamma(b) - lgamma(1 + 1/a + b):
    for a near its floor (1/a ~ 2e4) the lgamma terms are ~2e5 and their
    float32 difference loses ~2% of E[pi] (measured against tfp).
    """
    a, b = concentration1, concentration0
    return b * tf.exp(tfp.math.lbeta(1.0 + 1.0 / a, b))


@keras.saving.register_keras_serializable(package="anpvs_tf")
class BetaBernoulliGate(keras.layers.Layer):
    """Multiplies each feature channel by a learned Beta-Bernoulli keep mask.

    One gate per unit of the last axis (a conv output channel or a dense
    unit). In training, a keep probability pi ~ Kumaraswamy(a, b) is drawn
    per unit and a relaxed Bernoulli mask (temperature 0.1) per example and
    unit. At inference the mask is the deterministic E[pi], with units whose
    E[pi] is at most `threshold` set to exactly zero (pruned), so evaluation
    and export are repeatable.

    Args:
        concentration1_init: initial raw (pre-softplus) value of a. The paper
            uses -1.0 (E[pi] ~ 0.24) for LeNet and VGG dense gates and 2.0
            for VGG conv gates.
        concentration0_init: initial raw value of b; 0.5413 gives b = 1.
        temperature: temperature of the relaxed Bernoulli mask.
        threshold: units with E[pi] <= threshold are pruned at inference.
        prior_concentration1: alpha of the Beta(alpha, 1) prior.
        seed: int seed of the layer's random stream, or None.

    Call arguments:
        inputs: a tensor whose last axis holds the gated units.
        training: sample masks when True (unless the gate is `frozen`);
            use E[pi] otherwise.

    Reference:
        Madaan et al., 2020, "Adversarial Neural Pruning with Latent
        Vulnerability Suppression" (ANP-VS); Lee et al., 2018, "Adaptive
        Network Sparsification with Dependent Variational Beta-Bernoulli
        Dropout".
    """

    def __init__(
        self,
        concentration1_init=-1.0,
        concentration0_init=0.5413,
        temperature=0.1,
        threshold=1e-3,
        prior_concentration1=1e-4,
        seed=None,
        **kwargs,
    ):
        # float32 under any mixed-precision policy: the Kumaraswamy draws,
        # their logits and the KL need float32's precision and range.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(
                f"`temperature` must be positive. Received: {temperature=}"
            )
        if not 0 <= threshold < 1:
            raise ValueError(
                f"`threshold` must be in [0, 1). Received: {threshold=}"
            )
        if prior_concentration1 <= 0:
            raise ValueError(
                "`prior_concentration1` must be positive. "
                f"Received: {prior_concentration1=}"
            )
        # === Config ===
        self.concentration1_init = float(concentration1_init)
        self.concentration0_init = float(concentration0_init)
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        self.prior_concentration1 = float(prior_concentration1)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        # === State ===
        # Frozen gates use the inference mask in training too (set by
        # ANPVSModel.freeze_gates for the fine-tuning phase).
        self.frozen = False
        # Set while an attack traces with this gate folded into a kernel
        # (folding.py): the inference-mode call then passes inputs through.
        self.bypassed = False

    def build(self, input_shape):
        units = input_shape[-1]
        self.concentration1_raw = self.add_weight(
            name="concentration1_raw",
            shape=(units,),
            initializer=keras.initializers.Constant(self.concentration1_init),
        )
        self.concentration0_raw = self.add_weight(
            name="concentration0_raw",
            shape=(units,),
            initializer=keras.initializers.Constant(self.concentration0_init),
        )

    @property
    def units(self):
        return int(self.concentration1_raw.shape[0])

    def concentration1(self):
        raw = tf.maximum(self.concentration1_raw, _CONCENTRATION1_RAW_MIN)
        return tf.nn.softplus(raw)

    def concentration0(self):
        raw = tf.clip_by_value(
            self.concentration0_raw, *_CONCENTRATION0_RAW_RANGE
        )
        return tf.nn.softplus(raw)

    def keep_probability(self):
        """E[pi] per unit (before thresholding)."""
        return kumaraswamy_mean(self.concentration1(), self.concentration0())

    def active(self):
        """Boolean [units]: True for units that survive pruning."""
        return self.keep_probability() > self.threshold

    def inference_mask(self):
        """E[pi] on active units, exactly 0 on pruned ones."""
        keep = self.keep_probability()
        return tf.where(keep > self.threshold, keep, tf.zeros_like(keep))

    def active_units(self):
        return tf.reduce_sum(tf.cast(self.active(), tf.int32))

    def kl_divergence(self):
        """Sum over units of KL(q(pi) || Beta(alpha, 1))."""
        return tf.reduce_sum(
            kumaraswamy_beta_kl(
                self.concentration1(),
                self.concentration0(),
                self.prior_concentration1,
            )
        )

    def _tfp_seed(self):
        seed = self.seed_generator.next()
        return tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)

    def sample_mask(self, batch_size):
        """A relaxed Bernoulli mask [batch_size, units], one row per example.

        One pi ~ Kumaraswamy(a, b) per unit, then RelaxedBernoulli(0.1,
        logit(pi)) per example, drawn as the sigmoid of a Logistic(logit /
        T, 1 / T) sample: tfd.RelaxedBernoulli.sample's sigmoid bijector
        gave NaN gradients on about 1 draw in 3,000 once saturated
        (measured); tf.sigmoid's gradient is finite everywhere.
        """
        log_pi = kumaraswamy_log_sample(
            self.concentration1(), self.concentration0(), self._tfp_seed()
        )
        logistic = tfd.Logistic(
            loc=logit_from_log_prob(log_pi) / self.temperature,
            scale=1.0 / self.temperature,
        )
        seed = self._tfp_seed()
        return sample_for_global_batch(
            lambda n: tf.sigmoid(logistic.sample(n, seed=seed)), batch_size
        )

    def call(self, inputs, training=False):
        if self.bypassed and not training:
            return inputs
        if training and not self.frozen:
            mask = self.sample_mask(tf.shape(inputs)[0])
            # Broadcast [batch, units] over the spatial axes of conv maps.
            for _ in range(len(inputs.shape) - 2):
                mask = tf.expand_dims(mask, 1)
        else:
            mask = self.inference_mask()
        return inputs * tf.cast(mask, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "concentration1_init": self.concentration1_init,
                "concentration0_init": self.concentration0_init,
                "temperature": self.temperature,
                "threshold": self.threshold,
                "prior_concentration1": self.prior_concentration1,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="anpvs_tf")
class FrozenGate(keras.layers.Layer):
    """A frozen gate on the units a compact network still carries.

    Multiplies unit k by its fixed inference mask (E[pi], or 0 where the
    unit is carried only as an exact zero), as a frozen BetaBernoulliGate
    does in training and at inference. It reports what the full gate
    would: its width, its surviving units and its (constant) KL, so a
    model training the compact network logs the same sparsity and losses
    as the masked one (anpvs_tf.compact_training).

    Args:
        full_units: the width of the gate it replaces.
        active: how many of those survive pruning.
        kl: that gate's KL term, a constant once frozen.
    """

    def __init__(self, full_units, active, kl, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.full_units = int(full_units)
        self.active_count = int(active)
        self.kl = float(kl)
        # Frozen by construction: ANPVSModel trains no gate parameter.
        self.frozen = True
        self.bypassed = False  # as BetaBernoulliGate's

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale", shape=(input_shape[-1],), initializer="ones",
            trainable=False,
        )

    @property
    def units(self):
        return self.full_units

    def active_units(self):
        return tf.constant(self.active_count, tf.int32)

    def kl_divergence(self):
        return tf.constant(self.kl, tf.float32)

    def call(self, inputs, training=False):
        if self.bypassed and not training:
            return inputs
        return inputs * tf.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "full_units": self.full_units,
                "active": self.active_count, "kl": self.kl}
