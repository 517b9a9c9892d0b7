"""Searches a recipe's hyper-parameters with keras-tuner, then exports the
best.

    python tune.py                                   # 8 Bayesian trials
    python tune.py --tuner=random --max_trials=20 --epochs=5
    python tune.py --min_sparsity=60 --min_flops_speedup=1.5
    python tune.py --model=lenet5_caffe_mnist_at     # AT, the same budget

Samples, around the --model recipe, what its method has: the weight
learning rate and its schedule; the training PGD steps and how far they
travel (adversarial methods); beta, the gate learning rate and the gate
initialisation (gated methods); lambda (ANP-VS) and TRADES' beta. The
dimensions methods share are the same, so AT, TRADES and ANP-VS searched
with the same flags get the same tuning budget. Trials of a method that
starts from a base model start from one base model. Each is scored on
--validation_examples training images held out of every trial's training
data (never the test set): its robust validation accuracy, discounted by
(achieved / floor)^2 for each size floor it misses (gated methods only;
see anpvs_tf/tuning.py). Writes into --project_dir the trial
table (trials.json, trials.md), the Pareto front plot (pareto.png), the
best hyper-parameters, and the best trial retrained by train.py's code path
(best/) and exported by export.py's (best/export/). Run the same command
again to resume an interrupted search (a larger --max_trials extends it);
a rerun with other settings is refused, and --overwrite deletes the old
search first.

Distributed search: keras-tuner's chief/worker mode. Start the chief with
KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=<ip> KERASTUNER_ORACLE_PORT=
<port>, and each worker with the same IP and port and KERASTUNER_TUNER_ID=
tuner0, tuner1, ...; every process runs this same command (see README).

TensorFlow's C++ start-up log is hidden; set TF_CPP_MIN_LOG_LEVEL=0 to see
it.
"""

from anpvs_tf import cli

cli.start()  # before anything imports TensorFlow

import dataclasses  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import models  # noqa: E402,F401  (registers the zoo)
from anpvs_tf import config as config_lib  # noqa: E402
from anpvs_tf.config import STRATEGIES  # noqa: E402
from anpvs_tf.datasets import SOURCES  # noqa: E402
from anpvs_tf.distribution import make_strategy  # noqa: E402
from anpvs_tf.errors import ConfigError  # noqa: E402
from anpvs_tf.methods import ADVERSARIAL_METHODS  # noqa: E402
from anpvs_tf.methods import GATED_METHODS  # noqa: E402
from anpvs_tf.registry import get_experiment  # noqa: E402
from anpvs_tf.search import run_search  # noqa: E402
from anpvs_tf.tuning import TUNERS  # noqa: E402
from anpvs_tf.tuning import Floors  # noqa: E402

FLAGS = flags.FLAGS
# The config flags tune.py offers.
TUNE_FLAGS = {name: cli.CONFIG_FLAGS[name] for name in (
    "epochs", "base_epochs", "batch_size", "seed", "strategy",
    "validation_examples", "train_examples", "data_source", "data_dir",
    "val_pgd_steps")}


def define_flags():
    flags.DEFINE_string(
        "model", "lenet5_caffe_mnist_anp_vs",
        "Zoo entry whose recipe is searched: a gated or an adversarial "
        "method (e.g. lenet5_caffe_mnist_at, _trades).")
    flags.DEFINE_string("project_dir", "runs/tune",
                        "Where the search, its reports and the best model "
                        "go; an existing one is resumed (with the same "
                        "settings only).")
    flags.DEFINE_enum("tuner", "bayesian", list(TUNERS),
                      "Search algorithm: random search, Bayesian "
                      "optimisation (Gaussian process) or Hyperband.")
    flags.DEFINE_integer("max_trials", 8,
                         "Trials to run (random, bayesian).", lower_bound=1)
    flags.DEFINE_integer("epochs", 10,
                         "Training epochs of one trial (Hyperband: the "
                         "largest bracket).", lower_bound=1)
    flags.DEFINE_integer("base_epochs", None,
                         "Epochs of the base model every trial starts from "
                         "(default: the recipe's).")
    flags.DEFINE_integer("validation_examples", 1000,
                         "Training examples held out to score trials.",
                         lower_bound=1)
    flags.DEFINE_integer("train_examples", None,
                         "Train on N of the remaining training examples.")
    flags.DEFINE_enum("data_source", None, list(SOURCES),
                      "Where the data comes from (default: the recipe's; "
                      "embedded MNIST offline).")
    flags.DEFINE_string("data_dir", None,
                        "Folder of IDX files (implies --data_source=idx), "
                        "or the tfds data_dir.")
    flags.DEFINE_integer("batch_size", None, "Global batch size.")
    flags.DEFINE_float("min_sparsity", 50.0,
                       "Unit sparsity floor, in %, of a feasible trial "
                       "(gated methods).")
    flags.DEFINE_float("min_flops_speedup", 1.0,
                       "FLOPs speed-up floor of a feasible trial (gated "
                       "methods).")
    flags.DEFINE_integer("val_pgd_steps", 20,
                         "PGD steps of the validation attack (training "
                         "eps and step size).", lower_bound=1)
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                      "Distribution strategy of every trial (see train.py "
                      "--help).")
    flags.DEFINE_integer("seed", None, "Seed of the tuner and the trials.")
    flags.DEFINE_bool("overwrite", False,
                      "Start the search over: deletes what an earlier "
                      "search wrote in --project_dir (refused if other "
                      "files lie there).")
    flags.DEFINE_bool("retrain_best", True,
                      "Retrain the best trial and export it.")
    flags.DEFINE_enum("verbose", "0", ["0", "1", "2"],
                      "Keras progress output of each trial.")
    cli.define_override_flag()


def check_flag_values(values):
    """ConfigError for flag values no search can use: a NaN or infinite
    float flag, an empty --project_dir. `values`: flag name -> value."""
    for name, value in sorted(values.items()):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{name} must be a finite number; got {value}")
    if not str(values.get("project_dir") or "").strip():
        raise ConfigError("--project_dir must not be empty; pass the folder "
                          "of the search, e.g. --project_dir=runs/tune")


def check_searchable(model, method, floor_flags):
    """ConfigError for a recipe no search can rank: one that is neither
    gated nor adversarial, or size floors (`floor_flags`, the ones passed)
    on a method that prunes nothing."""
    if method not in (*GATED_METHODS, *ADVERSARIAL_METHODS):
        raise ConfigError(
            f"--model={model} trains neither gates nor against an attack, "
            "so it has no robustness to search for; search an entry such "
            "as lenet5_caffe_mnist_anp_vs or lenet5_caffe_mnist_at"
        )
    if method not in GATED_METHODS and floor_flags:
        raise ConfigError(
            f"--model={model} prunes nothing, so {' and '.join(floor_flags)}"
            " cannot apply; leave them out (its trials are ranked by robust "
            "validation accuracy)"
        )


def resolve_config():
    """Recipe of --model with the flags; the validation attack is the
    training attack with --val_pgd_steps steps."""
    config = get_experiment(FLAGS.model)
    check_searchable(FLAGS.model, config.train.method, [
        f"--{name}" for name in ("min_sparsity", "min_flops_speedup")
        if FLAGS[name].present])
    config = cli.apply_flags(config, aliases=TUNE_FLAGS)
    attack = dataclasses.replace(config.attack,
                                 num_steps=config.eval.attack.num_steps)
    return config_lib.replace(config, **{"data.monitor_examples": 0,
                                         "eval.attack": attack})


def main(argv):
    del argv
    check_flag_values(FLAGS.flag_values_dict())
    # Floors check their ranges: a bad floor fails before anything exists.
    floors = Floors(FLAGS.min_sparsity, FLAGS.min_flops_speedup)
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")  # one retracing warning per trial
    config = resolve_config()
    report = run_search(
        config,
        FLAGS.project_dir,
        tuner=FLAGS.tuner,
        max_trials=FLAGS.max_trials,
        floors=floors,
        strategy=make_strategy(FLAGS.strategy),
        overwrite=FLAGS.overwrite,
        retrain_best=FLAGS.retrain_best,
        verbose=int(FLAGS.verbose),
        command=shlex.join(["python", *sys.argv]),
    )
    best = report["trials"][0]
    print(f"best trial {best['trial_id']}: objective "
          f"{best['objective']:.4f} (default {report['default_objective']:.4f})"
          f", robust val {100 * best['robust_val_acc']:.2f} %, sparsity "
          f"{best['unit_sparsity']:.2f} %, FLOPs x{best['flops_speedup']:.2f}")
    print(f"reports in {FLAGS.project_dir}: trials.md, trials.json, "
          "pareto.png, best_hyperparameters.json")


if __name__ == "__main__":
    define_flags()
    cli.run(main, aliases=TUNE_FLAGS)
