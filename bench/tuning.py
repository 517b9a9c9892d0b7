"""The same hyper-parameter search for ANP-VS, AT and TRADES.

Runs tune.py's search (anpvs_tf.search.run_search) for each of --methods
(the lenet5_caffe_<dataset>_<method> recipes) on the training images, by
default the embedded 5k MNIST ones, 1,000 of them held out for validation
(the test set is never read), with the same tuner, seed, number of trials
and epochs per trial: one tuning budget for every method. The spaces share
the weight learning rate, its schedule, the training PGD steps and their
travel; ANP-VS adds its gates and lambda, TRADES its beta
(anpvs_tf/tuning.py).
The recipe's own hyper-parameters are scored the same way. The objective
is robust validation accuracy (PGD-20 at the training eps), for ANP-VS
multiplied by (sparsity / --min_sparsity)^2 when a trial prunes less.

    python bench/tuning.py          # about 30 min per method on 2 cores

Writes bench/results/tuning.json, tuning.md and tuning_pareto_<method>.png;
the searches themselves (resumable) live in --runs_dir/<method>/.
Fashion-MNIST (IDX files in --data_dir), on a 5,000-image subset of its
training set so that the search costs what MNIST's does:

    python bench/tuning.py --dataset=fashion_mnist --train_examples=5000

writes bench/results/tuning_fashion_mnist.*, searches in
bench/runs/tuning_fashion_mnist.

--validation_step_size sets the scoring attack's step. MNIST's default,
PGD-20 of step 0.01, travels 0.2 in the 0.3 ball: a weak attack, which
favours recipes that only resist weak attacks (the best AT trial scored
85.70 % on it, and 64.76 % worst case on the test set after 60 epochs).
"""

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_list("methods", ["anp_vs", "at", "trades"],
                  "Methods to search, each with the same budget.")
flags.DEFINE_enum("dataset", "mnist", ["mnist", "fashion_mnist"],
                  "Data set of the recipes searched (MNIST: the embedded "
                  "5k images; Fashion-MNIST: IDX files in --data_dir).")
flags.DEFINE_string(
    "data_dir",
    str(Path(__file__).resolve().parents[2] / "shared/data/fashion-mnist"),
    "Folder of the Fashion-MNIST IDX files (--dataset=fashion_mnist).")
flags.DEFINE_integer(
    "train_examples", None,
    "Training images to use (the first N, validation included); default: "
    "all of them.", lower_bound=2)
flags.DEFINE_float(
    "validation_step_size", None,
    "Step of the PGD-20 that scores the trials; default: the recipe's "
    "evaluation step (MNIST: 0.01).", lower_bound=0.0)
flags.DEFINE_string("runs_dir", None,
                    "Search directories, one per method (resumed when they "
                    "exist); default bench/runs/tuning, with "
                    "_fashion_mnist for that data set.")
flags.DEFINE_enum("tuner", "bayesian", ["random", "bayesian", "hyperband"],
                  "keras-tuner algorithm.")
flags.DEFINE_integer("max_trials", 10, "Trials per method.")
flags.DEFINE_integer("epochs", 12, "Epochs per trial.")
flags.DEFINE_integer("base_epochs", 10,
                     "Epochs of the base model ANP-VS's trials start from.")
flags.DEFINE_integer("validation_examples", 1000,
                     "Held-out training images scoring the trials.")
flags.DEFINE_float("min_sparsity", 50.0, "ANP-VS's unit sparsity floor (%).")
flags.DEFINE_integer("seed", 0, "Seed of every tuner and trial.")
flags.DEFINE_string("output", None,
                    "Output path without extension; default "
                    "bench/results/tuning, with _fashion_mnist for that "
                    "data set.")
FLAGS = flags.FLAGS

KEYS = ("hyperparameters", "clean_val_acc", "robust_val_acc",
        "unit_sparsity", "flops_speedup", "objective")
# Budget keys added after bench/results/tuning.json was written, with the
# values it was written with: a search of the defaults still finds it.
DEFAULT_BUDGET = {"dataset": "mnist", "train_examples": None,
                  "validation_step_size": None}


def default_path(root):
    return root if FLAGS.dataset == "mnist" else f"{root}_{FLAGS.dataset}"


def runs_dir():
    return Path(FLAGS.runs_dir or default_path("bench/runs/tuning"))


def data_overrides():
    """The recipe's data and validation attack for this search."""
    overrides = {}
    if FLAGS.dataset != "mnist":
        overrides.update({"data.source": "idx",
                          "data.data_dir": FLAGS.data_dir})
    if FLAGS.train_examples is not None:
        overrides["data.train_examples"] = FLAGS.train_examples
    if FLAGS.validation_step_size is not None:
        overrides["eval.attack.step_size"] = FLAGS.validation_step_size
    return overrides


def search(method):
    """One method's search; its report, trimmed to what the table shows."""
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.search import run_search
    from anpvs_tf.tuning import Floors

    recipe = f"lenet5_caffe_{FLAGS.dataset}_{method}"
    config = config_lib.replace(
        get_experiment(recipe),
        **{
            "train.epochs": FLAGS.epochs,
            "train.base_epochs": FLAGS.base_epochs,
            "train.seed": FLAGS.seed,
            "data.validation_examples": FLAGS.validation_examples,
            "data.monitor_examples": 0,
            "eval.attack.num_steps": 20,
            **data_overrides(),
        },
    )
    report = run_search(
        config, runs_dir() / method, tuner=FLAGS.tuner,
        max_trials=FLAGS.max_trials,
        floors=Floors(min_sparsity=FLAGS.min_sparsity),
        verbose=0,
        # The tuned rows are trained and scored by mnist_budget.py and
        # fashion_tuned.py: retraining the best trial here would only
        # read the test set, which the search never uses.
        retrain_best=False,
        command="python bench/tuning.py " + " ".join(sys.argv[1:]),
    )
    return {
        "recipe": recipe,
        "objective": report["objective"],
        "default_objective": report["default_objective"],
        "best_objective": report["best_objective"],
        "search_seconds": report["search_seconds"],
        "default": {k: report["default"][k] for k in KEYS},
        "trials": [
            {"trial_id": row["trial_id"],
             **{k: row[k] for k in (*KEYS, "train_seconds")}}
            for row in report["trials"]
        ],
        "pareto_front": report["pareto_front"],
    }


def data_text():
    """Which images the search trains and scores on."""
    name, total = {"mnist": ("embedded MNIST", 5000),
                   "fashion_mnist": ("Fashion-MNIST (IDX)", 60000)}[
                       FLAGS.dataset]
    used = FLAGS.train_examples or total
    subset = (" (the 5k subset)" if FLAGS.dataset == "mnist" and
              used == total else
              "" if used == total else f" (the first {used:,})")
    return (f"{name}: {used - FLAGS.validation_examples:,} training / "
            f"{FLAGS.validation_examples:,} validation images{subset}, "
            "test set unused")


def validation_attack_text():
    """The attack scoring every trial (the recipes share it)."""
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment

    attack = config_lib.replace(
        get_experiment(f"lenet5_caffe_{FLAGS.dataset}_{FLAGS.methods[0]}"),
        **{"eval.attack.num_steps": 20, **data_overrides()}).eval.attack
    return (f"PGD-20 at eps {attack.epsilon:g}, step {attack.step_size:g}, "
            "random start, the same for every trial")


def _hyperparameters(row):
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(row["hyperparameters"].items()))


def markdown(results):
    lines = [
        f"The same search for every method: {data_text()}, "
        f"{FLAGS.tuner} tuner, {FLAGS.max_trials} trials of "
        f"{FLAGS.epochs} epochs, seed {FLAGS.seed}; validation attack "
        f"{validation_attack_text()}.", "",
        *markdown_table(
            ("method", "best trial", "robust val %", "clean val %",
             "unit sparsity %", "recipe's robust val %", "search s",
             "best hyper-parameters"),
            [(method, r["trials"][0]["trial_id"],
              f"{100 * r['trials'][0]['robust_val_acc']:.2f}",
              f"{100 * r['trials'][0]['clean_val_acc']:.2f}",
              f"{r['trials'][0]['unit_sparsity']:.2f}",
              f"{100 * r['default']['robust_val_acc']:.2f}",
              f"{r['search_seconds']:.0f}",
              _hyperparameters(r["trials"][0]))
             for method, r in results.items()]),
    ]
    for method, result in results.items():
        lines += ["", f"## {method}", "", *markdown_table(
            ("trial", "hyper-parameters", "robust val %", "clean val %",
             "unit sparsity %", "objective", "train s"),
            [(row["trial_id"], _hyperparameters(row),
              f"{100 * row['robust_val_acc']:.2f}",
              f"{100 * row['clean_val_acc']:.2f}",
              f"{row['unit_sparsity']:.2f}", f"{row['objective']:.4f}",
              "" if row["train_seconds"] is None
              else f"{row['train_seconds']:.0f}")
             for row in [{"trial_id": "recipe", "train_seconds": None,
                          **result["default"]}, *result["trials"]]])]
    return "\n".join(lines) + "\n"


def earlier_results(path, budget):
    """Methods searched earlier with the same budget: they stay in the table
    (one method per invocation fits a shorter session)."""
    if not path.exists():
        return {}
    earlier = files.read_json(path, "delete it and rerun the searches")
    same = {**DEFAULT_BUDGET,
            **earlier.get("setup", {}).get("budget", {})} == budget
    return earlier["methods"] if same else {}


def main(argv):
    del argv
    import tensorflow as tf
    from absl import logging

    import models  # noqa: F401  (registers the zoo)

    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    start = time.perf_counter()
    output = Path(FLAGS.output or default_path("bench/results/tuning"))
    output.parent.mkdir(parents=True, exist_ok=True)
    budget = {"tuner": FLAGS.tuner, "max_trials": FLAGS.max_trials,
              "epochs_per_trial": FLAGS.epochs,
              "base_epochs": FLAGS.base_epochs, "seed": FLAGS.seed,
              "validation_examples": FLAGS.validation_examples,
              "dataset": FLAGS.dataset,
              "train_examples": FLAGS.train_examples,
              "validation_step_size": FLAGS.validation_step_size}
    path = output.with_suffix(".json")
    earlier_results(path, budget)  # a damaged file fails now, not in 30 min
    searched = {method: search(method) for method in FLAGS.methods}
    # Read again after the searches: an invocation running beside this one
    # may have written its method meanwhile.
    results = {**earlier_results(path, budget), **searched}
    files.write_json(path, {
        "methods": results,
        "setup": {
            "budget": budget,
            "data": data_text(),
            "validation_attack": validation_attack_text(),
            "wall_seconds_this_invocation": time.perf_counter() - start,
            "command": "python bench/tuning.py " + " ".join(sys.argv[1:]),
        },
    })
    for method in FLAGS.methods:
        shutil.copyfile(
            runs_dir() / method / "pareto.png",
            output.with_name(f"{output.name}_pareto_{method}.png"))
    text = markdown(results)
    files.write_text(output.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    app.run(cli.run_main(main))
