"""ANPVSModel: the training and evaluation steps of every method."""

import keras
import tensorflow as tf

from anpvs_tf import losses
from anpvs_tf import precision
from anpvs_tf.attacks import pgd_attack
from anpvs_tf.config import AttackConfig
from anpvs_tf.folding import fold_plan
from anpvs_tf.folding import folded_scope
from anpvs_tf.layers import gates_of
from anpvs_tf.methods import OBJECTIVES
from anpvs_tf.replicas import num_replicas
from anpvs_tf.replicas import reducible_logs
from anpvs_tf.trades import trades_attack
from anpvs_tf.trades import trades_kl

_TRAIN_METRICS = (
    "loss",
    "ce_loss",
    "adv_ce_loss",
    "vs_loss",
    "kl_loss",
    "trades_loss",
)
_ACCURACY_METRICS = ("clean_accuracy", "adv_accuracy")
# The monitor's attack stream is seeded seed + this (any fixed offset: it
# only has to differ from the training attack's stream).
_MONITOR_SEED_OFFSET = 7919


class ANPVSModel(keras.Model):
    """Trains a zoo network with one of the methods of the paper's table.

    methods: `standard` (clean CE), `at` (PGD adversarial training),
    `at_pretrained` (the same, started from a trained standard model),
    `trades` (CE(x) + beta_T * KL(p(x) || p(x_adv)), x_adv from the TRADES
    attack), `bp` (Beta-Bernoulli gates, no adversary), `anp` (gates trained
    on the adversarial loss) and `anp_vs` (anp + vulnerability suppression).
    Each is a row of methods.OBJECTIVES: its attack and its two losses.

    For anp_vs, the gate parameters minimise CE(x_adv) + beta * KL / N;
    the weights minimise (CE(x) + w * CE(x_adv)) / (1 + w) + lambda *
    V(x, x_adv) + beta * KL / N + l2 * ||W||^2 / 2, each with its own
    optimizer.
    PGD runs on the inference-mode (deterministic) gates. The clean and the
    adversarial pass draw independent gate masks, as the reference code.
    After `freeze_gates` the gates stop learning and the weights fine-tune
    the pruned network with the inference masks.

    Args:
        network: a zoo network returning {"logits", "features"}.
        method: one of METHODS.
        attack: AttackConfig used to craft training examples.
        eval_attack: AttackConfig used by `evaluate` (test_step).
        kl_weight: beta. kl_normalizer: the N dividing the KL.
        kl_gate_weights: {gate name: multiplier of its KL term}
            (complexity.flops_kl_weights); None: all 1, the paper.
        vs_weight: lambda. adv_weight: w. l2_weight: weight decay.
        trades_weight: TRADES' beta.
        seed: int seed of the attack's random start (training) and of
            the per-epoch monitor's (`evaluate`), two separate streams.
    """

    def __init__(
        self,
        network,
        method="anp_vs",
        attack=None,
        eval_attack=None,
        kl_weight=4.0,
        kl_normalizer=60000,
        kl_gate_weights=None,
        vs_weight=1e-3,
        adv_weight=2.0,
        l2_weight=1e-4,
        trades_weight=6.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if method not in OBJECTIVES:
            raise ValueError(
                f"`method` must be one of {tuple(OBJECTIVES)}. Received: "
                f"{method=}"
            )
        # === Layers ===
        self.network = network
        self.gates = gates_of(network)
        self.fold_plan = fold_plan(network)
        self.objective = OBJECTIVES[method]
        if self.objective.gated != bool(self.gates):
            raise ValueError(
                f"method '{method}' needs a "
                f"{'gated' if self.objective.gated else 'plain'} network"
            )
        # === Config ===
        self.method = method
        self.attack = attack or AttackConfig()
        self.eval_attack = eval_attack or self.attack
        self.kl_weight = float(kl_weight)
        self.kl_normalizer = float(kl_normalizer)
        self.kl_gate_weights = dict(kl_gate_weights or {})
        self.vs_weight = float(vs_weight)
        self.adv_weight = float(adv_weight)
        self.l2_weight = float(l2_weight)
        self.trades_weight = float(trades_weight)
        self.seed = seed
        self.attack_seed_generator = keras.random.SeedGenerator(seed)
        # === Variables ===
        gate_ids = {id(v) for gate in self.gates for v in gate.variables}
        self.gate_variables = [
            v for v in network.trainable_variables if id(v) in gate_ids
        ]
        self.weight_variables = [
            v for v in network.trainable_variables if id(v) not in gate_ids
        ]
        self.kernels = [
            layer.kernel
            for layer in network.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        ]
        # === Metrics ===
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in _TRAIN_METRICS
        }
        for name in _ACCURACY_METRICS:
            self.trackers[name] = keras.metrics.SparseCategoricalAccuracy(
                name=name
            )
        # The monitor's PGD starts come from a stream of their own, so how
        # many examples the monitor attacks never changes the training run.
        self.monitor_seed_generator = keras.random.SeedGenerator(
            None if seed is None else seed + _MONITOR_SEED_OFFSET)

    def on_network(self, network):
        """This model's method and settings on another network (the
        compact fine-tune's), its attack's random stream continuing this
        one's. Build it in the same distribution strategy scope."""
        other = type(self)(
            network,
            method=self.method,
            attack=self.attack,
            eval_attack=self.eval_attack,
            kl_weight=self.kl_weight,
            kl_normalizer=self.kl_normalizer,
            kl_gate_weights=self.kl_gate_weights,
            vs_weight=self.vs_weight,
            adv_weight=self.adv_weight,
            l2_weight=self.l2_weight,
            trades_weight=self.trades_weight,
            seed=self.seed,
        )
        for name in ("attack_seed_generator", "monitor_seed_generator"):
            getattr(other, name).state.assign(getattr(self, name).state)
        return other

    @property
    def adversarial(self):
        return self.objective.attack is not None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, optimizer="adam", gate_optimizer=None, **kwargs):
        """Compiles with one optimizer for weights and one for gates.

        Under mixed_float16 Keras wraps the weight optimizer in loss
        scaling; the gate optimizer gets the same wrapper here.
        """
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.weight_variables)
        self.gate_optimizer = None
        if self.gates:
            self.gate_optimizer = keras.optimizers.get(
                gate_optimizer or "adam"
            )
            if precision.needs_loss_scaling(self):
                self.gate_optimizer = precision.loss_scaled(
                    self.gate_optimizer
                )
            self.gate_optimizer.build(self.gate_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) all-reduces a real data batch across replicas here
        # only to learn the input shapes, which fails under
        # MultiWorkerMirroredStrategy (a tuple of PerReplica values); the
        # network's own input gives the shapes without touching the data.
        # No public hook avoids it: keras/src/backend/tensorflow/
        # trainer.py reduces the batch before it looks at `built`, so
        # building the model first (build(), a call) does not help.
        spec = (
            self.network.inputs[0],
            keras.KerasTensor((None,), dtype="int64"),
        )
        super()._maybe_symbolic_build(data_batch=spec)

    def _forward(self, x, training):
        """Network outputs in float32, whatever the layers' policy: the
        losses and metrics are computed from them (precision.py)."""
        outputs = self.network(x, training=training)
        return tf.nest.map_structure(
            lambda t: tf.cast(t, tf.float32), outputs
        )

    def call(self, inputs, training=False):
        return self._forward(inputs, training)["logits"]

    def attack_logits_fn(self):
        """images -> inference-mode logits, for an attack's many passes:
        the foldable gates folded into their kernels (folding.py), the
        masks read once per call of this method."""
        folded = folded_scope(self.fold_plan)

        def logits(images):
            with folded():
                return self._forward(images, False)["logits"]

        return logits

    def craft(self, x, y, attack, seed_generator=None):
        """Adversarial examples against the inference-mode network, their
        random starts from `seed_generator` (default: the training
        attack's)."""
        return pgd_attack(
            self.attack_logits_fn(),
            x,
            y,
            epsilon=attack.epsilon,
            step_size=attack.step_size,
            num_steps=attack.num_steps,
            random_start=attack.random_start,
            seed_generator=seed_generator or self.attack_seed_generator,
        )

    def training_examples(self, x, y):
        """The adversarial examples a method trains on (None: clean only)."""
        if self.objective.attack == "trades":
            return trades_attack(
                self.attack_logits_fn(),
                x,
                epsilon=self.attack.epsilon,
                step_size=self.attack.step_size,
                num_steps=self.attack.num_steps,
                seed_generator=self.attack_seed_generator,
            )
        if self.objective.attack == "pgd":
            return self.craft(x, y, self.attack)
        return None

    def active_units(self):
        """Gated units that survive pruning at inference, over all gates."""
        return tf.add_n([g.active_units() for g in self.gates])

    def unit_sparsity(self, active_units=None):
        """Percentage of gated units pruned at inference (0 if ungated).

        `active_units`, when the caller has it, saves recomputing it.
        """
        if not self.gates:
            return tf.constant(0.0)
        if active_units is None:
            active_units = self.active_units()
        total = sum(g.units for g in self.gates)
        # Integer difference first: 1 - active / total leaves float noise.
        pruned = total - active_units
        return 100.0 * tf.cast(pruned, tf.float32) / total

    def _loss_terms(self, x, y, x_adv=None):
        """Forward passes and every loss term, for one (local) batch.

        Returns (weight loss, gate loss or None if ungated, the tracked
        terms, the logits scored by the accuracy metrics).
        """
        clean = self._forward(x, training=True)
        terms = {"ce_loss": losses.cross_entropy(y, clean["logits"])}
        logits = {"clean_accuracy": clean["logits"]}
        if x_adv is not None:
            adv = self._forward(x_adv, training=True)
            logits["adv_accuracy"] = adv["logits"]
            terms["adv_ce_loss"] = losses.cross_entropy(y, adv["logits"])
            terms["vs_loss"] = losses.vulnerability(
                clean["features"], adv["features"]
            )
            if "trades_loss" in self.objective.terms:
                terms["trades_loss"] = trades_kl(
                    clean["logits"], adv["logits"]
                )
        if self.gates:
            terms["kl_loss"] = (
                self.kl_weight
                * losses.gate_kl(self.gates, self.kl_gate_weights)
                / self.kl_normalizer
            )
        # Terms of the losses that are not tracked on their own.
        parts = {
            **terms,
            "l2_penalty": losses.l2_penalty(self.kernels),
        }
        if x_adv is not None:
            parts["mixed_ce_loss"] = (
                terms["ce_loss"] + self.adv_weight * terms["adv_ce_loss"]
            ) / (1.0 + self.adv_weight)
        weight_loss = self._weighted_sum(self.objective.weight_loss, parts)
        gate_loss = (
            self._weighted_sum(self.objective.gate_loss, parts)
            if self.gates else None
        )
        terms["loss"] = weight_loss
        return weight_loss, gate_loss, terms, logits

    def _weighted_sum(self, objective_terms, parts):
        """sum of parts[term] * self.<weight>, added left to right."""
        total = None
        for name, weight in objective_terms:
            value = parts[name]
            if weight is not None:
                value = getattr(self, weight) * value
            total = value if total is None else total + value
        return total

    def train_step(self, data):
        x, y = data[:2]
        # Gradients are summed over replicas: scale every term once.
        replicas = num_replicas()
        # The attack runs before the tape: nothing differentiates through it.
        x_adv = self.training_examples(x, y)
        learn_gates = bool(self.gates) and not self.gates_frozen
        with tf.GradientTape(persistent=learn_gates) as tape:
            weight_loss, gate_loss, terms, logits = self._loss_terms(
                x, y, x_adv
            )
            weight_loss = weight_loss / replicas
            # Loss scaling (mixed_float16 only; identity otherwise):
            # apply() unscales the gradients.
            weight_loss = self.optimizer.scale_loss(weight_loss)
            if learn_gates:
                gate_loss = self.gate_optimizer.scale_loss(
                    gate_loss / replicas)
        weight_grads = tape.gradient(weight_loss, self.weight_variables)
        if learn_gates:
            gate_grads = tape.gradient(gate_loss, self.gate_variables)
            del tape
            self.gate_optimizer.apply(gate_grads, self.gate_variables)
        self.optimizer.apply(weight_grads, self.weight_variables)
        return self._update_metrics(y, terms, logits)

    def test_step(self, data):
        x, y = data[:2]
        clean = self._forward(x, training=False)
        terms = {"ce_loss": losses.cross_entropy(y, clean["logits"])}
        logits = {"clean_accuracy": clean["logits"]}
        x_adv = self.craft(x, y, self.eval_attack,
                           self.monitor_seed_generator)
        adv = self._forward(x_adv, training=False)
        logits["adv_accuracy"] = adv["logits"]
        terms["adv_ce_loss"] = losses.cross_entropy(y, adv["logits"])
        terms["vs_loss"] = losses.vulnerability(
            clean["features"], adv["features"]
        )
        return self._update_metrics(y, terms, logits)

    def _update_metrics(self, y, terms, logits):
        # Weighted by batch size so a short last batch counts per example.
        batch_size = tf.cast(tf.shape(y)[0], tf.float32)
        for name, value in terms.items():
            self.trackers[name].update_state(value, sample_weight=batch_size)
        for name, value in logits.items():
            self.trackers[name].update_state(y, value)
        logs = {
            name: self.trackers[name].result()
            for name in (*terms, *logits)
        }
        if self.gates:
            # Every gate's keep probability, once per step.
            logs["active_units"] = self.active_units()
            logs["sparsity"] = self.unit_sparsity(logs["active_units"])
        return reducible_logs(logs)

    @property
    def gates_frozen(self):
        return bool(self.gates) and all(g.frozen for g in self.gates)

    def freeze_gates(self):
        """Ends gate learning: from now on every gate keeps its E[pi]
        (pruned units stay exactly 0) in training as at inference, and only
        the weights learn, so they fine-tune the pruned network it will be
        evaluated and exported as, without the sampled masks' noise.

        Retraces the train function (once) if it was already built.
        """
        if self.gates_frozen:
            return
        for gate in self.gates:
            gate.frozen = True
        if self.train_function is not None:
            self.make_train_function(force=True)

    def set_eval_attack(self, attack):
        """Changes the attack of `evaluate` (retraces the test function)."""
        self.eval_attack = attack
        self.test_function = None

    def active_units_per_gate(self):
        return {g.name: int(g.active_units()) for g in self.gates}
