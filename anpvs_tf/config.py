"""Frozen experiment settings, one override path, validation at construction.

Every settings type checks its own fields when it is created (types, ranges,
choices), so an invalid config cannot exist. Messages name settings by
their config key in backquotes (`train.epochs`); the scripts show the flag
that sets it instead.
"""

import dataclasses
import json
import math
import types
import typing
from dataclasses import field

from anpvs_tf.datasets import DATASETS
from anpvs_tf.datasets import SOURCES as DATA_SOURCES
from anpvs_tf.errors import ConfigError
from anpvs_tf.methods import BASE_METHODS
from anpvs_tf.methods import FROM_BASE_METHODS
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.methods import METHODS

STRATEGIES = ("default", "mirrored", "auto", "multi_worker")
# Attacks of the evaluation engine (evaluation/engine.py); training
# crafts PGD (or TRADES' own attack, methods.py).
ATTACK_METHODS = ("fgsm", "pgd", "apgd_ce", "apgd_dlr")
ATTACK_NORMS = ("linf", "l2")
# Keras dtype policies; "none" trains in float32.
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")


class _Unset:
    """The value of an override that was not given (None is a value)."""

    def __repr__(self):
        return "UNSET"


UNSET = _Unset()


def _choice(value, choices, key):
    return (value in choices,
            f"unknown `{key}` '{value}'; choose one of {', '.join(choices)}")


def _finite(value, key, low=None, strict=False, optional=False):
    """A check that a float setting is finite and above `low` (or, if
    `optional`, none)."""
    finite = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value))
    none = ", or none" if optional else ""
    if optional and value is None:
        return True, ""
    if low is None:
        return finite, f"`{key}` must be a finite number (got {value}){none}"
    above = finite and (value > low if strict else value >= low)
    sign = ">" if strict else ">="
    return above, (f"`{key}` must be a finite number {sign} {low} (got "
                   f"{value}){none}")


def _at_least(value, key, low, hint=""):
    return (value is None or value >= low,
            f"`{key}` must be at least {low} (got {value}){hint}")


def _type_problem(value, annotation):
    """Why `value` does not fit a field's annotation, or None."""
    if isinstance(annotation, types.UnionType):  # X | None
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        annotation = next(a for a in options if a is not type(None))
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, annotation)
    names = {int: "an integer", float: "a number", bool: "true or false",
             str: "a string", tuple: "a tuple"}
    return None if ok else names.get(annotation,
                                     f"an {annotation.__name__}")


class _Settings:
    """Checks types, then the section's own rules, at construction."""

    KEY = ""

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            expected = _type_problem(value, item.type)
            if expected:
                raise ConfigError(
                    f"`{self.KEY}.{item.name}` must be {expected} (got "
                    f"{value!r})")
        for ok, message in self._checks(self.KEY):
            if not ok:
                raise ConfigError(message)

    def _checks(self, key):
        return []


# === Settings ===
@dataclasses.dataclass(frozen=True)
class DataConfig(_Settings):
    KEY = "data"

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
    # Random pad-and-crop (a shift of up to augment_padding pixels) and,
    # with augment_flip, a horizontal flip of training images; the
    # defaults are the standard CIFAR augmentation, digits take a shift
    # alone. Evaluation images are never augmented.
    augment: bool = False
    augment_padding: int = 4
    augment_flip: bool = True

    def _checks(self, key):
        return [
            _choice(self.dataset, DATASETS, f"{key}.dataset"),
            _choice(self.source, DATA_SOURCES, f"{key}.source"),
            (self.data_dir is None or self.source != "embedded",
             f"`{key}.data_dir` is not read with `{key}.source`=embedded "
             f"(the data shipped in the package); set `{key}.source` to idx "
             f"or tfds, or leave `{key}.data_dir` out"),
            _at_least(self.train_examples, f"{key}.train_examples", 1),
            _at_least(self.test_examples, f"{key}.test_examples", 1),
            _at_least(self.monitor_examples, f"{key}.monitor_examples", 0),
            _at_least(self.validation_examples,
                      f"{key}.validation_examples", 0),
            _at_least(self.augment_padding, f"{key}.augment_padding", 0),
        ]


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Settings):
    KEY = "model"

    architecture: str = "lenet5_caffe"
    # Raw (pre-softplus) initial gate parameters; None keeps the
    # architecture's paper default (-1.0 for LeNet; E[pi] ~ 0.24).
    gate_concentration1_init: float | None = None
    gate_concentration0_init: float = 0.5413

    def _checks(self, key):
        checks = [_finite(self.gate_concentration0_init,
                          f"{key}.gate_concentration0_init")]
        if self.gate_concentration1_init is not None:
            checks.append(_finite(self.gate_concentration1_init,
                                  f"{key}.gate_concentration1_init"))
        return checks


@dataclasses.dataclass(frozen=True)
class AttackConfig(_Settings):
    KEY = "attack"

    epsilon: float = 0.3
    step_size: float = 0.01
    num_steps: int = 20
    random_start: bool = True
    # Read by the evaluation engine only (ATTACK_METHODS, ATTACK_NORMS);
    # training crafts L-inf PGD with one restart (ExperimentConfig checks).
    method: str = "pgd"
    norm: str = "linf"
    restarts: int = 1

    def _checks(self, key):
        return [
            (math.isfinite(self.epsilon) and 0 <= self.epsilon
             and (self.norm != "linf" or self.epsilon <= 1),
             f"`{key}.epsilon` must be in [0, 1] (got {self.epsilon}); it "
             "is an L-inf radius in pixel units, e.g. 0.3 for MNIST"
             if self.norm == "linf" else
             f"`{key}.epsilon` must be a finite number >= 0 (got "
             f"{self.epsilon})"),
            # A zero radius (clean accuracy through the attack) has no step.
            _finite(self.step_size, f"{key}.step_size", 0,
                    strict=self.epsilon > 0),
            _at_least(self.num_steps, f"{key}.num_steps", 0),
            _choice(self.method, ATTACK_METHODS, f"{key}.method"),
            _choice(self.norm, ATTACK_NORMS, f"{key}.norm"),
            _at_least(self.restarts, f"{key}.restarts", 1),
        ]


@dataclasses.dataclass(frozen=True)
class LossConfig(_Settings):
    KEY = "loss"

    # beta: weight of the gate KL term, beta * KL / kl_normalizer.
    kl_weight: float = 4.0
    # The N that divides the KL. The paper's beta assumes N = 60,000 (full
    # MNIST); keeping 60,000 on a subset keeps beta / N equal to the paper's
    # (SPEC pitfall 2). None divides by the actual training-set size.
    kl_normalizer: int | None = 60000
    # gamma: each gate's KL term is weighted by (the FLOPs one of its units
    # costs / the mean over gated units)^gamma, so the pruning pressure
    # follows the cost (complexity.flops_kl_weights). 0: every unit alike,
    # the paper; negative: the costly units are spared.
    kl_flops_exponent: float = 0.0
    # lambda: weight of the vulnerability suppression loss.
    vs_weight: float = 1e-3
    adv_weight: float = 2.0
    # TRADES' beta: weight of KL(p(x) || p(x_adv)) (method "trades").
    trades_weight: float = 6.0
    l2_weight: float = 1e-4

    def _checks(self, key):
        return [
            _finite(self.kl_weight, f"{key}.kl_weight", 0),
            _finite(self.kl_flops_exponent, f"{key}.kl_flops_exponent"),
            _finite(self.vs_weight, f"{key}.vs_weight", 0),
            _finite(self.adv_weight, f"{key}.adv_weight", 0),
            _finite(self.trades_weight, f"{key}.trades_weight", 0),
            _finite(self.l2_weight, f"{key}.l2_weight", 0),
            _at_least(self.kl_normalizer, f"{key}.kl_normalizer", 1,
                      ", or none for the training-set size"),
        ]


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Settings):
    KEY = "train"

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
    # paper's; "at" or "trades" starts pruning from a robust network).
    base_workdir: str | None = None
    base_epochs: int = 10
    base_method: str = "standard"
    # The base model's weight learning rate. None: weight_learning_rate.
    # A base trains best at its own rate; the gates prune more against
    # faster weights.
    base_learning_rate: float | None = None
    # The base model's decays (fractions of its own epochs). None:
    # decay_fractions. () keeps its rate constant: a base the pruning run
    # continues at a high rate gains nothing from ending at a low one.
    base_decay_fractions: tuple | None = None
    # Gated methods: the gates learn for this many epochs, then freeze
    # (their E[pi] masks, pruned units exactly 0, in training too) and the
    # weights fine-tune the pruned network for the remaining epochs.
    # None: the gates learn throughout (the paper).
    gate_epochs: int | None = None
    # Gated methods with gate_epochs: the gates freeze as soon as this
    # percentage of the gated units is pruned (checked after every step),
    # at the latest after gate_epochs; the weights then go on masked until
    # gate_epochs. The gates prune in a cliff (43 % of LeNet-5-Caffe's
    # units in one step), at a step that varies by seed, so an epoch
    # boundary cannot hold a sparsity. None: they freeze after gate_epochs
    # only.
    freeze_at_sparsity: float | None = None
    # After gate_epochs, fine-tune the network without its pruned units
    # (anpvs_tf.compact_training): the masked fine-tune's steps, at the
    # compact network's cost. False: keep training the masked network.
    compact_fine_tune: bool = True
    # The weights' learning rate once the gates freeze (after gate_epochs),
    # decayed as the rest of the schedule. None: weight_learning_rate
    # throughout. The gates prune more against fast-learning weights; the
    # pruned network fine-tunes to a more robust point at a slower rate.
    fine_tune_learning_rate: float | None = None

    def _checks(self, key):
        gated = self.method in GATED_METHODS
        return [
            _choice(self.method, METHODS, f"{key}.method"),
            _choice(self.base_method, BASE_METHODS, f"{key}.base_method"),
            _choice(self.strategy, STRATEGIES, f"{key}.strategy"),
            _choice(self.mixed_precision, MIXED_PRECISION,
                    f"{key}.mixed_precision"),
            _at_least(self.epochs, f"{key}.epochs", 1),
            _at_least(self.batch_size, f"{key}.batch_size", 1),
            (0 <= self.seed < 2**32,
             f"`{key}.seed` must be from 0 to {2**32 - 1} (got "
             f"{self.seed})"),
            _at_least(self.base_epochs, f"{key}.base_epochs", 1),
            _at_least(self.gate_epochs, f"{key}.gate_epochs", 1,
                      " (or none: the gates learn for every epoch)"),
            (self.gate_epochs is None or gated,
             f"`{key}.gate_epochs` only applies to gated methods "
             f"({', '.join(GATED_METHODS)}), not {self.method}; leave it "
             "out"),
            (self.gate_epochs is None or self.gate_epochs < self.epochs,
             f"`{key}.gate_epochs`={self.gate_epochs} must be less than "
             f"`{key}.epochs`={self.epochs}: the gates freeze after that "
             "many epochs and the pruned network fine-tunes for the rest"),
            _finite(self.freeze_at_sparsity, f"{key}.freeze_at_sparsity",
                    0, strict=True, optional=True),
            (not isinstance(self.freeze_at_sparsity, (int, float))
             or self.freeze_at_sparsity < 100,
             f"`{key}.freeze_at_sparsity` is a percentage of the gated "
             f"units, below 100 (got {self.freeze_at_sparsity})"),
            (self.freeze_at_sparsity is None or self.gate_epochs is not None,
             f"`{key}.freeze_at_sparsity` needs `{key}.gate_epochs`, the "
             "latest epoch the gates freeze after"),
            (self.base_workdir is None or self.method in FROM_BASE_METHODS,
             f"`{key}.base_workdir` is only read by methods that start "
             f"from a base model ({', '.join(FROM_BASE_METHODS)}), not "
             f"{self.method}; leave it out"),
            _finite(self.weight_learning_rate,
                    f"{key}.weight_learning_rate", 0, strict=True),
            _finite(self.gate_learning_rate, f"{key}.gate_learning_rate", 0,
                    strict=True),
            _finite(self.base_learning_rate, f"{key}.base_learning_rate",
                    0, strict=True, optional=True),
            _finite(self.fine_tune_learning_rate,
                    f"{key}.fine_tune_learning_rate", 0, strict=True,
                    optional=True),
            (self.fine_tune_learning_rate is None
             or self.gate_epochs is not None,
             f"`{key}.fine_tune_learning_rate` needs `{key}.gate_epochs`: "
             "it is the rate after the gates freeze"),
            *((all(isinstance(f, (int, float)) and 0 < f < 1
                   for f in fractions),
               f"`{key}.{name}` must lie in (0, 1) (got {fractions})")
              for name, fractions in (
                  ("decay_fractions", self.decay_fractions),
                  ("base_decay_fractions", self.base_decay_fractions or ()))),
        ]


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Settings):
    KEY = "eval"

    attack: AttackConfig = field(
        default_factory=lambda: AttackConfig(num_steps=40)
    )
    batch_size: int = 500
    # The strong evaluation after training: APGD-CE and APGD-DLR
    # (apgd_steps iterations each) and PGD on the first strong_examples
    # test images, with the per-example worst case over them (the
    # headline robustness figure). 0: PGD only.
    strong_examples: int = 0
    apgd_steps: int = 100

    def _checks(self, key):
        return [_at_least(self.batch_size, f"{key}.batch_size", 1),
                _at_least(self.strong_examples, f"{key}.strong_examples", 0),
                _at_least(self.apgd_steps, f"{key}.apgd_steps", 1)]


@dataclasses.dataclass(frozen=True)
class ServeConfig(_Settings):
    """What train.py delivers after the evaluation: the compact SavedModel
    in <workdir>/export and its measured speed-up over the same
    architecture unpruned."""

    KEY = "serve"

    export: bool = False
    batch_size: int = 256
    rounds: int = 5
    round_seconds: float = 0.5

    def _checks(self, key):
        return [_at_least(self.batch_size, f"{key}.batch_size", 1),
                _at_least(self.rounds, f"{key}.rounds", 1),
                _finite(self.round_seconds, f"{key}.round_seconds", 0,
                        strict=True)]


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(_Settings):
    KEY = ""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def _checks(self, key):
        attack = self.attack
        return [(
            (attack.method, attack.norm, attack.restarts) == ("pgd", "linf", 1),
            "the training attack is L-inf PGD with one restart; "
            "`attack.method`, `attack.norm` and `attack.restarts` only apply "
            "to `eval.attack`")]

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# === Overrides ===
_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "attack": AttackConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "serve": ServeConfig,
}
_EVAL_ATTACK = "eval.attack"


def _eval_attack(values):
    """The evaluation attack, its messages naming `eval.attack.*`."""
    try:
        return AttackConfig(**values)
    except ConfigError as error:
        raise ConfigError(str(error).replace(
            "`attack.", f"`{_EVAL_ATTACK}.")) from None


def _build(cls, values, key):
    try:
        return cls(**values)
    except TypeError as error:  # a key this version does not know
        raise ConfigError(f"unknown setting in `{key}`: {error}") from None


def from_dict(values):
    """Inverse of ExperimentConfig.to_dict (tuples restored from lists)."""
    sections = {}
    for name, cls in _SECTIONS.items():
        section = dict(values.get(name, {}))
        attack = section.get("attack")
        if name == "eval" and isinstance(attack, dict):
            section["attack"] = _eval_attack(attack)
        if name == "train":
            for field in ("decay_fractions", "base_decay_fractions"):
                if isinstance(section.get(field), list):
                    section[field] = tuple(section[field])
        sections[name] = _build(cls, section, name)
    return ExperimentConfig(**sections)


def keys():
    """Every dotted key an override may set, e.g. "train.epochs"."""
    found = []
    for name, cls in _SECTIONS.items():
        for item in dataclasses.fields(cls):
            if name == "eval" and item.name == "attack":
                found += [f"{_EVAL_ATTACK}.{a.name}"
                          for a in dataclasses.fields(AttackConfig)]
            else:
                found.append(f"{name}.{item.name}")
    return found


def _field(key):
    """The dataclass field a dotted key names; ConfigError if none."""
    section, _, attr = key.partition(".")
    cls = _SECTIONS.get(section)
    if key.startswith(_EVAL_ATTACK + "."):
        cls, attr = AttackConfig, key[len(_EVAL_ATTACK) + 1:]
    fields = {item.name: item
              for item in (dataclasses.fields(cls) if cls else ())}
    if attr not in fields:
        close = [k for k in keys() if k.endswith("." + attr.split(".")[-1])]
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"unknown config key '{key}'{hint}")
    return fields[attr]


def replace(config, **overrides):
    """A copy with dotted-key overrides, e.g. {"train.epochs": 3}.

    None is a value ({"train.gate_epochs": None} clears the field); UNSET
    leaves a field as it is. All overrides of a section are applied
    together, so settings that must agree can change together.
    """
    changes = {}
    for key, value in overrides.items():
        _field(key)
        if value is not UNSET:
            changes[key] = value
    sections = {name: dataclasses.asdict(getattr(config, name))
                for name in _SECTIONS}
    for key, value in changes.items():
        path = key.split(".")
        target = sections
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return from_dict(sections)


_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def parse_value(key, text):
    """The typed value of `text` for the setting `key` ("none" is None for
    settings that may be unset)."""
    annotation = _field(key).type
    optional = isinstance(annotation, types.UnionType)
    if optional:
        if text.strip().lower() in ("none", "null"):
            return None
        annotation = next(a for a in typing.get_args(annotation)
                          if a is not type(None))
    try:
        if annotation is bool:
            lowered = text.strip().lower()
            if lowered not in _TRUE + _FALSE:
                raise ValueError(text)
            return lowered in _TRUE
        if annotation is tuple:
            return tuple(float(part) for part in text.split(",") if part)
        if annotation in (int, float):
            return annotation(text)
        return text
    except ValueError:
        what = {bool: "true or false", int: "an integer", float: "a number",
                tuple: "comma-separated numbers"}[annotation]
        none = " or none" if optional else ""
        raise ConfigError(
            f"`{key}` takes {what}{none}; got '{text}'") from None


def override_text(value):
    """`value` as an override writes it, the text parse_value reads back
    (a tuple or list comma-separated, a bool lower-case)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_override(text):
    """(key, value) of one "section.field=value" override."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"override '{text}' is not of the form section.field=value, "
            "e.g. train.epochs=3")
    key = key.strip()
    return key, parse_value(key, value.strip())


def first_difference(old, new, only_old_keys=False, prefix=""):
    """The first dotted key whose value differs between two nested dicts,
    as "key: old -> new", or None. With `only_old_keys`, keys that `old`
    lacks (settings stored by an older version) are not compared."""
    keys_ = set(old) if only_old_keys else set(old) | set(new)
    for key in sorted(keys_):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, only_old_keys, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a} -> {b}"
    return None
