"""The README's main command, as a new user runs it, against AT and TRADES.

    python bench/quickstart.py      # ~35 min on 2 idle CPU cores

Runs MAIN_COMMAND (bench/main_command.py; the README shows exactly this
line, tests/test_figures.py checks it) into a new temporary workdir, so
nothing is resumed, and records its wall time (base model, ANP-VS,
evaluation, compact export, serving check) and the summary it wrote; then
ROBUST_COMMAND, the README's more robust alternative, the same way. Then
trains the unpruned baselines, AT and TRADES, by the same script on the
same data for the same training work (each one's epochs: the main
command's training passes over one baseline epoch's, counted by
anpvs_tf.delivery.training_passes; a timed probe run of one epoch said 13
to 19 s for the same AT epoch within the hour, and gave AT 26 % less
training time than ANP-VS), each with the weight learning rate
bench/budget_search.py chose for it on the held-out validation split and
the training attack and loss setting it shares with the recipe
(bench/results/budget_search.json), AT with the refinement its own
validation seed study kept (bench/baselines.py REFINEMENTS), and the same
evaluation. Both
training times are measured and shown.
Writes bench/results/quickstart.{json,md}.

At another seed (every command with --seed; robustness only, the wall
times of a loaded machine say little):

    python bench/quickstart.py --seed=1 --norobust --baselines=at \
        --output=bench/results/quickstart_seed1

(with --reuse_baselines=bench/results/quickstart_seed1.json after a
change of the recipe only: AT's row is read back, not retrained; with
--reuse_main after a change of a baseline only)

and `python bench/seeds.py --benchmark=quickstart` compares the seeds.
"""

import os
import sys
import tempfile
from pathlib import Path

from absl import app
from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

import models  # noqa: E402,F401  (registers the zoo)
from anpvs_tf import data  # noqa: E402
from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402
from baselines import MAIN_RECIPE  # noqa: E402
from baselines import matched_baseline_command  # noqa: E402
from main_command import MAIN_COMMAND  # noqa: E402
from main_command import ROBUST_COMMAND  # noqa: E402
from main_command import row  # noqa: E402
from main_command import run  # noqa: E402
from anpvs_tf.registry import get_experiment  # noqa: E402

flags.DEFINE_string("output", "bench/results/quickstart",
                    "Output path without extension.")
flags.DEFINE_bool("robust", True,
                  "Also run ROBUST_COMMAND, the README's alternative.")
flags.DEFINE_list("baselines", ["at", "trades"],
                  "Unpruned methods also trained for the same training "
                  "work, counted in network passes (empty: none).")
flags.DEFINE_string("reuse_baselines", None,
                    "An earlier report (.json) whose baseline rows are read "
                    "instead of retrained, each only where its command is "
                    "the one this run would give (same method, work, rate "
                    "and seed): the recipe changed, the baselines did not.")
flags.DEFINE_string("reuse_main", None,
                    "An earlier report (.json) whose main command's (and "
                    "robust recipe's) rows are read instead of rerun, each "
                    "only where its command is the one this run would give: "
                    "a baseline changed, the recipes did not.")
flags.DEFINE_integer("seed", None,
                     "Run every command with this --seed (default: none, "
                     "the commands exactly as the README gives them).")
FLAGS = flags.FLAGS


NAMES = {"at": "AT", "trades": "TRADES"}


def seeded(command):
    """`command` as run: with --seed when one is given."""
    return command if FLAGS.seed is None else f"{command} --seed={FLAGS.seed}"


def main(argv):
    del argv
    load_before = os.getloadavg()
    train_examples = len(data.load_split(
        get_experiment(MAIN_RECIPE).data, "train")[1])
    earlier_main = (files.read_json(FLAGS.reuse_main, "leave out --reuse_main")
                    if FLAGS.reuse_main else {})
    with tempfile.TemporaryDirectory() as scratch:

        def recipe_row(command, name, earlier):
            if earlier.get("command") == command:
                # Its own row: not the rows nested in it, nor the
                # machine's load (this run's).
                return {**{k: v for k, v in earlier.items() if k not in (
                            "robust", *NAMES, "load_before", "load_after",
                            "cpu_cores", "seed")},
                        "read_from": FLAGS.reuse_main}
            workdir = Path(scratch) / name
            return row(command, *run(command, workdir), workdir,
                       train_examples)

        report = recipe_row(seeded(MAIN_COMMAND), "anp_vs", earlier_main)
        if FLAGS.robust:
            report["robust"] = recipe_row(seeded(ROBUST_COMMAND),
                                          "anp_vs_robust",
                                          earlier_main.get("robust", {}))
        earlier = (files.read_json(FLAGS.reuse_baselines,
                                   "leave out --reuse_baselines")
                   if FLAGS.reuse_baselines else {})
        for method in FLAGS.baselines:
            command = seeded(matched_baseline_command(method,
                                                      train_examples))
            if earlier.get(method, {}).get("command") == command:
                report[method] = {**earlier[method],
                                  "read_from": FLAGS.reuse_baselines}
                continue
            workdir = Path(scratch) / method
            report[method] = row(command, *run(command, workdir), workdir,
                                 train_examples)
    report.update(load_before=load_before, load_after=os.getloadavg(),
                  cpu_cores=os.cpu_count(), seed=FLAGS.seed)
    files.write_json(f"{FLAGS.output}.json", report)
    rows = {"ANP-VS (main command)": report,
            **({"ANP-VS, robust recipe": report["robust"]}
               if FLAGS.robust else {}),
            **{NAMES[m]: report[m] for m in FLAGS.baselines}}
    lines = [f"`{report['command']}` from a new workdir on "
             f"{report['cpu_cores']} CPU cores (1-minute load average "
             "before / after: "
             f"{load_before[0]:.2f} / {report['load_after'][0]:.2f}); "
             "the unpruned baselines by the same script for the same "
             "training work (epochs: the main command's training passes, "
             "base and monitor included, over one baseline epoch's, "
             "counted by anpvs_tf.delivery.training_passes; both training "
             "times as measured), "
             "each with the weight learning rate bench/budget_search.py "
             "chose for it on the validation split, the training "
             "attack and loss setting it shares with the recipe and the "
             "refinement its own validation seed study kept (AT: "
             "bench/baselines.py REFINEMENTS). "
             f"Worst case and APGD on the first "
             f"{report['worst_case_examples']:,} test images, PGD-40 and "
             "clean on all 10,000."
             + "".join(f" {name}: read back from {r['read_from']}"
                       " (not rerun; its times are that run's)."
                       for name, r in rows.items() if "read_from" in r),
             ""]
    lines += markdown_table(
        ["method", "wall time", "training time", "training passes",
         "worst case %",
         "APGD-CE %", "APGD-DLR %", "PGD-40 %", "clean %",
         "unit sparsity %", "FLOPs reduction",
         "parameters", "serving speed-up (batch 256)"],
        [[name, f"{r['wall_seconds']:.0f} s",
          f"{r['train_seconds']:.0f} s",
          f"{r['train_passes'] / 1e6:.2f} M",
          *(f"{100 * r[k]:.2f}" for k in ("worst_case_acc", "apgd_ce_acc",
                                          "apgd_dlr_acc", "pgd40_acc",
                                          "clean_acc")),
          f"{r['unit_sparsity']:.2f}", f"{r['flops_speedup']:.2f}x",
          f"{r['params']:,}", f"{r['serving_speedup_b256']:.2f}x"]
         for name, r in rows.items()])
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
