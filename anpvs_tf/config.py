"""Frozen experiment configuration and the named recipes of the zoo."""

import dataclasses
import json
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

    Values of None are ignored, so unset flags keep the recipe's value.
    """
    sections = {name: getattr(config, name) for name in _SECTIONS}
    for key, value in overrides.items():
        if value is None:
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


def _choice(value, choices, what):
    return (value in choices,
            f"unknown {what} '{value}'; choose one of {', '.join(choices)}")


def validate(config):
    """Raises ConfigError naming the first invalid value and how to fix it."""
    checks = [
        _choice(config.train.method, METHODS, "method"),
        _choice(config.data.dataset, DATASETS, "dataset"),
        _choice(config.train.base_method, BASE_METHODS, "base method"),
        _choice(config.data.source, DATA_SOURCES, "data source"),
        _choice(config.train.strategy, STRATEGIES, "strategy"),
        _choice(config.train.mixed_precision, MIXED_PRECISION,
                "mixed precision policy"),
        (config.train.epochs >= 1, "--epochs must be at least 1"),
        (config.train.batch_size >= 1, "--batch_size must be at least 1"),
        (config.train.base_epochs >= 1, "--base_epochs must be at least 1"),
        (config.train.gate_epochs is None or config.train.gate_epochs >= 1,
         "--gate_epochs must be at least 1 (or left out: the gates learn "
         "for every epoch)"),
        (config.loss.kl_weight >= 0, "--beta must be >= 0"),
        (config.loss.vs_weight >= 0, "--vs_weight (lambda) must be >= 0"),
        (config.data.monitor_examples >= 0,
         "--monitor_examples must be >= 0"),
        (config.data.validation_examples >= 0,
         "--validation_examples must be >= 0"),
    ]
    for attack, what in (
        (config.attack, "training"),
        (config.eval.attack, "evaluation"),
    ):
        checks += [
            (0 <= attack.epsilon <= 1,
             f"the {what} attack's epsilon must be in [0, 1] (got "
             f"{attack.epsilon}); it is an L-inf radius in pixel units, "
             "e.g. --epsilon=0.3 for MNIST"),
            (attack.step_size > 0,
             f"the {what} attack's step size must be > 0 (got "
             f"{attack.step_size}); pass e.g. --pgd_step_size=0.01"),
            (attack.num_steps >= 0,
             f"the {what} attack's number of PGD steps must be >= 0 (got "
             f"{attack.num_steps})"),
        ]
    for examples, flag in (
        (config.data.train_examples, "--train_examples"),
        (config.data.test_examples, "--test_examples"),
    ):
        checks.append(
            (examples is None or examples >= 1, f"{flag} must be >= 1")
        )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config
