"""The full robustness suite on the mnist_budget models (10k MNIST test).

Targets: the standard, AT and ANP-VS runs of bench/mnist_budget.py
(LeNet-5-Caffe, 60 epochs on the 5k real training images). For each, the
`full` suite of evaluate.py at eps 0.3 (L-inf): clean, FGSM, PGD-40 (step
0.01, random start), APGD-CE and APGD-DLR (100 iterations each), the worst
case per example over all of them and the black-box attack, the
vulnerability (white and black, per gated layer), eps and steps sweeps on
the first 1,000 test images, and every sanity check.

Black-box source (the paper's protocol: PGD-40 crafted on a separately
trained network, then fed to the target): a standard LeNet-5-Caffe trained
here with the same budget as the targets but seed 1, so it is none of the
targets. As supplementary numbers, transfer from the robust models is also
measured (AT -> standard and ANP-VS, ANP-VS -> AT).

    python bench/evaluation.py        # ~1 hour on 2 shared CPU cores

or, side by side: `--only=standard`, `--only=at` and `--only=anp_vs` in
separate processes, then the plain command, which collects them.
Per-model reports are cached in --runs_dir and reused when the script is
run again. Writes bench/results/evaluation.json (the headline numbers),
evaluation.md, evaluation_details.json (every number) and two plots.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app
from absl import flags

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

flags.DEFINE_string("targets_dir", "bench/runs/mnist_budget",
                    "Workdirs of the models to evaluate.")
flags.DEFINE_string("runs_dir", "bench/runs/evaluation",
                    "The black-box source run and cached per-model reports.")
flags.DEFINE_string("output", "bench/results/evaluation",
                    "Output path without extension.")
flags.DEFINE_integer("source_epochs", 60, "Epochs of the black-box source.")
flags.DEFINE_integer("test_examples", None, "Default: all 10,000.")
flags.DEFINE_integer("sweep_examples", 1000, "Examples of the sweeps.")
flags.DEFINE_integer("apgd_steps", 100, "APGD iterations.")
flags.DEFINE_enum(
    "only", None, ["standard", "at", "anp_vs"],
    "Evaluate just this target and cache it (to run targets side by side);"
    " the plain command then collects the cached reports.")
FLAGS = flags.FLAGS

TARGETS = ("standard", "at", "anp_vs")
# Supplementary transfer sources: a robust model, never the target itself.
ROBUST_SOURCES = {"standard": "at", "at": "anp_vs", "anp_vs": "at"}
HEADLINE = {
    "clean_acc": lambda r: r["clean_acc"],
    "pgd40_acc": lambda r: r["attacks"]["pgd40"]["acc"],
    "apgd_ce_acc": lambda r: r["attacks"]["apgd_ce"]["acc"],
    "apgd_dlr_acc": lambda r: r["attacks"]["apgd_dlr"]["acc"],
    "worst_case_acc": lambda r: r["worst_case_acc"],
    "blackbox_acc": lambda r: r["blackbox_acc"],
    "vulnerability_white": lambda r: r["vulnerability_white"],
    "vulnerability_black": lambda r: r["vulnerability_black"],
}


def train_source():
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.training import train

    config = config_lib.replace(
        get_experiment("lenet5_caffe_mnist_standard"),
        **{"train.epochs": FLAGS.source_epochs, "train.seed": 1,
           "data.monitor_examples": 0},
    )
    workdir = Path(FLAGS.runs_dir) / "source_standard_seed1"
    if not (workdir / "network.weights.h5").exists():
        # A finished source is reused as is, even if the config format
        # has grown fields since it was trained.
        train(config, workdir, verbose=0)
    return workdir


def settings():
    from anpvs_tf.evaluation.suites import SuiteSettings

    return SuiteSettings(
        suite="full", epsilon=0.3, step_size=0.01, pgd_steps=40,
        apgd_steps=FLAGS.apgd_steps, sweep_examples=FLAGS.sweep_examples,
        seed=0)


def evaluate(name, source_dir, images, labels):
    """The full suite on one target (cached in runs_dir)."""
    from anpvs_tf.evaluation.classifier import Classifier
    from anpvs_tf.evaluation.suites import run_suite
    from anpvs_tf.workdir import load_trained_model

    cache = Path(FLAGS.runs_dir) / f"{name}.json"
    if cache.exists():
        print(f"{name}: cached report {cache}")
        report = json.loads(cache.read_text())
    else:
        _, target = load_trained_model(Path(FLAGS.targets_dir) / name)
        _, source = load_trained_model(source_dir)
        print(f"{name}: full suite on {len(labels)} examples")
        report = run_suite(
            Classifier(target.network), images, labels, settings(),
            source=Classifier(source.network), source_name=str(source_dir),
            log=lambda line: print(f"  {name} {line}", flush=True))
        # Cached at once: the supplementary step below must not be able
        # to lose the suite's work.
        cache.parent.mkdir(parents=True, exist_ok=True)
        files.write_json(cache, report)
    if "supplementary_blackbox" not in report:
        report["supplementary_blackbox"] = robust_source_transfer(
            name, images, labels)
        files.write_json(cache, report)
    return report


def robust_source_transfer(name, images, labels):
    """Black-box accuracy with a robust model as the source."""
    import numpy as np

    from anpvs_tf.evaluation.classifier import Classifier
    from anpvs_tf.evaluation.engine import RobustnessEvaluator
    from anpvs_tf.evaluation.engine import vulnerability_summary
    from anpvs_tf.workdir import load_trained_model

    source_name = ROBUST_SOURCES[name]
    _, target = load_trained_model(Path(FLAGS.targets_dir) / name)
    _, source = load_trained_model(Path(FLAGS.targets_dir) / source_name)
    attack = settings().blackbox_attack()
    crafted = RobustnessEvaluator(Classifier(source.network)).craft(
        attack, images, labels)
    correct, units = RobustnessEvaluator(Classifier(target.network)).score(
        images, labels, crafted)
    return {"source": source_name, "acc": float(np.mean(correct)),
            "vulnerability": vulnerability_summary(units)["overall"]}


def markdown(summary, reports):
    lines = [
        (f"MNIST, LeNet-5-Caffe (bench/mnist_budget.py runs), "
        f"{summary['test_examples']:,} test images, L-inf eps "
        f"{summary['eps']}. PGD-40: step 0.01, random start. APGD: "
        f"{FLAGS.apgd_steps} iterations. Black-box: PGD-40 crafted on a "
        "separately trained standard LeNet-5-Caffe (seed 1). Worst case: "
        "an example counts only if it survives clean, FGSM, PGD-40, "
        "APGD-CE, APGD-DLR and the black-box attack."),
        "",
        *markdown_table(
            ("model", "clean %", "PGD-40 %", "APGD-CE %", "APGD-DLR %",
             "worst case %", "black-box %", "vuln. white", "vuln. black"),
            [(name, *(f"{100 * r[key]:.2f}" for key in (
                "clean_acc", "pgd40_acc", "apgd_ce_acc", "apgd_dlr_acc",
                "worst_case_acc", "blackbox_acc")),
              f"{r['vulnerability_white']:.4f}",
              f"{r['vulnerability_black']:.4f}")
             for name, r in summary["models"].items()]),
    ]
    supplementary = [
        (name, extra["source"], f"{100 * extra['acc']:.2f}",
         f"{extra['vulnerability']:.4f}")
        for name, extra in (
            (name, report["supplementary_blackbox"])
            for name, report in reports.items())]
    lines += ["", "Supplementary transfer from a robust source:", "",
              *markdown_table(
                  ("target", "source", "black-box %", "vuln. black"),
                  supplementary)]
    sweep = next(iter(reports.values()))["sweeps"]
    lines += ["", (f"PGD-40 accuracy % against eps (first "
              f"{sweep['examples']:,} images, step 2.5 * eps / 40) and "
              "against steps (eps 0.3, step 0.01):"), "",
              *markdown_table(
                  ("model",
                   *(f"eps {v:g}" for v in sweep["epsilon"]["values"]),
                   *(f"{v} steps" for v in sweep["steps"]["values"])),
                  [(name, *(f"{100 * a:.2f}" for a in (
                      report["sweeps"]["epsilon"]["acc"]
                      + report["sweeps"]["steps"]["acc"])))
                   for name, report in reports.items()])]
    lines += ["", *markdown_table(
        ("sanity check", "passed", "detail"),
        [(f"{name}: {check}", result["passed"], result["detail"])
         for name, report in reports.items()
         for check, result in report["sanity_checks"].items()])]
    layers = next(iter(reports.values()))["attacks"]["pgd40"][
        "vulnerability"]["per_layer"]
    per_layer = []
    for name, report in reports.items():
        white = report["attacks"]["pgd40"]["vulnerability"]["per_layer"]
        black = report["blackbox"]["vulnerability"]["per_layer"]
        per_layer.append((name, *(f"{white[k]:.4f} / {black[k]:.4f}"
                                  for k in white)))
    lines += ["", "Per-layer vulnerability (white-box PGD-40 / black-box):",
              "", *markdown_table(("model", *layers), per_layer)]
    lines += ["", ("Plots: evaluation_accuracy_vs_eps.png, "
              "evaluation_vulnerability.png.")]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    import models  # noqa: F401
    from anpvs_tf.config import DataConfig
    from anpvs_tf.evaluation.plots import plot_accuracy_vs_epsilon
    from anpvs_tf.evaluation.plots import plot_vulnerability_distribution
    from anpvs_tf.evaluation.sanity import warn_if_failed
    from anpvs_tf.data import load_split

    images, labels = load_split(
        DataConfig(test_examples=FLAGS.test_examples), "test")
    source_dir = train_source()
    if FLAGS.only:
        evaluate(FLAGS.only, source_dir, images, labels)
        return
    reports = {name: evaluate(name, source_dir, images, labels)
               for name in TARGETS}
    summary = {
        "test_examples": len(labels),
        "eps": 0.3,
        "models": {name: {key: get(report) for key, get in HEADLINE.items()}
                   for name, report in reports.items()},
        "sanity_checks": {
            f"{name}:{check}": result["passed"]
            for name, report in reports.items()
            for check, result in report["sanity_checks"].items()
        },
    }
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(output.with_suffix(".json"), summary)
    details = output.with_name(output.name + "_details.json")
    files.write_text(details, json.dumps(
        {name: {k: v for k, v in r.items() if k != "vulnerability_units"}
         for name, r in reports.items()}, indent=2))
    plot_accuracy_vs_epsilon(
        {name: (r["sweeps"]["epsilon"]["values"],
                r["sweeps"]["epsilon"]["acc"])
         for name, r in reports.items()},
        output.with_name(output.name + "_accuracy_vs_eps.png"),
        title="LeNet-5-Caffe on MNIST: PGD-40 accuracy against eps")
    plot_vulnerability_distribution(
        {name: r["vulnerability_units"]["white"]
         for name, r in reports.items() if name != "standard"},
        output.with_name(output.name + "_vulnerability.png"),
        title="Per-unit vulnerability (PGD-40, eps 0.3): AT vs ANP-VS")
    table = markdown(summary, reports)
    files.write_text(output.with_suffix(".md"), table)
    print(table)
    for name, report in reports.items():
        warn_if_failed({f"{name}:{k}": v
                        for k, v in report["sanity_checks"].items()})


if __name__ == "__main__":
    app.run(main)
