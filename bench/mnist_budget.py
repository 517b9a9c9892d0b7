"""Standard vs AT vs ANP-VS on the 5k real MNIST images, same epoch budget.

Each method trains for --epochs epochs on the embedded 5,000 training images
with the paper's recipe (ANP-VS starts from the standard model trained here;
beta scaled to the subset: the KL is divided by 60,000, SPEC pitfall 2),
then is evaluated on the official 10k test set with PGD-40 (eps 0.3, step
0.01, random start) and the strong suite (APGD-CE, APGD-DLR, the
per-example worst case; bench/budget.py). Runs live in --runs_dir and
resume if interrupted.

    python bench/mnist_budget.py            # ~1 hour on 2 CPU cores

or, side by side: `--only=standard`, then `--only=anp_vs`, `--only=at` and
`--only=anp_vs_beta4x` in parallel processes, then the plain command, which
finds the finished runs and writes the report.

Writes bench/results/mnist_budget.json and mnist_budget.md.
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

flags.DEFINE_integer("epochs", 60, "Epochs for every method.")
flags.DEFINE_string("runs_dir", "bench/runs/mnist_budget",
                    "Workdirs of the runs (resumable).")
flags.DEFINE_string("output", "bench/results/mnist_budget",
                    "Output path without extension (.json and .md).")
flags.DEFINE_integer("monitor_examples", 500,
                     "Test examples scored after each epoch.")
flags.DEFINE_enum(
    "only", None, ["standard", "at", "anp_vs", "anp_vs_beta4x",
                   "anp_vs_open_beta4x", "anp_vs_tuned"],
    "Train just this run (to run several processes side by side), without "
    "writing the report. The anp_vs runs need the standard run to exist.")
FLAGS = flags.FLAGS

# name -> (zoo method, config overrides). anp_vs_beta4x is a supplementary
# run outside the paper's recipe: beta / N four times the paper's (the KL
# divided by 15,000 instead of 60,000). With the paper's beta / N, units
# that carry any signal barely move in this budget (the paper trains ~40x
# more steps); 12x (beta 4 on N = 5,000, SPEC pitfall 2) collapsed to
# chance within two epochs.
RUNS = {
    "standard": ("standard", {}),
    "at": ("at", {}),
    "anp_vs": ("anp_vs", {}),
    "anp_vs_beta4x": ("anp_vs", {"loss.kl_normalizer": 15000}),
    # Also starts the gates nearly open (E[pi] = 0.83, not the paper's
    # 0.24): the sampled masks then keep 96 % accuracy at step 0 instead of
    # 27 % (bench/gate_init.py).
    "anp_vs_open_beta4x": ("anp_vs", {"loss.kl_normalizer": 15000,
                                      "model.gate_concentration1_init": 5.0}),
    # The best trial of bench/tuning.py (12-epoch trials on 4k images,
    # scored on 1k held-out training images): open gates, ~2.9x beta, ~5x
    # the gate and ~7x the weight learning rate, PGD-10 for training.
    "anp_vs_tuned": ("anp_vs", {
        "model.gate_concentration1_init": 5.0,
        "loss.kl_weight": 11.4322,
        "loss.vs_weight": 0.0043,
        "train.gate_learning_rate": 0.0484,
        "train.weight_learning_rate": 0.0073,
        "attack.num_steps": 10,
        "attack.step_size": 0.02,
    }),
}
SUPPLEMENTARY = {
    "anp_vs_beta4x": "not the paper's recipe: beta / N = 4 x the paper's "
                     "(KL divided by 15,000, not 60,000)",
    "anp_vs_open_beta4x": "not the paper's recipe: beta / N = 4 x the "
                          "paper's and gates initialised at a_raw = 5 "
                          "(E[pi] = 0.83) instead of -1 (0.24)",
    "anp_vs_tuned": "not the paper's recipe: the best trial of "
                    "bench/tuning.py (gate init a_raw = 5, beta 11.43, "
                    "lambda 0.0043, gate lr 0.0484, weight lr 0.0073, "
                    "PGD-10 step 0.02 for training)",
}


def run(name):
    method, overrides = RUNS[name]
    return budget.run_method(
        "lenet5_caffe_mnist", method, overrides, FLAGS.runs_dir, name,
        FLAGS.epochs, FLAGS.monitor_examples,
    )


def main(argv):
    del argv
    import models  # noqa: F401

    if FLAGS.only:
        run(FLAGS.only)
        return
    results = {name: run(name) for name in RUNS}
    summary = budget.report(
        results, ("standard", "at", "anp_vs"), SUPPLEMENTARY, FLAGS.epochs
    )
    budget.write(
        summary, FLAGS.output,
        f"MNIST, LeNet-5-Caffe, {summary['epochs']} epochs on "
        f"{summary['train_examples']} real training images, evaluated on "
        f"{summary['test_examples']} test images (eps 0.3).",
    )


if __name__ == "__main__":
    app.run(main)
