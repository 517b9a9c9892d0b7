"""Training that gets cheaper as it prunes: masked vs compact fine-tune.

After `--gate_epochs` the gates freeze and, by default, the fine-tune
trains the compact network (anpvs_tf.compact_training): the masked
network's steps without its pruned units. Two sections, one run:

- lenet_mnist: the README's main command recipe
  (lenet5_caffe_mnist_anp_vs_budget, 5,000 MNIST images) trained twice
  from one base, with the compact fine-tune and with the masked one
  (--nocompact_fine_tune): training time and final accuracies of both.
  Then, on the compact run's final network (gates frozen, its sparsity),
  per-example training throughput of the masked and the compact train
  step (the recipe's PGD-10, batch 64), in interleaved rounds of --steps
  steps after a warm-up; medians, each round's CPU idle fraction kept.
- fashion: bench/fashion_budget.py's recipe on the 60,000 Fashion-MNIST
  images (its flags: --epochs, --base_epochs, --gate_epochs ...; here 6,
  2 and 1 by default so the section fits about 50 minutes on 2 cores):
  AT for --epochs, and ANP-VS (at_base for --base_epochs, then the rest)
  with the compact and with the masked fine-tune. Total training time of
  each (ANP-VS's includes at_base), clean and PGD-40 on the 10,000 test
  images, the worst case over PGD-40, APGD-CE and APGD-DLR on the first
  --strong_examples of them.

Runs resume and are reused (bench/runs/compact_training). Time it on an
idle machine:

    python bench/compact_training.py

Writes bench/results/compact_training.json and compact_training.md.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import budget  # noqa: E402
import fashion_budget  # noqa: E402  (its flags configure the fashion runs)
from timing import cpu_peak  # noqa: E402
from timing import cpu_ticks  # noqa: E402
from timing import kernel_ceiling  # noqa: E402

flags.DEFINE_list("compact_sections", ["lenet_mnist", "fashion"],
                  "Sections to run: lenet_mnist, fashion.")
flags.DEFINE_integer("rounds", 7, "Timed throughput rounds per network.")
flags.DEFINE_integer("steps", 15, "Training steps per throughput round.")
flags.DEFINE_string("compact_runs_dir", "bench/runs/compact_training",
                    "Workdirs of the runs (resumable).")
flags.DEFINE_string("compact_output", "bench/results/compact_training",
                    "Output path without extension (.json and .md).")
FLAGS = flags.FLAGS

LENET_RECIPE = "lenet5_caffe_mnist_anp_vs_budget"


def run_summary(results, seconds):
    strong = results.get("strong", {})
    return {
        "wall_seconds": seconds,
        "clean_acc": results["clean_acc"],
        "pgd40_acc": budget.with_pgd_label(results)["pgd40_acc"],
        "worst_case_acc": strong.get("worst_case_acc"),
        "worst_case_examples": strong.get("examples"),
        "unit_sparsity": results.get("unit_sparsity", 0.0),
    }


def lenet_runs(runs_dir):
    """The budget recipe with the compact and with the masked fine-tune,
    from the compact run's base model."""
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.training import train

    recipe = get_experiment(LENET_RECIPE)
    compact_dir = runs_dir / "lenet_compact"
    runs = {}
    for name, overrides in (
        ("compact", {}),
        ("masked", {"train.compact_fine_tune": False,
                    "train.base_workdir": str(compact_dir / "base")}),
    ):
        config = config_lib.replace(recipe, **overrides)
        results = train(config, runs_dir / f"lenet_{name}", verbose=2)
        runs[name] = run_summary(results, results["train_seconds"])
    return runs, compact_dir


def trainers(workdir, num_train_examples):
    """(config, masked, compact) models at the trained network's frozen
    state, compiled as train.py compiles them."""
    import tensorflow as tf

    from anpvs_tf.assembly import compile_model
    from anpvs_tf.compact_training import compact_fine_tune_model
    from anpvs_tf.workdir import load_trained_model

    config, masked = load_trained_model(workdir)
    compile_model(masked, config, num_train_examples)
    masked.freeze_gates()
    compact, _ = compact_fine_tune_model(
        masked, config, tf.distribute.get_strategy(), num_train_examples)
    return masked, compact


def throughput(workdir):
    from anpvs_tf import data
    from anpvs_tf.workdir import read_config

    config = read_config(workdir)
    images, labels = data.load_split(config.data, "train")
    masked, compact = trainers(workdir, len(labels))
    dataset, _ = data.train_dataset(images, labels, config.train.batch_size,
                                    seed=0)
    models = {"masked": masked, "compact": compact}
    for model in models.values():  # warm-up: trace and first steps
        model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0,
                  shuffle=False)
    rounds = {name: [] for name in models}
    for _ in range(FLAGS.rounds):
        for name, model in models.items():
            before = cpu_ticks()
            start = time.perf_counter()
            model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.steps,
                      verbose=0, shuffle=False)
            seconds = time.perf_counter() - start
            idle, total = (b - a for a, b in zip(before, cpu_ticks()))
            rounds[name].append({
                "examples_per_sec":
                    FLAGS.steps * config.train.batch_size / seconds,
                "cpu_idle_fraction": idle / max(total, 1),
            })
    medians = {name: statistics.median(r["examples_per_sec"]
                                       for r in values)
               for name, values in rounds.items()}
    weights = {name: sum(int(v.shape.num_elements())
                         for v in model.weight_variables)
               for name, model in models.items()}
    # What the kernels alone allow: each conv / matmul of each network
    # timed alone, summed as a train step uses them (bench/timing.py).
    peak = cpu_peak()
    ceilings = {name: kernel_ceiling(
        model.network, peak, config.train.batch_size,
        config.attack.num_steps) for name, model in models.items()}
    return {
        "kernel_ceiling": ceilings,
        "kernel_ceiling_speedup": (
            ceilings["compact"]["examples_per_sec_upper_bound"]
            / ceilings["masked"]["examples_per_sec_upper_bound"]),
        "unit_sparsity": float(masked.unit_sparsity()),
        "masked_examples_per_sec": medians["masked"],
        "compact_examples_per_sec": medians["compact"],
        "speedup": medians["compact"] / medians["masked"],
        "trained_weights": weights,
        "pgd_steps": config.attack.num_steps,
        "batch_size": config.train.batch_size,
        "rounds": rounds,
    }


def fashion_runs():
    """AT, and ANP-VS with each fine-tune, by fashion_budget.py's recipe."""
    base = fashion_budget.run("at_base")
    at = fashion_budget.run("at")
    compact = fashion_budget.run("anp_vs")
    masked = fashion_budget.run("anp_vs_masked",
                                {"train.compact_fine_tune": False})
    return {
        "at": run_summary(at, at["train_seconds"]),
        "anp_vs": run_summary(compact, base["train_seconds"]
                              + compact["train_seconds"]),
        "anp_vs_masked": run_summary(masked, base["train_seconds"]
                                     + masked["train_seconds"]),
        "at_base_seconds": base["train_seconds"],
        "epochs": FLAGS.epochs,
        "base_epochs": FLAGS.base_epochs,
        "gate_epochs": FLAGS.gate_epochs,
        "train_examples": at["train_examples"],
        "test_examples": at["test_examples"],
    }


def percent(value):
    return "" if value is None else f"{100 * value:.2f}"


def markdown(summary):
    from anpvs_tf.evaluation.tables import markdown_table

    lines = ["# Compact fine-tune vs masked fine-tune", ""]
    if "lenet_mnist" in summary:
        lenet = summary["lenet_mnist"]
        lines += [
            f"LeNet-5-Caffe, {LENET_RECIPE} (the README's main command), "
            f"5,000 MNIST images. Throughput of one train step (PGD-"
            f"{lenet['pgd_steps']}, batch {lenet['batch_size']}) at "
            f"{lenet['unit_sparsity']:.2f} % unit sparsity, median of "
            f"{FLAGS.rounds} interleaved rounds:", "",
            *markdown_table(
                ["network", "examples/s", "trained weights"],
                [[name, f"{lenet[f'{name}_examples_per_sec']:.1f}",
                  f"{lenet['trained_weights'][name]:,}"]
                 for name in ("masked", "compact")]),
            "", f"Compact / masked: {lenet['speedup']:.2f}x.", "",
            "Kernel ceiling (each conv / matmul alone, summed as the step "
            "uses them; everything else free), ms per batch:", "",
            *ceiling_table(lenet["kernel_ceiling"]), "",
            "Ceiling compact / masked: "
            f"{lenet['kernel_ceiling_speedup']:.2f}x.", "",
            "Whole runs (training time: base excluded, monitor included):",
            "", *run_table(lenet["runs"], ("compact", "masked")), ""]
    if "fashion" in summary:
        fashion = summary["fashion"]
        lines += [
            f"Fashion-MNIST, {fashion['train_examples']:,} training images,"
            f" {fashion['epochs']} epochs for every method (ANP-VS: AT's "
            f"first {fashion['base_epochs']}, gates learning for "
            f"{fashion['gate_epochs']}, then the fine-tune); training time "
            "(ANP-VS's includes its AT base):", "",
            *run_table(fashion, ("at", "anp_vs", "anp_vs_masked")), ""]
    return "\n".join(lines)


def ceiling_table(ceilings):
    from anpvs_tf.evaluation.tables import markdown_table

    rows = []
    for name, ceiling in ceilings.items():
        for layer in ceiling["layers"]:
            rows.append([name, layer["layer"], f"{layer['forward_ms']:.3f}",
                         f"{layer['to_input_ms']:.3f}",
                         f"{layer['to_kernel_ms']:.3f}"])
        rows.append([name, "step (upper bound, examples/s)", "", "",
                     f"{ceiling['examples_per_sec_upper_bound']:.0f}"])
    return markdown_table(
        ["network", "layer", "forward", "to input", "to kernel"], rows)


def run_table(runs, names):
    from anpvs_tf.evaluation.tables import markdown_table

    return markdown_table(
        ["run", "training s", "worst case %", "clean %", "PGD-40 %",
         "unit sparsity %"],
        [[name, f"{runs[name]['wall_seconds']:.0f}",
          percent(runs[name]["worst_case_acc"]),
          percent(runs[name]["clean_acc"]), percent(runs[name]["pgd40_acc"]),
          f"{runs[name]['unit_sparsity']:.2f}"] for name in names])


def main(argv):
    del argv
    import models  # noqa: F401
    from anpvs_tf import files

    runs_dir = Path(FLAGS.compact_runs_dir)
    FLAGS.runs_dir = str(runs_dir / "fashion")
    output = Path(FLAGS.compact_output)
    summary = {}
    if output.with_suffix(".json").exists():
        summary = files.read_json(
            output.with_suffix(".json"),
            "delete it and run all sections: --compact_sections="
            "lenet_mnist,fashion")
    sections = {"lenet_mnist": lambda: lenet_section(runs_dir),
                "fashion": fashion_runs}
    for name in FLAGS.compact_sections:
        summary[name] = sections[name]()
        # Each section is saved as it ends.
        files.write_json(output.with_suffix(".json"), summary)
        files.write_text(output.with_suffix(".md"), markdown(summary) + "\n")
    print(markdown(summary))


def lenet_section(runs_dir):
    runs, compact_dir = lenet_runs(runs_dir)
    return {**throughput(compact_dir), "runs": runs}


if __name__ == "__main__":
    FLAGS.set_default("epochs", 6)
    FLAGS.set_default("base_epochs", 2)
    FLAGS.set_default("strong_examples", 1000)
    app.run(cli.run_main(main))
