"""Standard vs AT vs ANP-VS on the 5k real MNIST images, same epoch budget.

Each method trains for --epochs epochs on the embedded 5,000 training images
with the paper's recipe (ANP-VS starts from the standard model trained here;
beta scaled to the subset: the KL is divided by 60,000, SPEC pitfall 2),
then is evaluated on the official 10k test set with PGD-40 (eps 0.3, step
0.01, random start). Runs live in --runs_dir and resume if interrupted.

    python bench/mnist_budget.py            # ~1 hour on 2 CPU cores

Writes bench/results/mnist_budget.json and mnist_budget.md.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402,F401  (sets the Keras backend first)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer("epochs", 60, "Epochs for every method.")
flags.DEFINE_string("runs_dir", "bench/runs/mnist_budget",
                    "Workdirs of the three runs (resumable).")
flags.DEFINE_string("output", "bench/results/mnist_budget",
                    "Output path without extension (.json and .md).")
flags.DEFINE_integer("monitor_examples", 500,
                     "Test examples scored after each epoch.")
FLAGS = flags.FLAGS

METHODS = ("standard", "anp_vs", "at")
KEYS = ("clean_acc", "pgd40_acc", "vulnerability", "unit_sparsity",
        "memory_pct", "flops_speedup", "params", "train_seconds")


def run(method, base_workdir=None):
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.training import train

    config = config_lib.replace(
        get_experiment(f"lenet5_caffe_mnist_{method}"),
        **{
            "train.epochs": FLAGS.epochs,
            "train.base_workdir": base_workdir,
            "data.monitor_examples": FLAGS.monitor_examples,
        },
    )
    workdir = Path(FLAGS.runs_dir) / method
    results = train(config, workdir, verbose=2)
    results["pgd40_acc"] = results["pgd_acc"]
    return workdir, results


def checks(methods):
    at, anp_vs = methods["at"], methods["anp_vs"]
    return {
        "anp_vs_pgd40_at_least_at_minus_1pt":
            anp_vs["pgd40_acc"] >= at["pgd40_acc"] - 0.01,
        "anp_vs_vulnerability_below_at":
            anp_vs["vulnerability"] < at["vulnerability"],
        "anp_vs_unit_sparsity_at_least_50pct": anp_vs["unit_sparsity"] >= 50,
        "anp_vs_clean_within_1pt_of_at":
            abs(anp_vs["clean_acc"] - at["clean_acc"]) <= 0.01,
    }


def markdown(report):
    lines = [
        f"MNIST, LeNet-5-Caffe, {report['epochs']} epochs on "
        f"{report['train_examples']} real training images, evaluated on "
        f"{report['test_examples']} test images (PGD-40, eps 0.3).",
        "",
        "| method | clean % | PGD-40 % | vulnerability | unit sparsity % "
        "| memory % | FLOPs x | params | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["methods"].items():
        lines.append(
            f"| {name} | {100 * r['clean_acc']:.2f} | "
            f"{100 * r['pgd40_acc']:.2f} | {r['vulnerability']:.4f} | "
            f"{r['unit_sparsity']:.2f} | {r['memory_pct']:.2f} | "
            f"{r['flops_speedup']:.2f} | {r['params']:,} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += ["", "| check | passed |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["checks"].items()]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    import models  # noqa: F401

    methods = {}
    standard_dir, methods["standard"] = run("standard")
    _, methods["anp_vs"] = run("anp_vs", base_workdir=str(standard_dir))
    _, methods["at"] = run("at")
    first = methods["standard"]
    report = {
        "epochs": FLAGS.epochs,
        "train_examples": first["train_examples"],
        "test_examples": first["test_examples"],
        "methods": {
            name: {key: methods[name][key] for key in KEYS}
            for name in ("standard", "at", "anp_vs")
        },
    }
    report["checks"] = checks(report["methods"])
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2))
    output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    app.run(main)
