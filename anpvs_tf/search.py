"""A whole hyper-parameter search in a project directory, resumable.

Project layout:
    config.json              the recipe searched (with its validation split)
    base/                    the base model every trial starts from
                             (train.py's workdir layout)
    search/                  keras-tuner's state: a rerun resumes from it
    default.json             the recipe's own hyper-parameters, scored alike
    trials.json, trials.md   every finished trial, best first
    pareto.png               robust validation accuracy vs FLOPs speed-up
    best_hyperparameters.json
    best/                    the best trial retrained by `train` (the
                             path of train.py), and best/export/ (export.py)
"""

import json
from pathlib import Path

import keras
import keras_tuner as kt

from anpvs_tf import config as config_lib
from anpvs_tf import tuning
from anpvs_tf.exporter import export_workdir
from anpvs_tf.training import train


def _write_json(path, value):
    path.write_text(json.dumps(value, indent=2) + "\n")


def _base_config(config):
    return config_lib.replace(config, **{
        "train.method": "standard",
        "train.epochs": config.train.base_epochs,
    })


def score_default(hypermodel, path):
    """The recipe's hyper-parameters through the same build and fit."""
    if path.exists():
        return json.loads(path.read_text())
    hp = kt.HyperParameters()  # every value at its default: the recipe
    keras.utils.set_random_seed(hypermodel.config.train.seed)
    model = hypermodel.build(hp)
    metrics = hypermodel.fit(hp, model)
    result = {"hyperparameters": dict(hp.values), **metrics}
    _write_json(path, result)
    return result


def plot_pareto(rows, default, path):
    """Robust validation accuracy against FLOPs speed-up, front joined."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    front = sorted(tuning.pareto_front(rows),
                   key=lambda r: r["flops_speedup"])
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.scatter(
        [r["flops_speedup"] for r in rows],
        [100 * r["robust_val_acc"] for r in rows],
        c=["tab:blue" if r[tuning.OBJECTIVE] >= r["robust_val_acc"]
           else "tab:gray" for r in rows],
        label="trials (grey: below the size floors)",
    )
    axes.plot(
        [r["flops_speedup"] for r in front],
        [100 * r["robust_val_acc"] for r in front],
        "k--", label="Pareto front",
    )
    axes.scatter([default["flops_speedup"]],
                 [100 * default["robust_val_acc"]],
                 marker="*", s=200, c="tab:red", label="recipe default")
    # Log scale: a network pruned to (almost) nothing has a huge speed-up.
    axes.set_xscale("log")
    axes.set_xlabel("FLOPs speed-up (x, log scale)")
    axes.set_ylabel("robust validation accuracy (%)")
    axes.legend(loc="best", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _markdown(rows, default, objective):
    names = sorted({k for r in rows for k in r["hyperparameters"]})
    header = ["trial", *names, "clean val %", "robust val %",
              "sparsity %", "FLOPs x", "objective"]
    lines = [f"Objective: {objective}", "",
             "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for row in [{"trial_id": "default", **default}, *rows]:
        values = [row["hyperparameters"].get(n, "") for n in names]
        values = [f"{v:.3g}" if isinstance(v, float) else str(v)
                  for v in values]
        lines.append("| " + " | ".join([
            str(row["trial_id"]), *values,
            f"{100 * row['clean_val_acc']:.2f}",
            f"{100 * row['robust_val_acc']:.2f}",
            f"{row['unit_sparsity']:.2f}",
            f"{row['flops_speedup']:.2f}",
            f"{row[tuning.OBJECTIVE]:.4f}",
        ]) + " |")
    return "\n".join(lines) + "\n"


def run_search(config, project_dir, *, tuner="bayesian", max_trials=8,
               floors=None, strategy=None, overwrite=False,
               retrain_best=True, log=print, verbose=0, command=None):
    """Searches, reports, then retrains and exports the best trial.

    `config` is the recipe, with `train.epochs` the epochs of one trial and
    `data.validation_examples` > 0. Rerunning the same call resumes: the
    base model, finished trials, the default's score and the best model are
    reused, and only missing work is done.

    `command` (the tune.py command line) is recorded with the best model.

    Returns the report dict also written to trials.json.
    """
    floors = floors or tuning.Floors()
    if config.data.validation_examples <= 0:
        raise config_lib.ConfigError(
            "a search needs a validation split: pass --validation_examples"
        )
    project_dir = Path(project_dir)
    project_dir.mkdir(parents=True, exist_ok=True)
    base_dir = project_dir / "base"
    log(f"Base model in {base_dir}")
    train(_base_config(config), base_dir, log=log, verbose=verbose)
    config = config_lib.replace(config, **{
        "train.base_workdir": str(base_dir)})
    _write_json(project_dir / "config.json", config.to_dict())

    hypermodel = tuning.ANPVSHyperModel(config, base_dir, floors, verbose)
    hypermodel.load_data()
    search = tuning.make_tuner(
        tuner, hypermodel, project_dir, max_trials, config.train.epochs,
        config.train.seed, strategy=strategy, overwrite=overwrite,
    )
    log(f"Searching ({tuner}, up to {max_trials} trials of "
        f"{config.train.epochs} epochs) in {project_dir / 'search'}")
    search.search(verbose=verbose)
    default = score_default(hypermodel, project_dir / "default.json")
    default[tuning.OBJECTIVE] = tuning.objective_value(
        default["robust_val_acc"], default["unit_sparsity"],
        default["flops_speedup"], floors)
    rows = tuning.trial_rows(search, floors)
    if not rows:
        raise RuntimeError("no trial finished; see the errors above")
    objective = floors.describe()
    report = {
        "objective": objective,
        "floors": {"min_sparsity": floors.min_sparsity,
                   "min_flops_speedup": floors.min_flops_speedup},
        "default_objective": default[tuning.OBJECTIVE],
        "best_objective": rows[0][tuning.OBJECTIVE],
        "default": default,
        "trials": rows,
        "pareto_front": [r["trial_id"] for r in tuning.pareto_front(rows)],
        "validation_examples": config.data.validation_examples,
        "epochs_per_trial": config.train.epochs,
        "tuner": tuner,
    }
    _write_json(project_dir / "trials.json", report)
    (project_dir / "trials.md").write_text(_markdown(rows, default, objective))
    plot_pareto(rows, default, project_dir / "pareto.png")
    best = rows[0]
    _write_json(project_dir / "best_hyperparameters.json",
                best["hyperparameters"])
    if retrain_best:
        best_hp = kt.HyperParameters()
        hypermodel.config_for(best_hp)  # registers the space's defaults
        best_hp.values.update(best["hyperparameters"])
        best_config = hypermodel.config_for(best_hp)
        best_dir = project_dir / "best"
        log(f"Retraining the best trial ({best['trial_id']}) in {best_dir}")
        train(best_config, best_dir, log=log, verbose=verbose,
              command=command and f"{command}  # best trial "
              f"{best['trial_id']}: {best['hyperparameters']}")
        if not (best_dir / "export").exists():
            export_workdir(best_dir)
        report["best_workdir"] = str(best_dir)
    return report
