"""The README's main command, as a new user runs it, against AT.

    python bench/quickstart.py

Runs MAIN_COMMAND (the README shows exactly this line; tests/test_figures.py
checks it) into a new temporary workdir, so nothing is resumed, and
records its wall time (base model, ANP-VS, evaluation, compact export,
serving check) and the summary it wrote. Then trains AT by the same
script on the same data for the same training time: the epochs and the
weight learning rate that bench/budget_search.py chose for AT on the same
held-out validation split (bench/results/budget_search.json), with the
same evaluation. Writes bench/results/quickstart.{json,md}.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app
from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

# The README's main command (after `pip install -r requirements.txt &&`).
MAIN_COMMAND = ("python train.py --model=lenet5_caffe_mnist_anp_vs_budget "
                "--workdir=runs/quickstart")
SEARCH = ROOT / "bench/results/budget_search.json"

flags.DEFINE_string("output", "bench/results/quickstart",
                    "Output path without extension.")
flags.DEFINE_bool("at", True, "Also train AT for the same training time.")
FLAGS = flags.FLAGS


def at_command():
    """AT with what the budget search chose for it on the validation
    split, evaluated like the main command."""
    search = json.loads(SEARCH.read_text())
    chosen = search["at_trials"][search["at_chosen"]]["overrides"]
    return ("python train.py --model=lenet5_caffe_mnist_at "
            f"--epochs={chosen['train.epochs']} "
            f"--weight_lr={chosen['train.weight_learning_rate']} "
            "--override=eval.strong_examples=1000 "
            "--override=serve.export=true --workdir=runs/quickstart_at")


def run(command, scratch, name):
    """Runs `command` with its --workdir moved into `scratch`; returns
    (wall seconds, summary.json)."""
    workdir = Path(scratch) / name
    argv = [a for a in shlex.split(command) if not a.startswith("--workdir")]
    argv[0] = sys.executable
    start = time.perf_counter()
    subprocess.run([*argv, f"--workdir={workdir}"], cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    return seconds, json.loads((workdir / "summary.json").read_text())


def row(command, seconds, summary):
    results = summary["results"]
    strong = results["strong"]
    return {
        "command": command,
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(results["train_seconds"], 1),
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


def main(argv):
    del argv
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        report = row(MAIN_COMMAND, *run(MAIN_COMMAND, scratch, "anp_vs"))
        if FLAGS.at:
            command = at_command()
            report["at"] = row(command, *run(command, scratch, "at"))
    report.update(load_before=load_before, load_after=os.getloadavg(),
                  cpu_cores=os.cpu_count())
    files.write_json(f"{FLAGS.output}.json", report)
    rows = [report] + ([report["at"]] if "at" in report else [])
    lines = [f"`{MAIN_COMMAND}` from a new workdir on {report['cpu_cores']} "
             "CPU cores (1-minute load average before / after: "
             f"{load_before[0]:.2f} / {report['load_after'][0]:.2f}); AT "
             "by the same script for the same training time, with the "
             "epochs and learning rate bench/budget_search.py chose for it. "
             f"Worst case and APGD on the first "
             f"{report['worst_case_examples']:,} test images, PGD-40 and "
             "clean on all 10,000.", ""]
    lines += markdown_table(
        ["method", "wall time", "worst case %", "APGD-CE %", "APGD-DLR %",
         "PGD-40 %", "clean %", "unit sparsity %", "FLOPs reduction",
         "parameters", "serving speed-up (batch 256)"],
        [[name, f"{r['wall_seconds']:.0f} s",
          *(f"{100 * r[k]:.2f}" for k in ("worst_case_acc", "apgd_ce_acc",
                                          "apgd_dlr_acc", "pgd40_acc",
                                          "clean_acc")),
          f"{r['unit_sparsity']:.2f}", f"{r['flops_speedup']:.2f}x",
          f"{r['params']:,}", f"{r['serving_speedup_b256']:.2f}x"]
         for name, r in zip(("ANP-VS (main command)", "AT"), rows)])
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
