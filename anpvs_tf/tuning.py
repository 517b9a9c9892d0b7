"""Hyper-parameter search over ANP-VS's robustness / size trade-off.

A keras-tuner HyperModel samples beta (KL weight), lambda (VS weight), the
gate and weight learning rates, the training PGD steps and the gate
initialisation, builds the recipe's ANPVSModel with them (initialised from
one base model trained before the search) and scores it on a validation
split carved out of the training data (`DataConfig.validation_examples`):
never the test set, never an example the trials train on.

Objective (maximised), from the validation numbers after each epoch: the
robust validation accuracy, multiplied by (achieved / floor)^2 for each size
floor the trial misses (unit sparsity >= min_sparsity %, FLOPs speed-up >=
min_flops_speedup). A trial that meets the floors scores its robust
accuracy; one that misses them is discounted smoothly, so a strong network
just short of the floor still outranks one that meets it by collapsing to
chance (a hard floor would rank that collapse first).
"""

import dataclasses
import math

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

OBJECTIVE = "objective"
# keras-tuner's project folder inside the project dir.
PROJECT_NAME = "search"
# Gate initialisations offered: the architecture's paper default, or every
# gate starting nearly open (E[pi] ~ 0.9 / ~1: the pre-trained base model
# is not shrunk at step 0, SPEC pitfall 3).
GATE_INITS = {"paper": None, "open2": 2.0, "open5": 5.0}


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
        return (
            "robust validation accuracy (PGD, training eps) x (achieved / "
            "floor)^2 for each missed floor: unit sparsity >= "
            f"{self.min_sparsity:g} %, FLOPs speed-up >= "
            f"{self.min_flops_speedup:g}x"
        )


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

    def on_epoch_end(self, epoch, logs=None):
        report = complexity_report(self.model.network)
        robust = float(logs["val_adv_accuracy"])
        logs.update(
            clean_val_acc=float(logs["val_clean_accuracy"]),
            robust_val_acc=robust,
            unit_sparsity=report["unit_sparsity"],
            flops_speedup=report["flops_speedup"],
        )
        logs[OBJECTIVE] = objective_value(
            robust, report["unit_sparsity"], report["flops_speedup"],
            self.floors,
        )


class ANPVSHyperModel(kt.HyperModel):
    """The recipe `config` with searched loss weights and learning rates.

    Every sampled value defaults to the recipe's, so a fresh
    `kt.HyperParameters()` builds the recipe itself.
    """

    def __init__(self, config, base_dir, floors, verbose=0):
        super().__init__(name="anp_vs")
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
        attack = recipe.attack
        steps = hp.Choice(
            "pgd_steps", sorted({5, 10, 20, attack.num_steps}),
            default=attack.num_steps,
        )
        gate_init = hp.Choice(
            "gate_init", list(GATE_INITS), default="paper"
        )
        return config_lib.replace(recipe, **{
            "loss.kl_weight": hp.Float(
                "beta", 0.25, 32.0, sampling="log",
                default=recipe.loss.kl_weight),
            "loss.vs_weight": hp.Float(
                "lambda", 1e-4, 1e-1, sampling="log",
                default=recipe.loss.vs_weight),
            "train.gate_learning_rate": hp.Float(
                "gate_lr", 1e-3, 1e-1, sampling="log",
                default=recipe.train.gate_learning_rate),
            "train.weight_learning_rate": hp.Float(
                "weight_lr", 1e-4, 1e-2, sampling="log",
                default=recipe.train.weight_learning_rate),
            "attack.num_steps": steps,
            # The same total travel as the recipe's attack.
            "attack.step_size": (
                attack.step_size * attack.num_steps / steps),
            "model.gate_concentration1_init": GATE_INITS[gate_init],
        })

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
                         "unit_sparsity", "flops_speedup")
        }


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
        rows.append({
            "trial_id": trial.trial_id,
            "hyperparameters": {
                k: v for k, v in trial.hyperparameters.values.items()
                if not k.startswith("tuner/")
            },
            **best,
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
