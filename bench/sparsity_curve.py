"""The main command's worst case against the sparsity its gates stop at,
seed by seed, beside AT trained for the same work.

    python bench/sparsity_curve.py --seeds=0,1,2 --targets=20,40,60

Runs MAIN_COMMAND (bench/main_command.py) with --seed=S and
--freeze_at_sparsity=T for every seed and target: the same recipe, whose
gates freeze after the first step at which T % of the units are pruned
instead of after their 4 epochs. The recipe as the README runs it (gates
frozen after 4 epochs only) and AT for the same training work come from
bench/quickstart.py's report of each seed (bench/results/quickstart.json
for seed 0, quickstart_seed<S>.json; nothing here retrains them). Each
run keeps its workdir in --runs_dir, and a run whose summary.json exists
is read, not retrained, so an interrupted curve resumes.

Writes bench/results/sparsity_curve.{json,md,png}: worst case (first
1,000 test images), clean and PGD-40 (all 10,000), unit sparsity, FLOPs
reduction, serving speed-up and training time of every point; the PNG
plots the worst case against the unit sparsity, AT's level per seed as a
dashed line.
"""

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import data  # noqa: E402
from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.plots import pyplot  # noqa: E402
from anpvs_tf.evaluation.plots import save_figure  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402
from anpvs_tf.registry import get_experiment  # noqa: E402
from main_command import MAIN_COMMAND  # noqa: E402
from main_command import row  # noqa: E402
from main_command import run  # noqa: E402
import models  # noqa: E402,F401  (registers the zoo)

flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the curve.")
flags.DEFINE_list("targets", ["20", "40", "60"],
                  "--freeze_at_sparsity values (% of the gated units).")
flags.DEFINE_string("runs_dir", "bench/runs/sparsity_curve",
                    "Where each run's workdir is kept (and resumed from).")
flags.DEFINE_string("output", "bench/results/sparsity_curve",
                    "Output path without extension.")
FLAGS = flags.FLAGS

RECIPE = next(arg.split("=", 1)[1] for arg in MAIN_COMMAND.split()
              if arg.startswith("--model="))


def quickstart_report(seed):
    """bench/quickstart.py's report of `seed`: the untargeted recipe at
    its top, AT under "at"."""
    name = "quickstart" if seed == 0 else f"quickstart_seed{seed}"
    path = ROOT / "bench/results" / f"{name}.json"
    if not path.exists():
        sys.exit(f"{path} is missing: run `python bench/quickstart.py "
                 f"--seed={seed} --norobust --baselines=at "
                 f"--output=bench/results/{name}` first")
    report = json.loads(path.read_text())
    if "at" not in report:
        sys.exit(f"{path} holds no AT row: rerun it with --baselines=at")
    return report


def targeted_point(seed, target, train_examples):
    """The main command at `seed` with its gates frozen at `target` %."""
    workdir = ROOT / FLAGS.runs_dir / f"seed{seed}_t{target:g}"
    command = (f"{MAIN_COMMAND} --seed={seed} "
               f"--freeze_at_sparsity={target:g}")
    summary_path = workdir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        seconds = summary["wall_seconds"]
    else:
        seconds, summary = run(command, workdir)
    point = row(command, seconds, summary, workdir, train_examples)
    point.update(target=target,
                 gates_frozen_at_step=summary["results"].get(
                     "gates_frozen_at_step"))
    return point


def _keep(point):
    """What the curve reports of a run."""
    return {key: point[key] for key in (
        "command", "worst_case_acc", "clean_acc", "pgd40_acc",
        "unit_sparsity", "flops_speedup", "serving_speedup_b256",
        "train_seconds", "wall_seconds", "target", "gates_frozen_at_step")
        if key in point}


def plot(curve, path):
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for number, (seed, entry) in enumerate(curve.items()):
        color = f"C{number}"
        points = sorted([*entry["targeted"], entry["recipe"]],
                        key=lambda p: p["unit_sparsity"])
        axes.plot([p["unit_sparsity"] for p in points],
                  [100 * p["worst_case_acc"] for p in points],
                  marker="o", color=color, label=f"ANP-VS, seed {seed}")
        axes.plot(entry["recipe"]["unit_sparsity"],
                  100 * entry["recipe"]["worst_case_acc"], marker="s",
                  markersize=9, color=color, fillstyle="none")
        axes.axhline(100 * entry["at"]["worst_case_acc"], color=color,
                     linestyle="--", alpha=0.7, label=f"AT, seed {seed}")
    axes.set_xlabel("unit sparsity (%)")
    axes.set_ylabel("worst case, first 1,000 test images (%)")
    axes.set_title("Main command: worst case vs sparsity\n"
                   "(square: gates frozen after 4 epochs, the README's)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def main(argv):
    del argv
    targets = [float(t) for t in FLAGS.targets]
    train_examples = len(data.load_split(
        get_experiment(RECIPE).data, "train")[1])
    curve = {}
    for seed in (int(s) for s in FLAGS.seeds):
        report = quickstart_report(seed)
        curve[seed] = {
            "recipe": _keep(report), "at": _keep(report["at"]),
            "targeted": [_keep(targeted_point(seed, t, train_examples))
                         for t in targets]}
    rows = []
    for seed, entry in curve.items():
        at = entry["at"]["worst_case_acc"]
        for label, point in [
                *((f"frozen at {p['target']:g} %", p)
                  for p in entry["targeted"]),
                ("after 4 epochs (README)", entry["recipe"]),
                ("AT, same work", entry["at"])]:
            gap = ("" if point is entry["at"]
                   else f"{100 * (at - point['worst_case_acc']):.2f}")
            rows.append([
                str(seed), label, f"{100 * point['worst_case_acc']:.2f}",
                gap, f"{100 * point['clean_acc']:.2f}",
                f"{100 * point['pgd40_acc']:.2f}",
                f"{point['unit_sparsity']:.2f}",
                f"{point['flops_speedup']:.2f}x",
                f"{point['serving_speedup_b256']:.2f}x",
                f"{point['train_seconds']:.0f} s"])
    gaps = {}
    for entry in curve.values():
        at = entry["at"]["worst_case_acc"]
        for point in entry["targeted"]:
            gaps.setdefault(f"{point['target']:g}", []).append(
                100 * (at - point["worst_case_acc"]))
        gaps.setdefault("recipe", []).append(
            100 * (at - entry["recipe"]["worst_case_acc"]))
    medians = {key: statistics.median(values)
               for key, values in gaps.items()}
    files.write_json(f"{FLAGS.output}.json",
                     {"curve": {str(k): v for k, v in curve.items()},
                      "gap_medians": medians})
    lines = [
        f"`{MAIN_COMMAND} --seed=S --freeze_at_sparsity=T` (bench/"
        "sparsity_curve.py): the gates freeze after the first step at "
        "which T % of the gated units are pruned. The README's recipe "
        "(gates frozen after 4 epochs) and AT for the same training work "
        "from bench/quickstart.py's report of each seed. Worst case on "
        "the first 1,000 test images, clean and PGD-40 on all 10,000; "
        "gap: AT's worst case minus this row's, in points. Training time "
        "includes the base; the runs shared the machine with other work "
        "at times, so it is not a timing.", ""]
    lines += markdown_table(
        ["seed", "gates", "worst case %", "gap to AT", "clean %",
         "PGD-40 %", "unit sparsity %", "FLOPs reduction",
         "serving speed-up (b256)", "training"], rows)
    lines += ["", "Median gap to AT over the seeds: " + ", ".join(
        f"{'README recipe' if key == 'recipe' else f'frozen at {key} %'}"
        f" {value:.2f} points" for key, value in medians.items()) + "."]
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    plot(curve, f"{FLAGS.output}.png")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
