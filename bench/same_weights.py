"""Does a refactoring change what training computes? Same runs, two trees.

    python bench/same_weights.py --base=8de3b74

Checks out `--base` in a temporary git worktree, trains the same tiny runs
with train.py there and in this checkout (same flags, same seed), and
compares the trained network.weights.h5 bit for bit and results.json key
by key (timings aside). Writes bench/results/same_weights.{json,md}.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from absl import app
from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

flags.DEFINE_string("base", None, "Git revision to compare against.",
                    required=True)
flags.DEFINE_list("models", ["lenet5_caffe_mnist_anp_vs",
                             "lenet5_caffe_mnist_trades",
                             "lenet5_caffe_mnist_at"],
                  "Zoo entries to train in both trees.")
flags.DEFINE_string("output", "bench/results/same_weights",
                    "Output path without extension.")
FLAGS = flags.FLAGS

# A tiny run: two epochs (the gated ones start from a one-epoch base).
RUN = ["--epochs=2", "--train_examples=256", "--test_examples=64",
       "--monitor_examples=32", "--batch_size=32", "--pgd_steps=3",
       "--eval_pgd_steps=2", "--eval_batch_size=64", "--base_epochs=1",
       "--verbose=0"]


def _weights(path):
    arrays = {}
    with h5py.File(path) as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(
            name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def _train(tree, model, workdir):
    subprocess.run([sys.executable, "train.py", f"--model={model}", *RUN,
                    f"--workdir={workdir}"], cwd=tree, check=True,
                   capture_output=True)
    return (_weights(workdir / "network.weights.h5"),
            json.loads((workdir / "results.json").read_text()))


def _compare(model, runs):
    (old_weights, old_results), (new_weights, new_results) = runs
    same_weights = old_weights.keys() == new_weights.keys() and all(
        np.array_equal(old_weights[k], new_weights[k]) for k in old_weights)
    keys = sorted(k for k in old_results if not k.endswith("seconds"))
    differing = {k: [old_results[k], new_results.get(k)] for k in keys
                 if old_results[k] != new_results.get(k)}
    return {"model": model, "weights_identical": same_weights,
            "arrays": len(new_weights), "results_differing": differing}


def main(argv):
    del argv
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        base_tree = scratch / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q",
                        str(base_tree), FLAGS.base], cwd=ROOT, check=True)
        (scratch / "shared").symlink_to(ROOT.parent / "shared")
        try:
            for model in FLAGS.models:
                runs = [_train(tree, model, scratch / name / model)
                        for tree, name in ((base_tree, "old"), (ROOT, "new"))]
                rows.append(_compare(model, runs))
                print(rows[-1])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force",
                            str(base_tree)], cwd=ROOT, check=False)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
    report = {"base": FLAGS.base, "head": head, "flags": RUN, "runs": rows}
    files.write_json(f"{FLAGS.output}.json", report)
    lines = [f"Tiny train.py runs ({' '.join(RUN)}), base {FLAGS.base} "
             f"against {head}.", ""]
    lines += markdown_table(
        ["model", "weights identical", "arrays", "results that differ"],
        [[r["model"], r["weights_identical"], r["arrays"],
          ", ".join(r["results_differing"]) or "none"] for r in rows])
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
