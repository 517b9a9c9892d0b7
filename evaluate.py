"""Evaluates a trained workdir: how robust, how small, and how sure.

    python evaluate.py --workdir=runs/quickstart                 # full suite
    python evaluate.py --workdir=runs/quickstart --suite=paper \\
        --source=runs/other_model                              # paper table
    python evaluate.py --workdir=runs/quickstart --attacks=pgd,apgd_ce \\
        --epsilon=0.2 --pgd_steps=100 --restarts=5 --output=runs/q/eps02

--suite=paper: clean, PGD-k white-box, black-box transfer from --source,
vulnerability (white/black, per gated layer), sparsity, memory, FLOPs.
--suite=full (default) adds FGSM, APGD-CE, APGD-DLR, the worst case per
example over all attacks, sweeps over eps and steps, and every sanity
check against gradient masking. Writes <output>.json, .md and PNG plots
(default <workdir>/evaluation); an existing report is kept unless
--overwrite. Whether the report can be written is checked before any
attack runs.

Exit codes: 0 done, 2 a mistake in the flags or the workdir (one line
says which), 1 the network diverged (non-finite weights) or collapsed, so
there is nothing to evaluate. TensorFlow's C++ start-up log is hidden; set
TF_CPP_MIN_LOG_LEVEL=0 to see it.
"""

from anpvs_tf import cli

cli.start()  # before anything imports TensorFlow

import math  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

import models  # noqa: E402,F401  (registers the zoo)
from anpvs_tf import files  # noqa: E402
from anpvs_tf.config import ATTACK_METHODS  # noqa: E402
from anpvs_tf.data import load_split  # noqa: E402
from anpvs_tf.datasets import DATASET_INFO  # noqa: E402
from anpvs_tf.errors import ConfigError  # noqa: E402
from anpvs_tf.evaluation.blackbox import load_source  # noqa: E402
from anpvs_tf.evaluation.classifier import Classifier  # noqa: E402
from anpvs_tf.evaluation.reports import check_writable  # noqa: E402
from anpvs_tf.evaluation.reports import format_report  # noqa: E402
from anpvs_tf.evaluation.reports import write_report  # noqa: E402
from anpvs_tf.evaluation.sanity import warn_if_failed  # noqa: E402
from anpvs_tf.evaluation.suites import SuiteSettings  # noqa: E402
from anpvs_tf.evaluation.suites import run_suite  # noqa: E402
from anpvs_tf.workdir import load_trained_model  # noqa: E402

FLAGS = flags.FLAGS
# The config flags evaluate.py offers: which test images, from where.
DATA_FLAGS = {name: cli.CONFIG_FLAGS[name]
              for name in ("test_examples", "data_source", "data_dir")}


def define_flags():
    flags.DEFINE_string("workdir", None,
                        "A workdir written by train.py: the target model.",
                        required=True)
    flags.DEFINE_enum(
        "suite", "full", ["paper", "full"],
        "paper: the paper's table columns (clean, PGD, black-box, "
        "vulnerability, complexity) and the cheap sanity checks. full: "
        "also FGSM, APGD-CE, APGD-DLR, worst case over attacks, eps and "
        "steps sweeps with plots, and all sanity checks.")
    flags.DEFINE_list(
        "attacks", None,
        "Comma-separated white-box attacks, replacing the suite's: any of "
        "fgsm, pgd, apgd_ce, apgd_dlr.")
    flags.DEFINE_enum("norm", "linf", ["linf", "l2"],
                      "Threat model: L-inf or L2 ball in [0, 1] pixel space.")
    flags.DEFINE_float(
        "epsilon", None,
        "Radius of the ball in pixel units (default: the training eps, "
        "e.g. 0.3 on MNIST; L-inf radii lie in [0, 1]).")
    flags.DEFINE_integer("pgd_steps", 40,
                         "PGD steps (0: random start only).")
    flags.DEFINE_float(
        "pgd_step_size", None,
        "PGD step size (default: the training step size for L-inf, "
        "2.5 * eps / steps for L2).")
    flags.DEFINE_integer("apgd_steps", 100,
                         "APGD iterations (Croce & Hein use 100).")
    flags.DEFINE_integer(
        "restarts", 1,
        "Random restarts of PGD and APGD; per example the worst is kept.")
    flags.DEFINE_bool("random_start", True,
                      "Start PGD/APGD at a random point of the ball.")
    flags.DEFINE_list(
        "sweep_eps", None,
        "Radii of the eps sweep (full suite). 0 and the radius that covers "
        "the whole image (1.0 for L-inf) are always added. Default: "
        "0,0.05,0.1,0.2,0.3,0.4,0.5 (L-inf), 0,0.5,1,1.5,2,3,4 (L2).")
    flags.DEFINE_list("sweep_steps", ["1", "5", "10", "20", "40", "100"],
                      "PGD step counts of the steps sweep (full suite).")
    flags.DEFINE_integer(
        "sweep_examples", 1000,
        "Sweeps and the eps-0 check use the first N test examples.")
    flags.DEFINE_bool(
        "sanity_checks", True,
        "Run the checks against gradient masking; a failure prints a loud "
        "warning and is recorded in the report.")
    flags.DEFINE_string(
        "source", None,
        "Black-box source: a workdir of a separately trained model, or a "
        "zoo entry (e.g. lenet5_caffe_mnist_standard) trained once into "
        "<workdir>/blackbox_sources/. Without it, no black-box column.")
    flags.DEFINE_integer("source_epochs", 10,
                         "Epochs to train a zoo-entry --source.")
    flags.DEFINE_enum(
        "gates", "inference", ["inference", "sampled"],
        "inference: deterministic E[pi] gates (the paper's test mode). "
        "sampled: training-mode random masks, attacked with EOT "
        "(gradients averaged over --eot_samples draws) and predicted by "
        "the mean probability over --eot_samples draws.")
    flags.DEFINE_integer("eot_samples", 10,
                         "Draws per gradient and per prediction with "
                         "--gates=sampled.")
    flags.DEFINE_integer("test_examples", None,
                         "Evaluate on the first N test examples "
                         "(default: the whole test set).")
    flags.DEFINE_integer("batch_size", 500, "Evaluation batch size.")
    flags.DEFINE_integer("seed", 0, "Seed of every random start.")
    flags.DEFINE_enum("data_source", None, ["embedded", "idx", "tfds"],
                      "Where the test set comes from (default: as trained).")
    flags.DEFINE_string("data_dir", None,
                        "Folder of IDX files, or tfds data_dir.")
    flags.DEFINE_string(
        "output", None,
        "Path without extension of the report: <output>.json, .md, "
        "_accuracy_vs_eps.png, _vulnerability.png (default: "
        "<workdir>/evaluation).")
    flags.DEFINE_bool("overwrite", False,
                      "Replace an existing report at --output.")
    flags.DEFINE_list(
        "compare", None,
        "Evaluation JSON files of other models to draw in the same plots, "
        "as name=path or path.")


def _numbers(values, kind, flag):
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise ConfigError(
            f"--{flag} takes comma-separated numbers (got "
            f"{','.join(values)})") from None


def _settings(trained):
    """SuiteSettings from the flags, checked; ConfigError on bad input."""
    epsilon = (trained.attack.epsilon if FLAGS.epsilon is None
               else FLAGS.epsilon)
    step_size = FLAGS.pgd_step_size
    if step_size is None and FLAGS.norm == "linf":
        step_size = trained.attack.step_size
    attacks = tuple(FLAGS.attacks) if FLAGS.attacks else None
    sweep_eps = (_numbers(FLAGS.sweep_eps, float, "sweep_eps")
                 if FLAGS.sweep_eps else None)
    sweep_steps = _numbers(FLAGS.sweep_steps, int, "sweep_steps")
    checks = [
        (math.isfinite(epsilon) and epsilon >= 0
         and (FLAGS.norm == "l2" or epsilon <= 1),
         (f"--epsilon must be in [0, 1] for L-inf and >= 0 for L2 (got "
         f"{epsilon}); it is a radius in pixel units, e.g. 0.3 for MNIST")),
        (step_size is None or (math.isfinite(step_size) and step_size > 0),
         f"--pgd_step_size must be a finite number > 0 (got {step_size})"),
        (FLAGS.pgd_steps >= 0, "--pgd_steps must be >= 0"),
        (FLAGS.apgd_steps >= 1, "--apgd_steps must be >= 1"),
        (FLAGS.restarts >= 1, "--restarts must be >= 1"),
        (FLAGS.eot_samples >= 1, "--eot_samples must be >= 1"),
        (FLAGS.batch_size >= 1, "--batch_size must be >= 1"),
        (FLAGS.sweep_examples >= 1, "--sweep_examples must be >= 1"),
        (FLAGS.source_epochs >= 1, "--source_epochs must be >= 1"),
        (all(a in ATTACK_METHODS for a in attacks or ()),
         (f"unknown attack in --attacks={','.join(attacks or ())}; choose "
         f"from {', '.join(ATTACK_METHODS)}")),
        (all(math.isfinite(e) and e >= 0 for e in sweep_eps or ()),
         "--sweep_eps must be finite numbers >= 0"),
        (all(s >= 0 for s in sweep_steps), "--sweep_steps must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return SuiteSettings(
        suite=FLAGS.suite, attacks=attacks, norm=FLAGS.norm,
        epsilon=epsilon, step_size=step_size, pgd_steps=FLAGS.pgd_steps,
        apgd_steps=FLAGS.apgd_steps, restarts=FLAGS.restarts,
        random_start=FLAGS.random_start, sweep_epsilons=sweep_eps,
        sweep_steps=sweep_steps, sweep_examples=FLAGS.sweep_examples,
        sanity_checks=FLAGS.sanity_checks, batch_size=FLAGS.batch_size,
        seed=FLAGS.seed)


def _compared_reports():
    reports = {}
    for item in FLAGS.compare or ():
        name, _, path = item.rpartition("=")
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--compare: no report at '{path}'")
        reports[name or path.parent.name] = files.read_json(
            path, "rerun the evaluate.py command that wrote it")
    return reports


def main(argv):
    del argv
    # Each attack traces once per budget; TF's retracing notes are noise.
    tf.get_logger().setLevel("ERROR")
    cli.check_not_empty(workdir=FLAGS.workdir, output=FLAGS.output,
                        data_dir=FLAGS.data_dir, source=FLAGS.source)
    keras.utils.set_random_seed(FLAGS.seed)
    trained, model = load_trained_model(FLAGS.workdir)
    settings = _settings(trained)
    output = Path(FLAGS.output or Path(FLAGS.workdir) / "evaluation")
    # Before any work: a refused report should not cost an evaluation.
    check_writable(output, FLAGS.overwrite)
    others = _compared_reports()
    data_config = cli.apply_flags(trained, aliases=DATA_FLAGS).data
    images, labels = load_split(data_config, "test")
    source = source_name = None
    if FLAGS.source:
        source_name, _, source_model = load_source(
            FLAGS.source, FLAGS.workdir, trained, FLAGS.source_epochs)
        source = Classifier(source_model.network)
    target = Classifier(model.network, FLAGS.gates, FLAGS.eot_samples,
                        FLAGS.seed)
    report = run_suite(target, images, labels, settings, source=source,
                       source_name=source_name,
                       num_classes=DATASET_INFO[trained.data.dataset][1],
                       log=print)
    report.update(
        workdir=str(FLAGS.workdir),
        method=trained.train.method,
        architecture=trained.model.architecture,
        dataset=trained.data.dataset,
    )
    written = write_report(report, output, FLAGS.overwrite, others,
                           title=f"{trained.train.method} ({FLAGS.workdir})")
    print(format_report(report, f"{trained.train.method} "
                        f"({FLAGS.workdir})"))
    warn_if_failed(report["sanity_checks"])
    print("written: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    define_flags()
    cli.run(main, aliases=DATA_FLAGS)
