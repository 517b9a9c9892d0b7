"""Epoch wall times before and after a change, by train.py of each commit.

For each of --before and --after (git revisions, checked out as temporary
worktrees), in interleaved order on the same machine: one ANP-VS run of
the tuned MNIST recipe (bench/mnist_budget.py's `anp_vs_tuned`; 3 epochs,
reported per epoch, tracing included) and one epoch of the Fashion-MNIST
AT recipe on the 60,000 IDX training images (bench/fashion_budget.py's
data). Each is a fresh `train.py` process; no monitor slice, 100 test
images, so the time is the training's. The figure is the run's
`train_seconds` (results.json) divided by its epochs.

    python bench/epoch_times.py --before=5929212^ --after=HEAD

Writes bench/results/epoch_times.{json,md}.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app
from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

flags.DEFINE_string("before", "5929212^",
                    "Revision before the change (default: before the "
                    "fixed-size input pipelines).")
flags.DEFINE_string("after", "HEAD", "Revision after the change.")
flags.DEFINE_string("fashion_dir", str(ROOT.parent / "shared" / "data" /
                                       "fashion-mnist"),
                    "Folder of the Fashion-MNIST IDX files.")
flags.DEFINE_bool("after_first", False,
                  "Time the after revision first in each pair (to see the "
                  "order's effect).")
flags.DEFINE_string("output", "bench/results/epoch_times",
                    "Output path without extension.")
FLAGS = flags.FLAGS

COMMON = ["--monitor_examples=0", "--test_examples=100", "--verbose=0"]
RUNS = {
    "mnist_anp_vs_tuned": (3, [
        "--model=lenet5_caffe_mnist_anp_vs", "--base_epochs=1",
        "--gate_init=5", "--beta=11.4322", "--vs_weight=0.0043",
        "--gate_lr=0.0484", "--weight_lr=0.0073", "--pgd_steps=10",
        "--pgd_step_size=0.02"]),
    "fashion_at": (1, ["--model=lenet5_caffe_fashion_mnist_at"]),
}


def time_run(checkout, name, scratch):
    epochs, args = RUNS[name]
    if name == "fashion_at":
        args = [*args, f"--data_dir={FLAGS.fashion_dir}"]
    workdir = Path(scratch) / f"{Path(checkout).name}-{name}"
    subprocess.run([sys.executable, "train.py", *args, *COMMON,
                    f"--epochs={epochs}", f"--workdir={workdir}"],
                   cwd=checkout, check=True)
    results = json.loads((workdir / "results.json").read_text())
    return results["train_seconds"] / epochs


def main(argv):
    del argv
    report = {"before": FLAGS.before, "after": FLAGS.after,
              "after_first": FLAGS.after_first, "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        checkouts = {}
        for side in ("before", "after"):
            path = Path(scratch) / side
            revision = getattr(FLAGS, side)
            subprocess.run(["git", "worktree", "add", "-q", "--detach",
                            str(path), revision], cwd=ROOT, check=True)
            checkouts[side] = path
        try:
            order = ("after", "before") if FLAGS.after_first else (
                "before", "after")
            for name in RUNS:
                report["runs"][name] = {
                    side: time_run(checkouts[side], name, scratch)
                    for side in order}
        finally:
            for path in checkouts.values():
                subprocess.run(["git", "worktree", "remove", "--force",
                                str(path)], cwd=ROOT, check=False)
    files.write_json(f"{FLAGS.output}.json", report)
    lines = [f"Seconds per training epoch, train.py of {FLAGS.before} "
             f"(before) and {FLAGS.after} (after), one fresh process each, "
             "interleaved, on this machine.", ""]
    lines += markdown_table(
        ("run", "before s/epoch", "after s/epoch", "after / before"),
        [(name, f"{r['before']:.1f}", f"{r['after']:.1f}",
          f"{r['after'] / r['before']:.3f}")
         for name, r in report["runs"].items()])
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
