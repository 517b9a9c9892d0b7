"""Hyper-parameter search over a recipe's robustness / size trade-off.

A keras-tuner HyperModel samples the hyper-parameters the recipe's method
has (every method: the weight learning rate and its schedule; adversarial
methods: the training PGD steps and how far they travel; gated methods:
beta, the gate learning rate and initialisation; the weights of the
method's own loss terms: lambda of ANP-VS, TRADES' beta), builds the
recipe's model with them (initialised from one base model trained before
the search, for methods that start from one) and scores it on a
validation split carved out of the training data
(`DataConfig.validation_examples`): never the test set, never an example
the trials train on. The spaces share their common dimensions, so AT,
TRADES and ANP-VS searched with the same tuner and trials get the same
tuning budget.

Objective (maximised), from the validation numbers after each epoch: the
robust validation accuracy, multiplied by (achieved / floor)^2 for each size
floor the trial misses (unit sparsity >= min_sparsity %, FLOPs speed-up >=
min_flops_speedup). A trial that meets the floors scores its robust
accuracy; one that misses them is discounted smoothly, so a strong network
just short of the floor still outranks one that meets it by collapsing to
chance (a hard floor would rank that collapse first). A method without
gates has no size floors (NO_FLOORS).
"""

import dataclasses
import math
import time

import keras
import keras_tuner as kt

from anpvs_tf import config as config_lib
from anpvs_tf import data
from anpvs_tf.complexity import complexity_report
from anpvs_tf.assembly import build_model
from anpvs_tf.assembly import compile_model
from anpvs_tf.assembly import fit_model
from anpvs_tf.base import copy_base_weights
from anpvs_tf.datasets import DATASET_INFO
from anpvs_tf.methods import ADVERSARIAL_METHODS
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.methods import OBJECTIVES

OBJECTIVE = "objective"
# keras-tuner's project folder inside the project dir.
PROJECT_NAME = "search"
# Gate initialisations offered: the architecture's paper default, or every
# gate starting nearly open (E[pi] ~ 0.9 / ~1: the pre-trained base model
# is not shrunk at step 0, SPEC pitfall 3).
GATE_INITS = {"paper": None, "open2": 2.0, "open5": 5.0}
# How far the training PGD travels, as multiples of the recipe's (steps x
# step size): MNIST's recipe travels 0.2 in the 0.3 ball, and twice that
# was the budget search's largest gain (bench/results/budget_search.md).
TRAVEL_SCALES = (1.0, 2.0, 4.0)
# Learning-rate schedules (decay fractions of both optimizers): the
# recipe's, two later decays, or a constant rate.
SCHEDULES = {"recipe": None, "late": (0.75, 0.9), "constant": ()}
# Loss-term weights a method's objective reads (methods.OBJECTIVES):
# config key -> (hyper-parameter, log-uniform range).
TERM_WEIGHTS = {
    "vs_weight": ("lambda", 1e-4, 1e-1),
    "trades_weight": ("trades_beta", 0.5, 16.0),
}


@dataclasses.dataclass(frozen=True)
class Floors:
    """The size a trial must reach to count as feasible."""

    min_sparsity: float = 50.0
    min_flops_speedup: float = 1.0

    def __post_init__(self):
        checks = (
            (self.min_sparsity, 0 <= self.min_sparsity < 100,
             "`min_sparsity` must be a finite number in [0, 100) (a "
             "percentage of units pruned)"),
            (self.min_flops_speedup, self.min_flops_speedup >= 1,
             "`min_flops_speedup` must be a finite number >= 1 (1: no "
             "floor)"),
        )
        for value, ok, message in checks:
            if not (math.isfinite(value) and ok):
                raise config_lib.ConfigError(f"{message}; got {value}")

    def describe(self):
        if self == NO_FLOORS:
            return "robust validation accuracy (PGD, training eps)"
        return (
            "robust validation accuracy (PGD, training eps) x (achieved / "
            "floor)^2 for each missed floor: unit sparsity >= "
            f"{self.min_sparsity:g} %, FLOPs speed-up >= "
            f"{self.min_flops_speedup:g}x"
        )


# A method without gates prunes nothing: its trials are ranked by their
# robust accuracy alone.
NO_FLOORS = Floors(0.0, 1.0)


def floors_for(method, floors):
    """The floors a search of `method` applies: none for an ungated one."""
    return floors if method in GATED_METHODS else NO_FLOORS


def objective_value(robust_accuracy, unit_sparsity, flops_speedup, floors):
    """The search objective of one set of validation numbers."""
    value = float(robust_accuracy)
    for achieved, floor in (
        (unit_sparsity, floors.min_sparsity),
        (flops_speedup, floors.min_flops_speedup),
    ):
        if floor > 0 and achieved < floor:
            value *= (max(achieved, 0.0) / floor) ** 2
    return value


class ValidationObjective(keras.callbacks.Callback):
    """Adds the validation metrics and the objective to each epoch's logs.

    Runs before keras-tuner's own callbacks, which read the objective from
    the same logs (best-epoch checkpoint, oracle updates).
    """

    def __init__(self, floors):
        super().__init__()
        self.floors = floors
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        report = complexity_report(self.model.network)
        robust = float(logs["val_adv_accuracy"])
        logs.update(
            # The search's own cost: the trial's time so far (a resumed
            # trial counts from its restart).
            train_seconds=time.perf_counter() - self.start,
            clean_val_acc=float(logs["val_clean_accuracy"]),
            robust_val_acc=robust,
            unit_sparsity=report["unit_sparsity"],
            flops_speedup=report["flops_speedup"],
        )
        logs[OBJECTIVE] = objective_value(
            robust, report["unit_sparsity"], report["flops_speedup"],
            self.floors,
        )


def _log_float(hp, name, low, high, default):
    """A log-uniform hyper-parameter whose range holds the recipe's value."""
    return hp.Float(name, min(low, default), max(high, default),
                    sampling="log", default=default)


class RecipeHyperModel(kt.HyperModel):
    """The recipe `config` with the hyper-parameters its method has.

    Every sampled value defaults to the recipe's, so a fresh
    `kt.HyperParameters()` builds the recipe itself. The dimensions two
    methods share (weight learning rate, schedule, PGD steps and travel)
    are the same for both.
    """

    def __init__(self, config, base_dir, floors, verbose=0):
        super().__init__(name=config.train.method)
        self.config = config
        self.base_dir = base_dir
        self.floors = floors
        self.verbose = verbose
        self.train_data = None
        self.validation_data = None

    def load_data(self):
        self.train_data = data.load_split(self.config.data, "train")
        self.validation_data = data.load_split(self.config.data,
                                               "validation")

    def config_for(self, hp):
        """The ExperimentConfig of one point of the search space."""
        recipe = self.config
        method = recipe.train.method
        schedule = hp.Choice("schedule", list(SCHEDULES), default="recipe")
        values = {
            "train.weight_learning_rate": _log_float(
                hp, "weight_lr", 1e-4, 1e-2,
                recipe.train.weight_learning_rate),
            "train.decay_fractions": (
                recipe.train.decay_fractions
                if SCHEDULES[schedule] is None else SCHEDULES[schedule]),
        }
        if method in ADVERSARIAL_METHODS:
            values.update(self._attack(hp))
        if method in GATED_METHODS:
            values.update(self._gates(hp))
        terms = dict(OBJECTIVES[method].weight_loss)
        for key, (name, low, high) in TERM_WEIGHTS.items():
            if key in terms.values():
                values[f"loss.{key}"] = _log_float(
                    hp, name, low, high, getattr(recipe.loss, key))
        return config_lib.replace(recipe, **values)

    def _attack(self, hp):
        attack = self.config.attack
        steps = hp.Choice(
            "pgd_steps", sorted({5, 10, 20, attack.num_steps}),
            default=attack.num_steps,
        )
        travel = hp.Choice("pgd_travel", list(TRAVEL_SCALES), default=1.0)
        return {
            "attack.num_steps": steps,
            # `travel` times the recipe's total travel.
            "attack.step_size": (
                attack.step_size * (attack.num_steps / steps) * travel),
        }

    def _gates(self, hp):
        recipe = self.config
        gate_init = hp.Choice(
            "gate_init", list(GATE_INITS), default="paper"
        )
        return {
            "loss.kl_weight": _log_float(
                hp, "beta", 0.25, 32.0, recipe.loss.kl_weight),
            "train.gate_learning_rate": _log_float(
                hp, "gate_lr", 1e-3, 1e-1, recipe.train.gate_learning_rate),
            "model.gate_concentration1_init": GATE_INITS[gate_init],
        }

    def build(self, hp):
        config = self.config_for(hp)
        input_shape, num_classes = DATASET_INFO[config.data.dataset]
        images, _ = self.train_data
        model = build_model(config, input_shape, num_classes, len(images))
        if self.base_dir is not None:  # None: from the initialisation
            copy_base_weights(config, self.base_dir, model.network,
                              log=lambda *_: None)
        # Marks the wrapper built (its network already is), so keras-tuner
        # can checkpoint the best epoch's weights.
        model(keras.ops.zeros((1, *input_shape)))
        return compile_model(model, config, len(images))

    def fit(self, hp, model, *args, callbacks=(), epochs=None,
            initial_epoch=0, **kwargs):
        """Trains on the training split; scores on the validation split."""
        config = self.config_for(hp)
        validation_ds = data.eval_dataset(
            *self.validation_data, config.eval.batch_size
        )
        model.set_eval_attack(config.eval.attack)
        history = fit_model(
            model, config, *self.train_data,
            initial_epoch=initial_epoch,
            epochs=epochs,
            validation_data=validation_ds,
            callbacks=[ValidationObjective(self.floors), *callbacks],
            verbose=self.verbose,
        )
        return {
            name: history.history[name][-1]
            for name in (OBJECTIVE, "clean_val_acc", "robust_val_acc",
                         "unit_sparsity", "flops_speedup", "train_seconds")
        }


def config_at(recipe, hyperparameters):
    """The config of the point `hyperparameters` of `recipe`'s search
    space (values left out keep the recipe's)."""
    hp = kt.HyperParameters()
    hypermodel = RecipeHyperModel(recipe, None, Floors())
    hypermodel.config_for(hp)  # registers the space's defaults
    unknown = set(hyperparameters) - set(hp.values)
    if unknown:
        raise config_lib.ConfigError(
            f"{', '.join(sorted(unknown))} is not in the search space of "
            f"{recipe.train.method}; pass hyper-parameters its search chose")
    hp.values.update(hyperparameters)
    return hypermodel.config_for(hp)


def overrides_for(recipe, hyperparameters):
    """The dotted-key overrides (config.replace) that turn `recipe` into
    the point `hyperparameters` of its search space, e.g. a search's best
    trial, to train it on other data or for longer."""
    tuned = config_at(recipe, hyperparameters).to_dict()
    original = recipe.to_dict()
    return {f"{section}.{name}": value
            for section, fields in tuned.items()
            for name, value in fields.items()
            if value != original[section][name]}


_TUNERS = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
}
TUNERS = tuple(_TUNERS)


def make_tuner(name, hypermodel, directory, max_trials, epochs, seed,
               strategy=None, overwrite=False):
    """A keras-tuner tuner that resumes from `directory` unless overwrite."""
    common = {
        "hypermodel": hypermodel,
        "objective": kt.Objective(OBJECTIVE, direction="max"),
        "seed": seed,
        "directory": str(directory),
        "project_name": PROJECT_NAME,
        "overwrite": overwrite,
        "distribution_strategy": strategy,
    }
    if name == "hyperband":
        # Hyperband sizes its brackets from the epoch budget, not a count.
        return kt.Hyperband(max_epochs=epochs, **common)
    if name == "bayesian":
        # keras-tuner's default, 3 random points per hyper-parameter (18),
        # would leave a budget of 8-10 trials entirely random.
        common["num_initial_points"] = max(2, max_trials // 3)
    return _TUNERS[name](max_trials=max_trials, **common)


def trial_rows(tuner, floors):
    """One row per finished trial, at its best epoch under `floors`.

    The objective is recomputed from the recorded validation numbers, so
    the table follows the current definition whatever the search ran with.
    """
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.status != "COMPLETED":
            continue
        history = {
            name: {
                observation.step: float(observation.mean())
                for observation in trial.metrics.get_history(name)
            }
            for name in ("clean_val_acc", "robust_val_acc",
                         "unit_sparsity", "flops_speedup")
        }
        epochs = [{name: values[step] for name, values in history.items()}
                  for step in sorted(history["robust_val_acc"])]
        for epoch in epochs:
            epoch[OBJECTIVE] = objective_value(
                epoch["robust_val_acc"], epoch["unit_sparsity"],
                epoch["flops_speedup"], floors)
        best = max(epochs, key=lambda epoch: epoch[OBJECTIVE])
        seconds = (trial.metrics.get_history("train_seconds")
                   if trial.metrics.exists("train_seconds") else [])
        rows.append({
            "trial_id": trial.trial_id,
            "hyperparameters": {
                k: v for k, v in trial.hyperparameters.values.items()
                if not k.startswith("tuner/")
            },
            **best,
            # The whole trial's training time (None: a trial recorded
            # before it was measured).
            "train_seconds": max((float(o.mean()) for o in seconds),
                                 default=None),
        })
    # Ties are broken by robust accuracy, then trial id: the same order
    # after a resume.
    return sorted(rows, key=lambda r: (
        -r[OBJECTIVE], -r["robust_val_acc"], r["trial_id"]))


def pareto_front(rows):
    """Rows no other row beats on both robust accuracy and FLOPs speed-up."""
    return [
        row for row in rows
        if not any(
            other["robust_val_acc"] >= row["robust_val_acc"]
            and other["flops_speedup"] >= row["flops_speedup"]
            and (other["robust_val_acc"] > row["robust_val_acc"]
                 or other["flops_speedup"] > row["flops_speedup"])
            for other in rows
        )
    ]
