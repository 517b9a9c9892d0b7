"""AT vs TRADES vs ANP-VS on the full Fashion-MNIST, same epoch budget.

Each method trains for --epochs epochs on the 60,000 real Fashion-MNIST
training images (IDX files in --data_dir) with the zoo's Fashion-MNIST
recipe (eps 0.1), the training attack shortened to --pgd_steps steps of
2.5 eps / steps so that the runs fit in about 90 minutes on 2 CPU cores.

ANP-VS branches off AT: it starts from AT's first --base_epochs epochs
(run at_base, the AT run's schedule cut short, so no decay yet) and trains
the rest of --epochs on the rest of AT's learning-rate schedule, so both
get the same adversarial epochs at the same learning rates. Its gates
learn for --gate_epochs, then freeze and the pruned network fine-tunes.
The supplementary run anp_vs_from_standard is the paper's start instead: a
standard model trained for --base_epochs, then all --epochs of ANP-VS.

All are evaluated on the 10,000 test images with PGD-40 at eps 0.1 (step
0.01, random start) and the strong suite (APGD-CE, APGD-DLR, the
per-example worst case; bench/budget.py). Runs resume when interrupted.

    python bench/fashion_budget.py

or side by side: `--only=at_base`, `--only=at` and `--only=standard`
first, then `--only=` trades, anp_vs, anp_vs_gate3 and anp_vs_from_standard
in parallel processes, then the plain command, which finds the finished
runs and writes the report.

Another seed, without the supplementary runs:

    python bench/fashion_budget.py --seed=1 --nosupplementary \
        --runs_dir=bench/runs/fashion_budget_seed1 \
        --output=bench/results/fashion_budget_seed1

Writes bench/results/fashion_budget.json and fashion_budget.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import budget  # noqa: E402

METHODS = ("at", "trades", "anp_vs")

flags.DEFINE_integer("epochs", 15, "Epochs for every method.")
flags.DEFINE_integer(
    "base_epochs", 5,
    "Epochs of the base ANP-VS starts from: AT's first epochs (at_base), "
    "or the standard model of anp_vs_from_standard.")
flags.DEFINE_integer("pgd_steps", 10, "PGD steps of the training attacks.")
flags.DEFINE_float(
    "weight_lr", 0.0073,
    "Adam learning rate of the weights, for every method alike (the MNIST "
    "search's best; the paper's 1e-3 is tuned for 200 epochs).")
flags.DEFINE_string(
    "data_dir",
    str(Path(__file__).resolve().parents[2] / "shared/data/fashion-mnist"),
    "Folder of the Fashion-MNIST IDX files.")
flags.DEFINE_string("runs_dir", "bench/runs/fashion_budget",
                    "Workdirs of the runs (resumable).")
flags.DEFINE_string("output", "bench/results/fashion_budget",
                    "Output path without extension (.json and .md).")
flags.DEFINE_integer("monitor_examples", 500,
                     "Test examples scored after each epoch.")
flags.DEFINE_integer(
    "seed", 0,
    "Seed of every run (weights, data order, attacks). Another seed needs "
    "its own --runs_dir and --output.")
flags.DEFINE_list(
    "methods", list(METHODS),
    "Methods to train and report, comma-separated (at and anp_vs always): "
    "a seed's comparison without TRADES takes an hour less.")
flags.register_validator(
    "methods", lambda methods: {"at", "anp_vs"} <= set(methods) <= set(
        METHODS), f"--methods takes names from {', '.join(METHODS)} and "
    "includes at and anp_vs")
flags.DEFINE_bool("supplementary", True,
                  "Also train and report the supplementary ANP-VS runs.")

# Runs that are only the base of others (trained for --base_epochs):
# name -> method.
BASES = {"at_base": "at", "standard": "standard"}
# Supplementary ANP-VS runs: name -> (note, overrides on top of anp_vs's,
# base run).
SUPPLEMENTARY = {
    "anp_vs_gate3": (
        "as anp_vs, with the gates learning for 3 epochs (more pruning)",
        {"train.gate_epochs": 3},
        "at_base",
    ),
    "anp_vs_from_standard": (
        "the paper's start: from a standard model trained for --base_epochs "
        "epochs, then all --epochs of ANP-VS on its own schedule (decay at "
        "50 % and 70 %); gates learn for 5 epochs",
        {"train.gate_epochs": 5},
        "standard",
    ),
}

flags.DEFINE_enum("only", None, [*BASES, *METHODS, *SUPPLEMENTARY],
                  "Train just this run, without writing the report. "
                  "anp_vs needs at_base to exist, anp_vs_from_standard "
                  "needs standard.")
flags.DEFINE_float(
    "gate_lr", 0.008,
    "Adam learning rate of ANP-VS's gates. The MNIST search's best, 0.048, "
    "ran 7x more gate steps here than on the 5,000 MNIST images and pruned "
    "90 % of the units by epoch 7 (per-epoch monitor: PGD 62 % vs AT's "
    "68-73 %).")
flags.DEFINE_float(
    "beta", 4.0,
    "ANP-VS's KL weight: the paper's MNIST beta, whose N (60,000) is "
    "Fashion-MNIST's too, so beta / N is the paper's.")
flags.DEFINE_float(
    "gate_init", 5.0,
    "ANP-VS's raw initial a of every gate (softplus(a_raw) = a, b = 1: "
    "E[pi] = a / (a + 1)).")
flags.DEFINE_integer(
    "gate_epochs", 1,
    "ANP-VS's gates learn for this many epochs, then freeze and the "
    "weights fine-tune the pruned network for the rest of --epochs "
    "(train.py --gate_epochs); 0: the gates learn throughout.")
flags.DEFINE_integer(
    "strong_examples", budget.STRONG_EXAMPLES,
    "Score APGD-CE, APGD-DLR and the per-example worst case on the first N "
    "test images (train.py's eval.strong_examples; default: all).",
    lower_bound=1)
FLAGS = flags.FLAGS

ENTRY = "lenet5_caffe_fashion_mnist"


def decay_fractions(first_epoch, epochs):
    """AT's learning-rate decays (the recipe's fractions of its --epochs)
    as fractions of a run covering epochs [first_epoch, first_epoch +
    epochs) of AT's: at_base (0, 5) gets none (AT's decays come after it
    stops); anp_vs (5, 10) gets (0.25, 0.55), AT's decays at the same
    global epochs."""
    from anpvs_tf.registry import get_experiment

    at_fractions = get_experiment(f"{ENTRY}_at").train.decay_fractions
    fractions = ((f * FLAGS.epochs - first_epoch) / epochs
                 for f in at_fractions)
    # A decay after the run's end (at_base's) is none.
    return tuple(f for f in fractions if f < 1)


def anp_vs_overrides():
    """ANP-VS's gate settings: gates starting open and lambda 0.0043 (the
    MNIST search's best trial, bench/tuning.py), the KL weight of --beta,
    the gate learning rate of --gate_lr and the prune-then-fine-tune
    schedule of --gate_epochs."""
    return {
        "model.gate_concentration1_init": FLAGS.gate_init,
        "loss.kl_weight": FLAGS.beta,
        "loss.vs_weight": 0.0043,
        "train.gate_learning_rate": FLAGS.gate_lr,
        "train.gate_epochs": FLAGS.gate_epochs or None,
    }


def run(name, extra=None):
    """Trains (or reads) run `name`; `extra`: overrides on top of its own
    (the workdir is still `name`'s: give a variant its own name)."""
    epsilon = 0.1
    overrides = {
        "data.source": "idx",
        "data.data_dir": FLAGS.data_dir,
        "attack.num_steps": FLAGS.pgd_steps,
        "attack.step_size": 2.5 * epsilon / FLAGS.pgd_steps,
        "train.weight_learning_rate": FLAGS.weight_lr,
        "train.seed": FLAGS.seed,
    }
    method, epochs = name, FLAGS.epochs
    if name in BASES:
        method, epochs = BASES[name], FLAGS.base_epochs
    if name == "at_base":
        overrides["train.decay_fractions"] = decay_fractions(0, epochs)
    if name.startswith("anp_vs"):
        method = "anp_vs"
        overrides.update(anp_vs_overrides())
        _, own, base = SUPPLEMENTARY.get(name, ("", {}, "at_base"))
        overrides.update(own)
        overrides["train.base_workdir"] = str(Path(FLAGS.runs_dir) / base)
        if base == "at_base":
            epochs = FLAGS.epochs - FLAGS.base_epochs
            overrides["train.decay_fractions"] = decay_fractions(
                FLAGS.base_epochs, epochs)
    overrides["eval.strong_examples"] = FLAGS.strong_examples
    overrides.update(extra or {})
    return budget.run_method(
        ENTRY, method, overrides, FLAGS.runs_dir, name,
        epochs, FLAGS.monitor_examples,
    )


def main(argv):
    del argv
    import models  # noqa: F401

    if FLAGS.only:
        run(FLAGS.only)
        return
    supplementary = SUPPLEMENTARY if FLAGS.supplementary else {}
    bases = ["at_base", *(base for _, _, base in supplementary.values())]
    methods = [name for name in METHODS if name in FLAGS.methods]
    names = dict.fromkeys((*bases, *methods, *supplementary))
    results = {name: run(name) for name in names}
    summary = budget.report(
        results, methods,
        {name: note for name, (note, _, _) in supplementary.items()},
        FLAGS.epochs, first="at",
    )
    summary["seed"] = FLAGS.seed
    summary["eps"] = 0.1
    summary["train_pgd_steps"] = FLAGS.pgd_steps
    summary["anp_vs_overrides"] = anp_vs_overrides()
    summary["weight_lr"] = FLAGS.weight_lr
    summary["base_epochs"] = FLAGS.base_epochs
    budget.write(
        summary, FLAGS.output,
        f"Fashion-MNIST, LeNet-5-Caffe, {summary['epochs']} epochs on "
        f"{summary['train_examples']} training images (PGD-"
        f"{FLAGS.pgd_steps} at eps 0.1 for training), evaluated on "
        f"{summary['test_examples']} test images (eps 0.1).",
    )


if __name__ == "__main__":
    app.run(cli.run_main(main))
