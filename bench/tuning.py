"""The same hyper-parameter search for ANP-VS, AT and TRADES.

Runs tune.py's search (anpvs_tf.search.run_search) for each of --methods
(the lenet5_caffe_mnist_<method> recipes) on the embedded 5k MNIST
training images, 1,000 of them held out for validation (the test set is
never read), with the same tuner, seed, number of trials and epochs per
trial: one tuning budget for every method. The spaces share the weight
learning rate, its schedule, the training PGD steps and their travel;
ANP-VS adds its gates and lambda, TRADES its beta (anpvs_tf/tuning.py).
The recipe's own hyper-parameters are scored the same way. The objective
is robust validation accuracy (PGD-20 at the training eps), for ANP-VS
multiplied by (sparsity / --min_sparsity)^2 when a trial prunes less.

    python bench/tuning.py          # about 30 min per method on 2 cores

Writes bench/results/tuning.json, tuning.md and tuning_pareto_<method>.png;
the searches themselves (resumable) live in --runs_dir/<method>/.
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
flags.DEFINE_string("runs_dir", "bench/runs/tuning",
                    "Search directories, one per method (resumed when they "
                    "exist).")
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
flags.DEFINE_string("output", "bench/results/tuning",
                    "Output path without extension.")
FLAGS = flags.FLAGS

KEYS = ("hyperparameters", "clean_val_acc", "robust_val_acc",
        "unit_sparsity", "flops_speedup", "objective")


def search(method):
    """One method's search; its report, trimmed to what the table shows."""
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.search import run_search
    from anpvs_tf.tuning import Floors

    recipe = f"lenet5_caffe_mnist_{method}"
    config = config_lib.replace(
        get_experiment(recipe),
        **{
            "train.epochs": FLAGS.epochs,
            "train.base_epochs": FLAGS.base_epochs,
            "train.seed": FLAGS.seed,
            "data.validation_examples": FLAGS.validation_examples,
            "data.monitor_examples": 0,
            "eval.attack.num_steps": 20,
        },
    )
    report = run_search(
        config, Path(FLAGS.runs_dir) / method, tuner=FLAGS.tuner,
        max_trials=FLAGS.max_trials,
        floors=Floors(min_sparsity=FLAGS.min_sparsity),
        verbose=0,
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


def _hyperparameters(row):
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(row["hyperparameters"].items()))


def markdown(results):
    lines = [
        "The same search for every method: embedded MNIST, 4,000 training "
        "/ 1,000 validation images (test set unused), "
        f"{FLAGS.tuner} tuner, {FLAGS.max_trials} trials of "
        f"{FLAGS.epochs} epochs, seed {FLAGS.seed}; validation attack "
        "PGD-20 at eps 0.3, step 0.01, the same for every trial.", "",
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


def main(argv):
    del argv
    import tensorflow as tf
    from absl import logging

    import models  # noqa: F401  (registers the zoo)

    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    start = time.perf_counter()
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    budget = {"tuner": FLAGS.tuner, "max_trials": FLAGS.max_trials,
              "epochs_per_trial": FLAGS.epochs,
              "base_epochs": FLAGS.base_epochs, "seed": FLAGS.seed,
              "validation_examples": FLAGS.validation_examples}
    results = {}
    path = output.with_suffix(".json")
    if path.exists():
        earlier = files.read_json(path, "delete it and rerun the searches")
        # Methods searched earlier with the same budget stay in the table
        # (one method per invocation fits a shorter session).
        if earlier.get("setup", {}).get("budget") == budget:
            results = earlier["methods"]
    results.update({method: search(method) for method in FLAGS.methods})
    files.write_json(path, {
        "methods": results,
        "setup": {
            "budget": budget,
            "data": "embedded MNIST: 4,000 training / 1,000 validation "
                    "images (the 5k subset), test set unused",
            "validation_attack": "PGD-20, eps 0.3, step 0.01, random "
                                 "start (every trial alike)",
            "wall_seconds_this_invocation": time.perf_counter() - start,
            "command": "python bench/tuning.py " + " ".join(sys.argv[1:]),
        },
    })
    for method in FLAGS.methods:
        shutil.copyfile(
            Path(FLAGS.runs_dir) / method / "pareto.png",
            output.with_name(f"{output.name}_pareto_{method}.png"))
    text = markdown(results)
    files.write_text(output.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    app.run(cli.run_main(main))
