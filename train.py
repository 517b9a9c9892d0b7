"""Trains a zoo entry (ANP-VS or a baseline) and evaluates it.

    python train.py --model=lenet5_caffe_mnist_anp_vs_budget \
        --workdir=runs/quickstart

The entry's recipe (the paper's hyper-parameters) is the starting point;
every flag that is given overrides it, and --override=section.field=value
(repeatable) sets any key of config.json, e.g.
--override=train.decay_fractions=0.5,0.7. Running the same command again
resumes an interrupted run from its last epoch.

Exit codes: 0 done, 2 a mistake in the flags or the workdir (one line
says which and how to fix it), 1 the run diverged (NaN) or collapsed,
130 interrupted. TensorFlow's C++ start-up log is hidden; set
TF_CPP_MIN_LOG_LEVEL=0 to see it.
"""

from anpvs_tf import cli

cli.start()  # before anything imports TensorFlow

import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import models  # noqa: E402,F401  (registers the zoo)
from anpvs_tf.delivery import deliver  # noqa: E402
from anpvs_tf.delivery import format_summary  # noqa: E402
from anpvs_tf.delivery import plan  # noqa: E402
from anpvs_tf.delivery import run_seconds  # noqa: E402
from anpvs_tf.methods import BASE_METHODS  # noqa: E402
from anpvs_tf.methods import METHODS  # noqa: E402
from anpvs_tf.registry import get_experiment  # noqa: E402
from anpvs_tf.registry import list_experiments  # noqa: E402
from anpvs_tf.training import train  # noqa: E402
from anpvs_tf.workdir import SUMMARY_TABLE  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string(
        "model", "lenet5_caffe_mnist_anp_vs",
        "Zoo entry (architecture_dataset_method) whose recipe to train; "
        "--list_models prints them.")
    flags.DEFINE_bool("list_models", False, "Print the zoo entries and exit.")
    flags.DEFINE_string(
        "workdir", None,
        "Where checkpoints, TensorBoard logs, the trained network and "
        "results.json go. Default: runs/<model>. An existing workdir of the "
        "same run is resumed; one of a different run is an error.")
    flags.DEFINE_bool(
        "overwrite", False,
        "Delete an existing workdir (checkpoints included) and start over.")
    flags.DEFINE_enum(
        "dataset", None, ["mnist", "fashion_mnist", "cifar10", "cifar100"],
        "Dataset (default: the recipe's).")
    flags.DEFINE_enum(
        "data_source", None, ["embedded", "idx", "tfds"],
        "embedded: the 5k-image real MNIST subset shipped in the package "
        "(offline); idx: IDX .gz files in --data_dir; tfds: "
        "tensorflow-datasets (needs internet or a prepared --data_dir).")
    flags.DEFINE_string("data_dir", None,
                        "Folder of the IDX files, or tfds data_dir.")
    flags.DEFINE_integer("train_examples", None,
                         "Use only the first N training examples.")
    flags.DEFINE_integer(
        "test_examples", None,
        "Evaluate on the first N test examples (default: all).")
    flags.DEFINE_integer(
        "monitor_examples", None,
        "Size of the fixed test slice scored after every epoch "
        "(default 1000; 0 turns it off).")
    flags.DEFINE_bool(
        "augment", None,
        "Random 4-pixel pad-and-crop and horizontal flip of training "
        "images (default: the recipe's; on for CIFAR).")
    flags.DEFINE_enum(
        "method", None, list(METHODS),
        "standard | at (PGD adversarial training) | at_pretrained (AT "
        "started from a trained standard model) | trades (TRADES: clean CE "
        "+ --trades_beta x KL to the clean prediction) | bp "
        "(Beta-Bernoulli pruning) | anp (adversarial pruning) | anp_vs (ANP "
        "+ vulnerability suppression). Default: the recipe's.")
    flags.DEFINE_float(
        "trades_beta", None,
        "TRADES' weight of KL(p(x) || p(x_adv)) (method trades; default 6).")
    flags.DEFINE_integer("epochs", None, "Training epochs.")
    flags.DEFINE_integer(
        "batch_size", None,
        "Global batch size: split evenly over all replicas (GPUs, workers), "
        "so it must be a multiple of their number. Each step sees the same "
        "examples as on one device and the learning rates are not rescaled: "
        "a run gives the same result on any number of replicas. To use more "
        "devices for a larger batch, raise --batch_size and choose "
        "--weight_lr/--gate_lr yourself.")
    flags.DEFINE_float("epsilon", None,
                       "L-inf radius of the training attack, in [0, 1].")
    flags.DEFINE_integer("pgd_steps", None, "PGD steps of the training attack.")
    flags.DEFINE_float("pgd_step_size", None, "PGD step size (training).")
    flags.DEFINE_integer("eval_pgd_steps", None,
                         "PGD steps of the final evaluation (default 40).")
    flags.DEFINE_integer("eval_batch_size", None, "Evaluation batch size.")
    flags.DEFINE_float(
        "beta", None,
        "KL weight of the gates; the KL is divided by --kl_normalizer.")
    flags.DEFINE_integer(
        "kl_normalizer", None,
        "N dividing the KL (recipe: 60000, the paper's MNIST size, which "
        "keeps beta/N equal to the paper's on a subset). 0: the actual "
        "training-set size.")
    flags.DEFINE_float("vs_weight", None,
                       "lambda, the weight of the vulnerability suppression "
                       "loss.")
    flags.DEFINE_float("weight_lr", None, "Adam learning rate of weights.")
    flags.DEFINE_float("gate_lr", None, "Adam learning rate of the gates.")
    flags.DEFINE_integer(
        "gate_epochs", None,
        "Gated methods: the gates learn for the first N epochs, then freeze "
        "(each unit keeps its E[pi], pruned units stay 0) and the weights "
        "fine-tune the pruned network without mask noise for the remaining "
        "epochs. Default: the recipe's (the paper's: gates learn for every "
        "epoch).")
    flags.DEFINE_float(
        "freeze_at_sparsity", None,
        "Gated methods with --gate_epochs: freeze the gates as soon as this "
        "percentage of the gated units is pruned (checked after every "
        "step), at the latest after --gate_epochs; the weights go on "
        "masked until then. Default: the recipe's (none).")
    flags.DEFINE_bool(
        "compact_fine_tune", None,
        "After --gate_epochs, train the network without its pruned units "
        "(the same steps as the masked network, up to float rounding, at "
        "the cost of the units that remain); --nocompact_fine_tune keeps "
        "the masked network. Networks with a batch-norm after a gate "
        "(VGG-16, ResNet-18) stay masked. Default: the recipe's (on).")
    flags.DEFINE_float(
        "gate_init", None,
        "Raw initial value of the gates' first concentration a (softplus "
        "of it is a; b starts at 1). Paper: -1.0, E[pi] = 0.24, which scales "
        "each gated layer by about a quarter at the start; 3.0 gives E[pi] = "
        "0.75, 5.0 gives 0.83.")
    flags.DEFINE_integer("seed", None, "Random seed (data order, init, "
                         "attacks, gate noise).")
    flags.DEFINE_enum(
        "strategy", None, ["auto", "default", "mirrored", "multi_worker"],
        "auto: MirroredStrategy over all local GPUs when there are any, "
        "else one device; default: one device; mirrored: MirroredStrategy "
        "over all local devices; multi_worker: MultiWorkerMirroredStrategy "
        "over the machines listed in the TF_CONFIG environment variable "
        "(start the same command on every worker, with the same --workdir "
        "on a shared filesystem; only the chief writes it). The global "
        "batch and the learning rates stay as given (see --batch_size). "
        "Default: the recipe's (default).")
    flags.DEFINE_enum(
        "mixed_precision", None, ["none", "mixed_float16", "mixed_bfloat16"],
        "Compute dtype of the convolutions and dense layers, for GPUs "
        "(and CPUs with bfloat16 units): mixed_float16 (with dynamic loss "
        "scaling) or mixed_bfloat16. The gates, KL, losses and weights stay "
        "float32. Default: none (float32).")
    flags.DEFINE_string(
        "base_workdir", None,
        "Trained workdir whose network a gated method (bp, anp, anp_vs) "
        "starts from. Default: train one (--base_method, --base_epochs) into "
        "<workdir>/base.")
    flags.DEFINE_integer("base_epochs", None,
                         "Epochs of the base model trained when no "
                         "--base_workdir is given.")
    flags.DEFINE_enum(
        "base_method", None, list(BASE_METHODS),
        "Method of that base model: standard (the paper's), at or trades "
        "(adversarial training, so pruning starts from a robust network). "
        "Default: the recipe's (standard).")
    cli.define_override_flag()
    flags.DEFINE_bool(
        "print_config", False,
        "Print the config this command resolves to (the recipe with every "
        "flag and --override applied, as JSON) and exit; nothing is "
        "created.")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"],
                      "Keras progress output: 1 progress bar, 2 one line per "
                      "epoch, 0 silent.")


def resolve_config():
    """Recipe of --model, then the flags that were given."""
    cli.check_not_empty(workdir=FLAGS.workdir, data_dir=FLAGS.data_dir,
                        base_workdir=FLAGS.base_workdir)
    return cli.apply_flags(get_experiment(FLAGS.model))


def main(argv):
    del argv
    if FLAGS.list_models:
        print("\n".join(list_experiments()))
        return
    # TensorFlow logs every collective op at INFO under multi_worker.
    logging.set_verbosity(logging.WARNING)
    config = resolve_config()
    if FLAGS.print_config:
        print(config.to_json())
        return
    workdir = FLAGS.workdir or f"runs/{FLAGS.model}"
    verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    command = shlex.join(["python", *sys.argv])
    started = time.perf_counter()
    # The summary below replaces the training's own results table. The
    # header estimates the time from the network's FLOPs: it builds the
    # network, so it waits for the distribution strategy.
    results = train(config, workdir, overwrite=FLAGS.overwrite,
                    verbose=verbose, command=command, report=False,
                    announce=lambda *sizes: print(
                        plan(config, run_seconds(config, *sizes))))
    if results is not None:  # None: a worker other than the chief
        summary = deliver(config, workdir, results, started)
        print(f"\nSummary ({workdir}/{SUMMARY_TABLE}):\n")
        print(format_summary(summary))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
