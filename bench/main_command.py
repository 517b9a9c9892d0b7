"""The README's main command and how a benchmark runs it, with no flags
of its own, so that every script that runs it imports one definition
(bench/quickstart.py, bench/onednn.py; tests/test_figures.py checks the
README shows exactly MAIN_COMMAND)."""

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The README's main command (after `pip install -r requirements.txt &&`).
MAIN_COMMAND = ("python train.py --model=lenet5_caffe_mnist_anp_vs_budget "
                "--workdir=runs/quickstart")
# The README's alternative: the budget search's most robust recipe, 0.30
# to 2.30 points of worst case above the main command at each of test
# seeds 0-2 and a few tenths of a point of clean accuracy below it.
ROBUST_COMMAND = ("python train.py "
                  "--model=lenet5_caffe_mnist_anp_vs_budget_robust "
                  "--workdir=runs/quickstart_robust")


def _argv(command):
    """`command` (a train.py line) as this interpreter runs it, without
    its --workdir."""
    argv = [a for a in shlex.split(command) if not a.startswith("--workdir")]
    return [sys.executable, *argv[1:]]


def resolved_config(command):
    """The config `command` runs, as train.py itself resolves it
    (--print_config): a cached run is reusable only if it holds this."""
    from anpvs_tf import config as config_lib  # see row()

    printed = subprocess.run([*_argv(command), "--print_config"], cwd=ROOT,
                             check=True, capture_output=True, text=True)
    return config_lib.from_dict(json.loads(printed.stdout))


def run(command, workdir, *extra, env=None, quiet=False):
    """Runs `command` with its --workdir replaced (and `env`, when given);
    returns (wall seconds, summary.json)."""
    argv = _argv(command)
    start = time.perf_counter()
    subprocess.run([*argv, *extra, f"--workdir={workdir}"], cwd=ROOT,
                   check=True, env=env,
                   stdout=subprocess.DEVNULL if quiet else None)
    seconds = time.perf_counter() - start
    return seconds, json.loads((Path(workdir) / "summary.json").read_text())


def run_or_read(command, workdir):
    """`run`, or its (wall seconds, summary.json) read back where
    `workdir` holds a finished run of the config `command` resolves to
    (an interrupted benchmark resumes); a finished run of another config
    (its recipe changed since) stops the benchmark."""
    from anpvs_tf.workdir import holds_run  # see row()

    summary_path = Path(workdir) / "summary.json"
    if not summary_path.exists():
        return run(command, workdir)
    if not holds_run(resolved_config(command), workdir):
        sys.exit(f"{workdir} holds a run of another config than "
                 f"`{command}` (its recipe changed since): choose another "
                 "runs folder")
    summary = json.loads(summary_path.read_text())
    return summary["wall_seconds"], summary


def training_seconds(summary, workdir):
    """The run's training time, its base model's included."""
    seconds = summary["results"]["train_seconds"]
    base = Path(workdir) / "base" / "results.json"
    if base.exists():
        seconds += json.loads(base.read_text())["train_seconds"]
    return seconds


def row(command, seconds, summary, workdir, train_examples):
    """The benchmarks' record of one finished command: its wall time
    (`run`), training work and summary."""
    # Here, not at the top: bench/onednn.py runs the command without
    # loading TensorFlow in its own process.
    from anpvs_tf.delivery import training_passes
    from anpvs_tf.workdir import read_config

    results = summary["results"]
    strong = results["strong"]
    return {
        "command": command,
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(training_seconds(summary, workdir), 1),
        # The work the baselines are matched on, base included.
        "train_passes": training_passes(read_config(workdir),
                                        train_examples),
        "clean_acc": results["clean_acc"],
        "pgd40_acc": results["pgd_acc"],
        "apgd_ce_acc": strong["apgd_ce_acc"],
        "apgd_dlr_acc": strong["apgd_dlr_acc"],
        "worst_case_acc": strong["worst_case_acc"],
        "worst_case_examples": strong["examples"],
        "unit_sparsity": results["unit_sparsity"],
        "flops_speedup": results["flops_speedup"],
        "params": results["params"],
        "serving_speedup_b256": summary["serving"]["speedup"],
    }
