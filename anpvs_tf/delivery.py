"""What a finished run hands over besides results.json: the compact
SavedModel, its measured serving speed-up, one summary and the training
curve.

The summary is the proof a user reads at the end of train.py: accuracy
(clean, PGD, APGD and the per-example worst case, which leads), size
(unit sparsity, parameters, FLOPs) and speed (the compact SavedModel
against the same architecture unpruned, timed side by side at one batch
size). Every step here is redone if interrupted: summary.json is written
last.
"""

import csv
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from anpvs_tf import config as config_lib
from anpvs_tf import data
from anpvs_tf import files
from anpvs_tf import serving
from anpvs_tf.complexity import count_complexity
from anpvs_tf.datasets import DATASET_INFO
from anpvs_tf.evaluation.plots import plot_training_curve
from anpvs_tf.evaluation.tables import markdown_table
from anpvs_tf.exporter import export_workdir
from anpvs_tf.base import BASE_TEST_EXAMPLES
from anpvs_tf.methods import FROM_BASE_METHODS
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.methods import OBJECTIVES
from anpvs_tf.registry import build_network
from anpvs_tf.speed import speed_report
from anpvs_tf.workdir import CURVE_FILE
from anpvs_tf.workdir import EXPORT_DIR
from anpvs_tf.workdir import HISTORY_FILE
from anpvs_tf.workdir import SUMMARY_FILE
from anpvs_tf.workdir import SUMMARY_TABLE


def serving_speedup(compact_saved_model, config, images):
    """Examples/s of the compact SavedModel and of the same architecture
    unpruned and ungated (its weights do not change its speed), timed in
    interleaved rounds on the same batch of `serve.batch_size` images."""
    settings = config.serve
    input_shape, num_classes = DATASET_INFO[config.data.dataset]
    unpruned = build_network(
        config.model.architecture, num_classes=num_classes,
        input_shape=input_shape, gated=False, seed=config.train.seed)
    batch = np.resize(images, (settings.batch_size, *images.shape[1:]))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "unpruned"
        serving.write_saved_model(serving.logits_model(unpruned), path)
        serves = {
            name: tf.saved_model.load(str(saved)).signatures[
                serving.SIGNATURE]
            for name, saved in (("unpruned", path),
                                ("compact", compact_saved_model))
        }
        timed = speed_report(serves, batch, settings.rounds,
                             settings.round_seconds)
    return {
        "batch_size": settings.batch_size,
        "rounds": settings.rounds,
        "unpruned_examples_per_sec": timed["unpruned"]["examples_per_sec"],
        "compact_examples_per_sec": timed["compact"]["examples_per_sec"],
        "speedup": (timed["compact"]["examples_per_sec"]
                    / timed["unpruned"]["examples_per_sec"]),
        "unpruned_params": int(unpruned.count_params()),
    }


def read_history(workdir):
    """history.csv as {column: [float per epoch]} (empty if missing)."""
    path = Path(workdir) / HISTORY_FILE
    if not path.exists():
        return {}
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def deliver(config, workdir, results, started, log=print):
    """Exports the compact network, times it, writes the summary and the
    curve; returns the summary dict. Skipped work is redone on rerun
    until summary.json exists. `started`: time.perf_counter() when the
    command began (the summary's wall time)."""
    workdir = Path(workdir)
    summary_path = workdir / SUMMARY_FILE
    if summary_path.exists():
        return files.read_json(summary_path,
                               "delete it and run the same command")
    summary = {"results": results}
    if config.serve.export:
        export_dir = workdir / EXPORT_DIR
        log(f"Exporting the compact network to {export_dir}")
        export_workdir(workdir, export_dir, overwrite=True)
        images, _ = data.load_split(config.data, "test")
        log(f"Timing the compact SavedModel against the unpruned network "
            f"(batch {config.serve.batch_size}, {config.serve.rounds} "
            "interleaved rounds)")
        summary["export_dir"] = str(export_dir)
        summary["serving"] = serving_speedup(
            export_dir / serving.SAVED_MODEL_DIR, config, images)
    history = read_history(workdir)
    if history:
        plot_training_curve(history, workdir / CURVE_FILE,
                            title=f"{config.train.method}, "
                                  f"{config.model.architecture}")
        summary["curve"] = str(workdir / CURVE_FILE)
    summary["wall_seconds"] = time.perf_counter() - started
    files.write_text(workdir / SUMMARY_TABLE,
                     format_summary(summary) + "\n")
    files.write_json(summary_path, summary)
    return summary


# What training and attacks reach on 2 CPU cores, in FLOPs of the full
# network's forward passes per second: the four runs of
# bench/results/quickstart.json (2026-12-07, LeNet-5-Caffe) gave 58-80e9
# by `estimated_seconds`' count, their wall times against it; the median.
# Other machines and networks differ; the header calls its figure "about".
CPU_FLOPS_PER_SECOND = 70e9
# A compact fine-tune epoch against a masked one (the same run: 8.3 s
# against 13.6 s an epoch); the evaluation's attacks too.
COMPACT_EPOCH_COST = 0.6


def _passes_per_example(method, attack_steps):
    """Forward-pass equivalents one training example costs in a step (a
    backward pass counts two): the attack's steps, then a clean and an
    adversarial pass, or one clean pass."""
    if OBJECTIVES[method].attack is None:
        return 3
    return 3 * attack_steps + 6


def training_passes(config, train_examples):
    """Forward-pass equivalents of a run's training, its base model's and
    the per-epoch monitor included (a backward pass counts two; a compact
    fine-tune epoch COMPACT_EPOCH_COST of a full one)."""
    train, steps = config.train, config.attack.num_steps
    epochs = train.epochs
    if train.gate_epochs is not None and train.compact_fine_tune:
        epochs = train.gate_epochs + COMPACT_EPOCH_COST * (
            train.epochs - train.gate_epochs)
    monitor = config.data.monitor_examples * (3 * steps + 2)
    passes = (epochs * train_examples
              * _passes_per_example(train.method, steps)
              + train.epochs * monitor)
    if train.method in FROM_BASE_METHODS and train.base_workdir is None:
        passes += train.base_epochs * (train_examples * _passes_per_example(
            train.base_method, steps) + monitor)
    return passes


def matched_epochs(budget_passes, config, train_examples):
    """The epochs of `config` whose training passes (training_passes) come
    closest to `budget_passes`: an unpruned baseline given the same
    training work as a pruned run, which a clock swinging by a third
    within the hour on a shared machine cannot give."""
    one_epoch = training_passes(
        config_lib.replace(config, **{"train.epochs": 1}), train_examples)
    return max(1, round(budget_passes / one_epoch))


def evaluation_passes(config, test_examples):
    """Forward-pass equivalents of the evaluation after training (and of
    the base model's report)."""
    pgd = 3 * config.eval.attack.num_steps + 2
    strong = min(config.eval.strong_examples, test_examples)
    passes = (test_examples * pgd
              + strong * (6 * config.eval.apgd_steps + pgd))
    if config.train.method in GATED_METHODS:
        # The attacks run on the compact network (evaluation.Classifier).
        passes *= COMPACT_EPOCH_COST
    if (config.train.method in FROM_BASE_METHODS
            and config.train.base_workdir is None):
        passes += min(BASE_TEST_EXAMPLES, test_examples) * pgd
    return passes


def estimated_seconds(config, forward_flops, train_examples,
                      test_examples):
    """About how long train.py takes for `config` on 2 CPU cores: every
    pass of training and evaluation, each worth `forward_flops` (the full
    network's forward pass on one image), at CPU_FLOPS_PER_SECOND."""
    passes = (training_passes(config, train_examples)
              + evaluation_passes(config, test_examples))
    return passes * forward_flops / CPU_FLOPS_PER_SECOND


def run_seconds(config, train_examples, test_examples):
    """estimated_seconds for train.py's run of `config` on that many
    examples: its network's forward FLOPs (built unpruned, nothing
    trained)."""
    input_shape, num_classes = DATASET_INFO[config.data.dataset]
    network = build_network(
        config.model.architecture, num_classes=num_classes,
        input_shape=input_shape, gated=False, seed=config.train.seed)
    flops = count_complexity(network, active="all").flops
    return estimated_seconds(config, flops, train_examples, test_examples)


def plan(config, seconds=None):
    """One line: what train.py will do with `config`, phase by phase, and
    `seconds` (estimated_seconds) as about how long."""
    train = config.train
    steps = []
    if train.method in FROM_BASE_METHODS and train.base_workdir is None:
        steps.append(f"base model ({train.base_method}, "
                     f"{train.base_epochs} epochs)")
    freeze = ""
    if train.gate_epochs is not None:
        network = "compact" if train.compact_fine_tune else "masked"
        when = f"after {train.gate_epochs}"
        if train.freeze_at_sparsity is not None:
            when = (f"at {train.freeze_at_sparsity:g} % unit sparsity or "
                    f"{when}")
        freeze = (f", gates frozen {when}, then the {network} network "
                  "fine-tunes")
    steps.append(f"{train.method} ({train.epochs} epochs{freeze})")
    test = (f"the first {config.data.test_examples:,}"
            if config.data.test_examples else "all")
    steps.append(f"PGD-{config.eval.attack.num_steps} on {test} test images")
    if config.eval.strong_examples:
        steps.append(f"APGD-CE/DLR and the worst case on the first "
                     f"{config.eval.strong_examples:,}")
    if config.serve.export:
        steps.append("compact export and serving check")
    line = (f"{config.model.architecture} on {config.data.dataset}: "
            + " -> ".join(steps))
    if seconds is not None:
        line += f"; about {_duration(seconds)} on 2 CPU cores"
    return line


def _duration(seconds):
    """A rough duration in the unit a reader plans with."""
    minutes = seconds / 60
    if minutes < 1.5:
        return "1 min"
    if minutes < 90:
        return f"{round(minutes)} min"
    return f"{minutes / 60:.1f} h"


def summary_rows(summary):
    """(metric, value) rows, the worst case first when it was measured."""
    results = summary["results"]
    strong = results.get("strong")
    attack = results["attack"]
    rows = []
    if strong:
        subset = f"first {strong['examples']:,} test images"
        rows += [
            (f"worst case (clean, PGD-{attack['num_steps']}, APGD-CE, "
             f"APGD-DLR; {subset})",
             f"{100 * strong['worst_case_acc']:.2f} %"),
            (f"APGD-CE / APGD-DLR ({subset})",
             f"{100 * strong['apgd_ce_acc']:.2f} % / "
             f"{100 * strong['apgd_dlr_acc']:.2f} %"),
        ]
    rows += [
        (f"PGD-{attack['num_steps']} (eps {attack['epsilon']}; "
         f"{results['test_examples']:,} test images)",
         f"{100 * results['pgd_acc']:.2f} %"),
        (f"clean ({results['test_examples']:,} test images)",
         f"{100 * results['clean_acc']:.2f} %"),
        ("vulnerability (PGD, white-box)",
         f"{results['vulnerability']:.4f}"),
        ("unit sparsity (active units)",
         f"{results['unit_sparsity']:.2f} % ({results['active_units']:,} "
         f"of {results['gated_units']:,})" if results["gated_units"]
         else "none (no gates)"),
        ("parameters (compact / full)",
         f"{results['params']:,} / {results['params_full']:,}"),
        ("FLOPs reduction", f"{results['flops_speedup']:.2f}x"),
    ]
    serving_figures = summary.get("serving")
    if serving_figures:
        rows.append((
            f"serving speed-up, compact SavedModel vs unpruned (batch "
            f"{serving_figures['batch_size']}, median of "
            f"{serving_figures['rounds']} interleaved rounds)",
            f"{serving_figures['speedup']:.2f}x "
            f"({serving_figures['compact_examples_per_sec']:,.0f} vs "
            f"{serving_figures['unpruned_examples_per_sec']:,.0f} "
            "images/s)"))
    if "export_dir" in summary:
        rows.append(("export", summary["export_dir"]))
    if "wall_seconds" in summary:
        minutes, seconds = divmod(round(summary["wall_seconds"]), 60)
        rows.append(("wall time of this command",
                     f"{minutes} min {seconds} s"))
    return rows


def format_summary(summary):
    return "\n".join(markdown_table(("", "value"), summary_rows(summary)))
