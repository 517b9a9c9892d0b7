"""Frozen experiment configuration and the named recipes of the zoo."""

import dataclasses
import json
import math
from dataclasses import field

from anpvs_tf.data import DATASETS
from anpvs_tf.data import SOURCES as DATA_SOURCES

METHODS = ("standard", "at", "at_pretrained", "trades", "bp", "anp",
           "anp_vs")
GATED_METHODS = ("bp", "anp", "anp_vs")
ADVERSARIAL_METHODS = ("at", "at_pretrained", "trades", "anp", "anp_vs")
# Methods that start from a trained base model (standard unless
# base_method says otherwise).
FROM_BASE_METHODS = (*GATED_METHODS, "at_pretrained")
# Methods of the base model trained when no base_workdir is given.
BASE_METHODS = ("standard", "at")
STRATEGIES = ("default", "mirrored", "auto", "multi_worker")
# Attacks of the evaluation engine (evaluation/engine.py); training
# crafts PGD (or TRADES' own attack, methods.py).
ATTACK_METHODS = ("fgsm", "pgd", "apgd_ce", "apgd_dlr")
# Keras dtype policies; "none" trains in float32.
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")


class ConfigError(ValueError):
    """A user-facing configuration mistake (printed as one line)."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"
    # embedded: the MNIST subset shipped in the package (offline default);
    # idx: IDX .gz files in data_dir; tfds: tensorflow-datasets (online).
    source: str = "embedded"
    data_dir: str | None = None
    # None uses every example of the split.
    train_examples: int | None = None
    test_examples: int | None = None
    # Fixed slice of the test set scored after every epoch (cheap monitor).
    monitor_examples: int = 1000
    # Training examples held out as the validation split of hyper-parameter
    # search (never trained on, never the test set); 0 holds none out.
    validation_examples: int = 0
    # Random 4-pixel pad-and-crop and horizontal flip of training images
    # (the standard CIFAR augmentation); evaluation images are never
    # augmented.
    augment: bool = False


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    architecture: str = "lenet5_caffe"
    # Raw (pre-softplus) initial gate parameters; None keeps the
    # architecture's paper default (-1.0 for LeNet; E[pi] ~ 0.24).
    gate_concentration1_init: float | None = None
    gate_concentration0_init: float = 0.5413


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    epsilon: float = 0.3
    step_size: float = 0.01
    num_steps: int = 20
    random_start: bool = True
    # Read by the evaluation engine only (ATTACK_METHODS, attacks.NORMS);
    # training crafts L-inf PGD with one restart (validate checks it).
    method: str = "pgd"
    norm: str = "linf"
    restarts: int = 1


@dataclasses.dataclass(frozen=True)
class LossConfig:
    # beta: weight of the gate KL term, beta * KL / kl_normalizer.
    kl_weight: float = 4.0
    # The N that divides the KL. The paper's beta assumes N = 60,000 (full
    # MNIST); keeping 60,000 on a subset keeps beta / N equal to the paper's
    # (SPEC pitfall 2). None divides by the actual training-set size.
    kl_normalizer: int | None = 60000
    # lambda: weight of the vulnerability suppression loss.
    vs_weight: float = 1e-3
    adv_weight: float = 2.0
    # TRADES' beta: weight of KL(p(x) || p(x_adv)) (method "trades").
    trades_weight: float = 6.0
    l2_weight: float = 1e-4


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    method: str = "anp_vs"
    epochs: int = 200
    batch_size: int = 64
    weight_learning_rate: float = 1e-3
    gate_learning_rate: float = 1e-2
    # Both learning rates are multiplied by 0.1 at each of these fractions
    # of the total number of steps.
    decay_fractions: tuple = (0.5, 0.7)
    seed: int = 0
    strategy: str = "default"
    # Compute dtype of the network's layers; gates, KL and losses stay
    # float32 whatever it is.
    mixed_precision: str = "none"
    # Gated methods start from a trained base model: a workdir, or None to
    # train one first for base_epochs with base_method ("standard", the
    # paper's; "at" starts pruning from a robust network).
    base_workdir: str | None = None
    base_epochs: int = 10
    base_method: str = "standard"
    # Gated methods: the gates learn for this many epochs, then freeze
    # (their E[pi] masks, pruned units exactly 0, in training too) and the
    # weights fine-tune the pruned network for the remaining epochs.
    # None: the gates learn throughout (the paper).
    gate_epochs: int | None = None


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    attack: AttackConfig = field(
        default_factory=lambda: AttackConfig(num_steps=40)
    )
    batch_size: int = 500


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "attack": AttackConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def from_dict(values):
    """Inverse of ExperimentConfig.to_dict (tuples restored from lists)."""
    sections = {}
    for name, cls in _SECTIONS.items():
        section = dict(values.get(name, {}))
        if name == "eval" and "attack" in section:
            section["attack"] = AttackConfig(**section["attack"])
        if name == "train" and "decay_fractions" in section:
            section["decay_fractions"] = tuple(section["decay_fractions"])
        sections[name] = cls(**section)
    return ExperimentConfig(**sections)


def replace(config, **overrides):
    """Returns a copy with dotted-key overrides, e.g. {"train.epochs": 3}.

    Values of None are ignored, so unset flags keep the recipe's value;
    `assign` sets None too.
    """
    return _apply(config, overrides, skip_none=True)


def assign(config, **values):
    """Like `replace`, but None is a value: {"train.gate_epochs": None}
    clears the field."""
    return _apply(config, values, skip_none=False)


def _apply(config, overrides, skip_none):
    sections = {name: getattr(config, name) for name in _SECTIONS}
    for key, value in overrides.items():
        if value is None and skip_none:
            continue
        section, _, attr = key.partition(".")
        target = sections.get(section)
        if target is None or attr.split(".")[0] not in {
            f.name for f in dataclasses.fields(target)
        }:
            raise ConfigError(f"unknown config key '{key}'")
        if section == "eval" and attr.startswith("attack."):
            attack = dataclasses.replace(
                target.attack, **{attr.split(".", 1)[1]: value}
            )
            sections[section] = dataclasses.replace(target, attack=attack)
        else:
            sections[section] = dataclasses.replace(target, **{attr: value})
    return validate(ExperimentConfig(**sections))


def first_difference(old, new, only_old_keys=False, prefix=""):
    """The first dotted key whose value differs between two nested dicts,
    as "key: old -> new", or None. With `only_old_keys`, keys that `old`
    lacks (settings stored by an older version) are not compared."""
    keys = set(old) if only_old_keys else set(old) | set(new)
    for key in sorted(keys):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, only_old_keys, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a} -> {b}"
    return None


def _choice(value, choices, what):
    return (value in choices,
            f"unknown {what} '{value}'; choose one of {', '.join(choices)}")


def _finite(value, flag, low=None, strict=False):
    """A check that a float setting is finite and above `low`."""
    finite = isinstance(value, (int, float)) and math.isfinite(value)
    if low is None:
        return finite, f"{flag} must be a finite number (got {value})"
    above = finite and (value > low if strict else value >= low)
    sign = ">" if strict else ">="
    return above, f"{flag} must be a finite number {sign} {low} (got {value})"


def validate(config):
    """Raises ConfigError naming the first invalid value and how to fix it.

    Covers ranges (every float finite, with its sign) and settings that
    contradict each other, so a mistake is caught before anything runs.
    """
    data, train, loss = config.data, config.train, config.loss
    gated = train.method in GATED_METHODS
    checks = [
        _choice(train.method, METHODS, "method"),
        _choice(data.dataset, DATASETS, "dataset"),
        _choice(train.base_method, BASE_METHODS, "base method"),
        _choice(data.source, DATA_SOURCES, "data source"),
        _choice(train.strategy, STRATEGIES, "strategy"),
        _choice(train.mixed_precision, MIXED_PRECISION,
                "mixed precision policy"),
        (train.epochs >= 1, "--epochs must be at least 1"),
        (train.batch_size >= 1, "--batch_size must be at least 1"),
        (config.eval.batch_size >= 1, "--eval_batch_size must be at least 1"),
        (0 <= train.seed < 2**32,
         f"--seed must be from 0 to {2**32 - 1} (got {train.seed})"),
        (train.base_epochs >= 1, "--base_epochs must be at least 1"),
        (train.gate_epochs is None or train.gate_epochs >= 1,
         "--gate_epochs must be at least 1 (or left out: the gates learn "
         "for every epoch)"),
        (train.gate_epochs is None or gated,
         f"--gate_epochs only applies to gated methods "
         f"({', '.join(GATED_METHODS)}), not {train.method}; leave it out"),
        (train.gate_epochs is None or train.gate_epochs < train.epochs,
         f"--gate_epochs={train.gate_epochs} must be less than "
         f"--epochs={train.epochs}: the gates freeze after that many "
         "epochs and the pruned network fine-tunes for the rest"),
        (train.base_workdir is None or train.method in FROM_BASE_METHODS,
         f"--base_workdir is only read by methods that start from a base "
         f"model ({', '.join(FROM_BASE_METHODS)}), not {train.method}; "
         "leave it out"),
        (data.data_dir is None or data.source != "embedded",
         "--data_dir is not read with --data_source=embedded (the data "
         "shipped in the package); pass --data_source=idx or tfds, or "
         "leave --data_dir out"),
        _finite(train.weight_learning_rate, "--weight_lr", 0, strict=True),
        _finite(train.gate_learning_rate, "--gate_lr", 0, strict=True),
        (all(isinstance(f, (int, float)) and 0 < f < 1
             for f in train.decay_fractions),
         f"learning-rate decay fractions must lie in (0, 1) (got "
         f"{train.decay_fractions})"),
        _finite(loss.kl_weight, "--beta", 0),
        _finite(loss.vs_weight, "--vs_weight (lambda)", 0),
        _finite(loss.adv_weight, "the adversarial loss weight", 0),
        _finite(loss.trades_weight, "--trades_beta", 0),
        _finite(loss.l2_weight, "the L2 weight", 0),
        (loss.kl_normalizer is None or loss.kl_normalizer >= 1,
         f"--kl_normalizer must be >= 1, or 0 for the training-set size "
         f"(got {loss.kl_normalizer})"),
        _finite(config.model.gate_concentration0_init,
                "the gates' initial concentration0"),
        (data.monitor_examples >= 0, "--monitor_examples must be >= 0"),
        (data.validation_examples >= 0,
         "--validation_examples must be >= 0"),
    ]
    if config.model.gate_concentration1_init is not None:
        checks.append(_finite(config.model.gate_concentration1_init,
                              "--gate_init"))
    checks.append((
        (config.attack.method, config.attack.norm, config.attack.restarts)
        == ("pgd", "linf", 1),
        "the training attack is L-inf PGD with one restart; attack.method, "
        "attack.norm and attack.restarts only apply to eval.attack"))
    for attack, what in (
        (config.attack, "training"),
        (config.eval.attack, "evaluation"),
    ):
        checks += [
            _choice(attack.method, ATTACK_METHODS, f"{what} attack"),
            (0 <= attack.epsilon <= 1,
             f"the {what} attack's epsilon must be in [0, 1] (got "
             f"{attack.epsilon}); it is an L-inf radius in pixel units, "
             "e.g. --epsilon=0.3 for MNIST"),
            (math.isfinite(attack.step_size) and attack.step_size > 0,
             f"the {what} attack's step size must be a finite number > 0 "
             f"(got {attack.step_size}); pass e.g. --pgd_step_size=0.01"),
            (attack.num_steps >= 0,
             f"the {what} attack's number of PGD steps must be >= 0 (got "
             f"{attack.num_steps})"),
        ]
    for examples, flag in (
        (data.train_examples, "--train_examples"),
        (data.test_examples, "--test_examples"),
    ):
        checks.append(
            (examples is None or examples >= 1, f"{flag} must be >= 1")
        )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config
