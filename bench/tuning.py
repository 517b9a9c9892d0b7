"""Hyper-parameter search on the embedded MNIST: does it beat the recipe?

Runs tune.py's search (anpvs_tf.search.run_search) for the
lenet5_caffe_mnist_anp_vs recipe on the embedded 5k MNIST training images,
1,000 of them held out for validation, and scores the recipe's own
hyper-parameters the same way. The objective is robust validation accuracy
(PGD-20 at the training eps), multiplied by (sparsity / --min_sparsity)^2
when a trial prunes less than that (anpvs_tf/tuning.py).

    python bench/tuning.py                 # about an hour on 2 cores

Writes bench/results/tuning.json, tuning.md and tuning_pareto.png; the
search itself (resumable) lives in bench/runs/tuning/.
"""

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string("project_dir", "bench/runs/tuning",
                    "Search directory (resumed when it exists).")
flags.DEFINE_enum("tuner", "bayesian", ["random", "bayesian", "hyperband"],
                  "keras-tuner algorithm.")
flags.DEFINE_integer("max_trials", 10, "Trials (at least 8).")
flags.DEFINE_integer("epochs", 12, "Epochs per trial.")
flags.DEFINE_integer("base_epochs", 10, "Epochs of the shared base model.")
flags.DEFINE_integer("validation_examples", 1000,
                     "Held-out training images scoring the trials.")
flags.DEFINE_float("min_sparsity", 50.0, "Unit sparsity floor (%).")
flags.DEFINE_string("output", "bench/results/tuning",
                    "Output path without extension.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import tensorflow as tf
    from absl import logging

    import models  # noqa: F401  (registers the zoo)
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.search import run_search
    from anpvs_tf.tuning import Floors

    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    config = config_lib.replace(
        get_experiment("lenet5_caffe_mnist_anp_vs"),
        **{
            "train.epochs": FLAGS.epochs,
            "train.base_epochs": FLAGS.base_epochs,
            "data.validation_examples": FLAGS.validation_examples,
            "data.monitor_examples": 0,
            "eval.attack.num_steps": 20,
        },
    )
    start = time.perf_counter()
    report = run_search(
        config, FLAGS.project_dir, tuner=FLAGS.tuner,
        max_trials=FLAGS.max_trials,
        floors=Floors(min_sparsity=FLAGS.min_sparsity),
        verbose=0,
        command="python bench/tuning.py " + " ".join(sys.argv[1:]),
    )
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    keys = ("hyperparameters", "clean_val_acc", "robust_val_acc",
            "unit_sparsity", "flops_speedup", "objective")
    result = {
        "objective": report["objective"],
        "default_objective": report["default_objective"],
        "best_objective": report["best_objective"],
        "default": {k: report["default"][k] for k in keys},
        "trials": [
            {"trial_id": row["trial_id"], **{k: row[k] for k in keys}}
            for row in report["trials"]
        ],
        "pareto_front": report["pareto_front"],
        "setup": {
            "recipe": "lenet5_caffe_mnist_anp_vs",
            "data": "embedded MNIST: 4,000 training / 1,000 validation "
                    "images (the 5k subset), test set unused",
            "tuner": FLAGS.tuner,
            "epochs_per_trial": FLAGS.epochs,
            "base_epochs": FLAGS.base_epochs,
            "validation_attack": "PGD-20, eps 0.3, step 0.01, random start",
            "wall_seconds_this_invocation": time.perf_counter() - start,
            "command": "python bench/tuning.py " + " ".join(sys.argv[1:]),
        },
    }
    files.write_json(output.with_suffix(".json"), result)
    project = Path(FLAGS.project_dir)
    shutil.copyfile(project / "pareto.png",
                    output.with_name(output.name + "_pareto.png"))
    shutil.copyfile(project / "trials.md", output.with_suffix(".md"))
    print((project / "trials.md").read_text())


if __name__ == "__main__":
    app.run(cli.run_main(main))
