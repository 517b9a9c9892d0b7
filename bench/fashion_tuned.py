"""Tuned AT vs tuned TRADES vs tuned ANP-VS on Fashion-MNIST.

Each method trains with the best trial of its own search in
`python bench/tuning.py --dataset=fashion_mnist --train_examples=5000`
(the same tuner, trials, epochs and validation split for all three;
bench/results/tuning_fashion_mnist.json), here on the same first 5,000
training images, validation images included, for --epochs epochs, the
budget of bench/mnist_budget.py's tuned rows. ANP-VS starts from the
standard model trained here. Every row is scored on the whole 10k test
set with PGD-40 (eps 0.1) and the strong suite (APGD-CE, APGD-DLR, the
per-example worst case; bench/budget.py). bench/fashion_budget.py is the
other Fashion-MNIST comparison: all 60,000 images, 15 epochs, untuned.

    python bench/fashion_tuned.py --rows=at_tuned,anp_vs_tuned  # ~50 min

or, side by side: `--only=standard` then `--only=anp_vs_tuned` in one
process, `--only=at_tuned` in another, then the plain command, which finds
the finished runs and writes the report. Another seed:
`--seed=N` (runs in bench/runs/fashion_tuned_seed<N>, report in
bench/results/fashion_tuned_seed<N>); bench/seeds.py
--benchmark=fashion_tuned compares the seeds.

Writes bench/results/fashion_tuned.json and fashion_tuned.md.
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

ENTRY = "lenet5_caffe_fashion_mnist"
ROWS = ["at_tuned", "trades_tuned", "anp_vs_tuned"]
TUNING_RESULTS = (Path(__file__).resolve().parent / "results"
                  / "tuning_fashion_mnist.json")
SEARCH = ("python bench/tuning.py --dataset=fashion_mnist "
          "--train_examples=5000")

flags.DEFINE_integer("epochs", 60, "Epochs for every row.")
flags.DEFINE_integer(
    "train_examples", 5000,
    "Training images (the first N): the search's, validation included.",
    lower_bound=1)
flags.DEFINE_integer(
    "seed", 0, "Seed of every run (weights, data order, attacks).")
flags.DEFINE_string(
    "data_dir",
    str(Path(__file__).resolve().parents[2] / "shared/data/fashion-mnist"),
    "Folder of the Fashion-MNIST IDX files.")
flags.DEFINE_string(
    "runs_dir", None, "Workdirs of the runs (resumable); default "
    "bench/runs/fashion_tuned, with _seed<N> for a seed other than 0.")
flags.DEFINE_string(
    "output", None, "Output path without extension (.json and .md); "
    "default bench/results/fashion_tuned, with _seed<N> for a seed other "
    "than 0.")
flags.DEFINE_integer("monitor_examples", 500,
                     "Test examples scored after each epoch.")
flags.DEFINE_enum(
    "only", None, ["standard", *ROWS],
    "Train just this run (to run several processes side by side), without "
    "writing the report. anp_vs_tuned needs the standard run to exist.")
flags.DEFINE_list("rows", ROWS, "Rows to train and report, comma-separated.")
flags.register_validator(
    "rows", lambda rows: bool(rows) and set(rows) <= set(ROWS),
    f"--rows takes names from {', '.join(ROWS)}")
FLAGS = flags.FLAGS


def recipe(name):
    """Row `name`'s zoo method, overrides and how they were chosen; the
    standard run is only the base of anp_vs_tuned."""
    if name == "standard":
        return "standard", {"eval.strong_examples": 0}, "base of ANP-VS"
    method = name[:-len("_tuned")]
    return (method, *budget.tuned(ENTRY, method, TUNING_RESULTS, SEARCH))


def default_path(root):
    return root if FLAGS.seed == 0 else f"{root}_seed{FLAGS.seed}"


def run(name):
    method, overrides, _ = recipe(name)
    return budget.run_method(
        ENTRY, method,
        {"data.source": "idx", "data.data_dir": FLAGS.data_dir,
         "data.train_examples": FLAGS.train_examples,
         "train.seed": FLAGS.seed, **overrides},
        FLAGS.runs_dir or default_path("bench/runs/fashion_tuned"), name,
        FLAGS.epochs, FLAGS.monitor_examples,
    )


def main(argv):
    del argv
    import models  # noqa: F401

    names = [name for name in ROWS if name in FLAGS.rows]
    results = budget.train_rows(run, names, FLAGS.only,
                                needs_base="anp_vs_tuned" in names)
    if results is None:
        return
    summary = budget.rows_report(results, names, recipe, FLAGS.epochs)
    summary["seed"] = FLAGS.seed
    summary["eps"] = 0.1
    budget.write(
        summary, FLAGS.output or default_path("bench/results/fashion_tuned"),
        f"Fashion-MNIST, LeNet-5-Caffe, tuned against tuned: "
        f"{summary['epochs']} epochs on the first "
        f"{summary['train_examples']:,} training images, evaluated on "
        f"{summary['test_examples']:,} test images (eps 0.1), seed "
        f"{FLAGS.seed}.",
    )


if __name__ == "__main__":
    app.run(cli.run_main(main))
