"""A whole hyper-parameter search in a project directory, resumable.

Project layout:
    config.json              the search's settings: the recipe searched
                             (with its validation split) and, under
                             "search", the tuner and the size floors; a
                             rerun with other settings is refused
    base/                    the base model every trial starts from, for
                             methods that start from one (train.py's
                             workdir layout)
    search/                  keras-tuner's state: a rerun resumes from it
    default.json             the recipe's own hyper-parameters, scored alike
    trials.json, trials.md   every finished trial, best first
    pareto.png               robust validation accuracy vs FLOPs speed-up
    best_hyperparameters.json
    best/                    the best trial retrained by `train` (the
                             path of train.py), and best/export/ (export.py)

Every file is written atomically (anpvs_tf.files); --overwrite deletes
exactly these entries, and refuses a project dir holding anything else.
"""

import json
from pathlib import Path

import keras
import keras_tuner as kt

from anpvs_tf import config as config_lib
from anpvs_tf import files
from anpvs_tf import tuning
from anpvs_tf.evaluation.tables import markdown_table
from anpvs_tf.exporter import export_workdir
from anpvs_tf.base import base_config
from anpvs_tf.methods import FROM_BASE_METHODS
from anpvs_tf.training import train
from anpvs_tf.workdir import WORKDIR_ENTRIES
from anpvs_tf.workdir import holds_run

SETTINGS_FILE = "config.json"
TUNER_DIR = tuning.PROJECT_NAME  # keras-tuner's state
# Everything run_search writes into a project dir: what overwrite deletes.
# (files.foreign_entries layout: base/ and best/ are train.py workdirs,
# search/ is keras-tuner's.)
OWNED = {
    **dict.fromkeys({SETTINGS_FILE, TUNER_DIR, "default.json",
                     "trials.json", "trials.md", "pareto.png",
                     "best_hyperparameters.json"}),
    "base": WORKDIR_ENTRIES,
    "best": WORKDIR_ENTRIES,
}
DEFAULT_KEYS = ("hyperparameters", "clean_val_acc", "robust_val_acc",
                "unit_sparsity", "flops_speedup")


def search_settings(config, tuner, floors):
    """What a resumed search must match, as stored in config.json: the
    recipe's config plus, under "search", the tuner and the floors.
    max_trials is not a setting: raising it extends the same search."""
    settings = json.loads(config.to_json())
    settings["search"] = {
        "tuner": tuner,
        "min_sparsity": floors.min_sparsity,
        "min_flops_speedup": floors.min_flops_speedup,
    }
    return settings


def _comparable(settings):
    """Stored or new settings as compared: the config read by the current
    code (keys added since get their defaults), without what may change on
    a resume: the strategy (as train.py) and the base workdir (always the
    project's base/, wherever the project dir is reached from)."""
    settings = dict(settings)
    search = settings.pop("search", None)
    try:
        settings = json.loads(config_lib.from_dict(settings).to_json())
    except (TypeError, ValueError):  # keys this version does not know
        pass
    train_settings = settings.get("train")
    if isinstance(train_settings, dict):
        settings["train"] = {k: v for k, v in train_settings.items()
                             if k not in ("strategy", "base_workdir")}
    if search is not None:  # absent: a project dir from before the floors
        settings["search"] = search  # and tuner were stored
    return settings


def _check_settings(project_dir, settings):
    """Raises ConfigError if project_dir's stored search has other
    settings than `settings`."""
    path = project_dir / SETTINGS_FILE
    recover = (
        "pass `overwrite` to start that search over, or, if it is the same "
        f"search, delete {SETTINGS_FILE} and run the same tune.py command "
        "(it is resumed unchecked)"
    )
    stored = files.read_json(path, recover)
    if not isinstance(stored, dict):
        raise files.DamagedFileError(
            f"'{path}' is damaged (not a JSON object); {recover}")
    changed = config_lib.first_difference(
        _comparable(stored), _comparable(settings), only_old_keys=True)
    if changed:
        raise config_lib.ConfigError(
            f"'{project_dir}' holds a search with other settings "
            f"({changed}); choose another `project_dir`, or pass "
            "`overwrite` to delete that search (its base model, trials, "
            "reports and best model)"
        )


def _prepare_project(project_dir, settings, overwrite):
    """Checks (or, with overwrite, deletes) an existing search, then
    stores `settings`: before any work, so a search killed at any point
    is resumed only with its own settings."""
    if project_dir.exists():
        if overwrite:
            files.remove_owned(project_dir, OWNED, "a tune.py search")
        elif (project_dir / SETTINGS_FILE).exists():
            _check_settings(project_dir, settings)
    project_dir.mkdir(parents=True, exist_ok=True)
    files.write_json(project_dir / SETTINGS_FILE, settings)


def read_default(path):
    """The recipe default's score stored in `path` (default.json)."""
    recover = "delete it and run the same tune.py command: it is re-scored"
    default = files.read_json(path, recover)
    if not isinstance(default, dict) or not all(
            key in default for key in DEFAULT_KEYS):
        raise files.DamagedFileError(
            f"'{path}' is damaged (not a scored default: "
            f"{', '.join(DEFAULT_KEYS)} expected); {recover}")
    return default


def score_default(hypermodel, path):
    """The recipe's hyper-parameters through the same build and fit."""
    if path.exists():
        return read_default(path)
    hp = kt.HyperParameters()  # every value at its default: the recipe
    keras.utils.set_random_seed(hypermodel.config.train.seed)
    model = hypermodel.build(hp)
    metrics = hypermodel.fit(hp, model)
    result = {"hyperparameters": dict(hp.values), **metrics}
    files.write_json(path, result)
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
    with files.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)


def _markdown(rows, default, objective):
    names = sorted({k for r in rows for k in r["hyperparameters"]})
    header = ["trial", *names, "clean val %", "robust val %",
              "sparsity %", "FLOPs x", "objective", "train s"]
    cells = []
    for row in [{"trial_id": "default", **default}, *rows]:
        values = [row["hyperparameters"].get(n, "") for n in names]
        values = [f"{v:.3g}" if isinstance(v, float) else str(v)
                  for v in values]
        cells.append([
            str(row["trial_id"]), *values,
            f"{100 * row['clean_val_acc']:.2f}",
            f"{100 * row['robust_val_acc']:.2f}",
            f"{row['unit_sparsity']:.2f}",
            f"{row['flops_speedup']:.2f}",
            f"{row[tuning.OBJECTIVE]:.4f}",
            "" if row.get("train_seconds") is None
            else f"{row['train_seconds']:.0f}",
        ])
    lines = [f"Objective: {objective}", "", *markdown_table(header, cells)]
    return "\n".join(lines) + "\n"


def run_search(config, project_dir, *, tuner="bayesian", max_trials=8,
               floors=None, strategy=None, overwrite=False,
               retrain_best=True, log=print, verbose=0, command=None):
    """Searches, reports, then retrains and exports the best trial.

    `config` is the recipe, with `train.epochs` the epochs of one trial and
    `data.validation_examples` > 0. Rerunning the same call resumes: the
    base model, finished trials, the default's score and the best model are
    reused, and only missing work is done. A larger `max_trials` extends
    the search; any other change (the config, the tuner, the floors) is
    refused with a ConfigError before any work. `overwrite` deletes the
    previous search first (ForeignFilesError, nothing deleted, if the
    project dir holds files the search did not write).

    `command` (the tune.py command line) is recorded with the best model.

    Returns the report dict also written to trials.json.
    """
    floors = tuning.floors_for(config.train.method,
                               floors or tuning.Floors())
    if config.data.validation_examples <= 0:
        raise config_lib.ConfigError(
            "a search needs a validation split: pass `data.validation_examples`"
        )
    project_dir = Path(project_dir)
    base_dir = None
    if config.train.method in FROM_BASE_METHODS:
        base_dir = project_dir / "base"
        config = config_lib.replace(config, **{
            "train.base_workdir": str(base_dir)})
    _prepare_project(
        project_dir, search_settings(config, tuner, floors), overwrite)
    if base_dir is not None:
        log(f"Base model in {base_dir}")
        # Scored on the validation split: the search never reads the test
        # set.
        train(base_config(config), base_dir, log=log, verbose=verbose,
              evaluation_split="validation")

    hypermodel = tuning.RecipeHyperModel(config, base_dir, floors, verbose)
    hypermodel.load_data()
    search = tuning.make_tuner(
        tuner, hypermodel, project_dir, max_trials, config.train.epochs,
        config.train.seed, strategy=strategy, overwrite=overwrite,
    )
    log(f"Searching ({tuner}, up to {max_trials} trials of "
        f"{config.train.epochs} epochs) in {project_dir / TUNER_DIR}")
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
        "method": config.train.method,
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
        # What the search cost: its trials' training time (trials
        # recorded before it was measured left out), the default's score
        # and the base model not included.
        "search_seconds": sum(row["train_seconds"] or 0.0 for row in rows),
    }
    files.write_json(project_dir / "trials.json", report)
    files.write_text(project_dir / "trials.md",
                     _markdown(rows, default, objective))
    plot_pareto(rows, default, project_dir / "pareto.png")
    best = rows[0]
    files.write_json(project_dir / "best_hyperparameters.json",
                     best["hyperparameters"])
    if retrain_best:
        best_config = tuning.config_at(config, best["hyperparameters"])
        best_dir = project_dir / "best"
        log(f"Retraining the best trial ({best['trial_id']}) in {best_dir}")
        # A search extended by more trials may have found another best:
        # best/ (ours) is then replaced, not refused.
        train(best_config, best_dir, log=log, verbose=verbose,
              overwrite=not holds_run(best_config, best_dir),
              command=command and f"{command}  # best trial "
              f"{best['trial_id']}: {best['hyperparameters']}")
        if not (best_dir / "export").exists():
            export_workdir(best_dir)
        report["best_workdir"] = str(best_dir)
    return report
