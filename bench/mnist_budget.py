"""Standard vs AT vs ANP-VS on the 5k real MNIST images, same epoch budget.

Each method trains for --epochs epochs on the embedded 5,000 training images
with the paper's recipe (ANP-VS starts from the standard model trained here;
beta scaled to the subset: the KL is divided by 60,000, SPEC pitfall 2),
then is evaluated on the official 10k test set with PGD-40 (eps 0.3, step
0.01, random start). Runs live in --runs_dir and resume if interrupted.

    python bench/mnist_budget.py            # ~1 hour on 2 CPU cores

or, side by side: `--only=standard`, then `--only=anp_vs`, `--only=at` and
`--only=anp_vs_beta4x` in parallel processes, then the plain command, which
finds the finished runs and writes the report.

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
                    "Workdirs of the runs (resumable).")
flags.DEFINE_string("output", "bench/results/mnist_budget",
                    "Output path without extension (.json and .md).")
flags.DEFINE_integer("monitor_examples", 500,
                     "Test examples scored after each epoch.")
flags.DEFINE_enum(
    "only", None, ["standard", "at", "anp_vs", "anp_vs_beta4x",
                   "anp_vs_open_beta4x"],
    "Train just this run (to run several processes side by side), without "
    "writing the report. The anp_vs runs need the standard run to exist.")
FLAGS = flags.FLAGS

KEYS = ("clean_acc", "pgd40_acc", "vulnerability", "unit_sparsity",
        "memory_pct", "flops_speedup", "params", "train_seconds")

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
}
SUPPLEMENTARY = {
    "anp_vs_beta4x": "not the paper's recipe: beta / N = 4 x the paper's "
                     "(KL divided by 15,000, not 60,000)",
    "anp_vs_open_beta4x": "not the paper's recipe: beta / N = 4 x the "
                          "paper's and gates initialised at a_raw = 5 "
                          "(E[pi] = 0.83) instead of -1 (0.24)",
}


def run(name):
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.training import train

    method, overrides = RUNS[name]
    runs_dir = Path(FLAGS.runs_dir)
    if method == "anp_vs":
        # ANP-VS starts from the standard model of the same budget.
        overrides = {**overrides,
                     "train.base_workdir": str(runs_dir / "standard")}
    config = config_lib.replace(
        get_experiment(f"lenet5_caffe_mnist_{method}"),
        **{
            "train.epochs": FLAGS.epochs,
            "data.monitor_examples": FLAGS.monitor_examples,
            **overrides,
        },
    )
    results = train(config, runs_dir / name, verbose=2)
    results["pgd40_acc"] = results["pgd_acc"]
    return results


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
    rows = {**report["methods"],
            **{f"{name} (supplementary)": entry
               for name, entry in report["supplementary"].items()}}
    for name, r in rows.items():
        lines.append(
            f"| {name} | {100 * r['clean_acc']:.2f} | "
            f"{100 * r['pgd40_acc']:.2f} | {r['vulnerability']:.4f} | "
            f"{r['unit_sparsity']:.2f} | {r['memory_pct']:.2f} | "
            f"{r['flops_speedup']:.2f} | {r['params']:,} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += ["", "| check | passed |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["checks"].items()]
    lines += [f"| supplementary {name}: {k} | {v} |"
              for name, found in report["checks_supplementary"].items()
              for k, v in found.items()]
    lines += ["", "Supplementary runs:"]
    lines += [f"- {name}: {entry['note']}."
              for name, entry in report["supplementary"].items()]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    import models  # noqa: F401

    if FLAGS.only:
        run(FLAGS.only)
        return
    results = {name: run(name) for name in RUNS}
    first = results["standard"]
    report = {
        "epochs": FLAGS.epochs,
        "train_examples": first["train_examples"],
        "test_examples": first["test_examples"],
        "methods": {
            name: {key: results[name][key] for key in KEYS}
            for name in ("standard", "at", "anp_vs")
        },
        "supplementary": {
            name: {**{key: results[name][key] for key in KEYS},
                   "note": note}
            for name, note in SUPPLEMENTARY.items()
        },
    }
    report["checks"] = checks(report["methods"])
    report["checks_supplementary"] = {
        name: checks({"at": report["methods"]["at"], "anp_vs": entry})
        for name, entry in report["supplementary"].items()
    }
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2))
    output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    app.run(main)
