"""The README's main command, as a new user runs it, against AT.

    python bench/quickstart.py

Runs MAIN_COMMAND (bench/main_command.py; the README shows exactly this
line, tests/test_figures.py checks it) into a new temporary workdir, so
nothing is resumed, and records its wall time (base model, ANP-VS,
evaluation, compact export, serving check) and the summary it wrote. Then
trains AT by the same script on the same data for the same training time
(its epochs from AT runs of 1 and 3 epochs timed here: the epoch and the
start-up), with the weight learning rate bench/budget_search.py chose for AT
on the held-out validation split (bench/results/budget_search.json), and the
same evaluation.
Writes bench/results/quickstart.{json,md}.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

from absl import app
from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402
from main_command import MAIN_COMMAND  # noqa: E402
from main_command import run  # noqa: E402
from main_command import training_seconds  # noqa: E402

SEARCH = ROOT / "bench/results/budget_search.json"

flags.DEFINE_string("output", "bench/results/quickstart",
                    "Output path without extension.")
flags.DEFINE_bool("at", True, "Also train AT for the same training time.")
FLAGS = flags.FLAGS


def at_recipe():
    """AT's settings from bench/budget_search.py: the weight learning rate
    it chose for AT on the held-out validation split, and the training
    attack and loss mix AT shares with the chosen ANP-VS trial."""
    search = json.loads(SEARCH.read_text())
    chosen = search["at_trials"][search["at_chosen"]]["overrides"]
    return (chosen["train.weight_learning_rate"],
            search["at_shared_overrides"])


def at_command(epochs, learning_rate, shared):
    """AT on the same data, evaluated like the main command."""
    overrides = "".join(f"--override={key}={value} "
                        for key, value in shared.items())
    return ("python train.py --model=lenet5_caffe_mnist_at "
            f"--epochs={epochs} --weight_lr={learning_rate} "
            # The main command's training attack, loss mix and monitor
            # slice, so that both spend their training time on the same
            # work.
            f"--pgd_steps=10 {overrides}--monitor_examples=200 "
            "--override=eval.strong_examples=1000 "
            "--override=serve.export=true --workdir=runs/quickstart_at")


def at_epoch_seconds(scratch, rate, shared):
    """One AT epoch's training time and the run's fixed start-up cost
    (tracing), from AT runs of 1 and 3 epochs by the same script: AT's
    epochs then fill ANP-VS's training time (base included) as closely
    as whole epochs can."""
    seconds = {}
    for epochs in (1, 3):
        _, probe = run(at_command(epochs, rate, shared),
                       Path(scratch) / f"at_probe_{epochs}",
                       "--test_examples=100",
                       "--override=serve.export=false",
                       "--override=eval.strong_examples=0")
        seconds[epochs] = probe["results"]["train_seconds"]
    epoch = (seconds[3] - seconds[1]) / 2
    return epoch, max(0.0, seconds[1] - epoch)


def row(command, seconds, summary, workdir):
    results = summary["results"]
    strong = results["strong"]
    return {
        "command": command,
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(training_seconds(summary, workdir), 1),
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
        workdir = Path(scratch) / "anp_vs"
        report = row(MAIN_COMMAND, *run(MAIN_COMMAND, workdir), workdir)
        if FLAGS.at:
            rate, shared = at_recipe()
            epoch_seconds, overhead = at_epoch_seconds(scratch, rate,
                                                       shared)
            epochs = max(1, round((report["train_seconds"] - overhead)
                                  / epoch_seconds))
            command = at_command(epochs, rate, shared)
            workdir = Path(scratch) / "at"
            report["at"] = row(command, *run(command, workdir), workdir)
            report["at"].update(epoch_seconds_probe=epoch_seconds,
                                start_seconds_probe=overhead)
    report.update(load_before=load_before, load_after=os.getloadavg(),
                  cpu_cores=os.cpu_count())
    files.write_json(f"{FLAGS.output}.json", report)
    rows = [report] + ([report["at"]] if "at" in report else [])
    lines = [f"`{MAIN_COMMAND}` from a new workdir on {report['cpu_cores']} "
             "CPU cores (1-minute load average before / after: "
             f"{load_before[0]:.2f} / {report['load_after'][0]:.2f}); AT "
             "by the same script for the same training time (epochs: "
             "ANP-VS's training time, base included, less AT's start-up, "
             "over one AT epoch, both timed here from AT runs of 1 and 3 "
             "epochs), with the weight learning rate "
             "bench/budget_search.py chose for AT on the validation split "
             "and the main command's training attack and loss mix. "
             f"Worst case and APGD on the first "
             f"{report['worst_case_examples']:,} test images, PGD-40 and "
             "clean on all 10,000.", ""]
    lines += markdown_table(
        ["method", "wall time", "training time", "worst case %",
         "APGD-CE %", "APGD-DLR %", "PGD-40 %", "clean %",
         "unit sparsity %", "FLOPs reduction",
         "parameters", "serving speed-up (batch 256)"],
        [[name, f"{r['wall_seconds']:.0f} s",
          f"{r['train_seconds']:.0f} s",
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
