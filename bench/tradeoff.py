"""The main command's trade-off, seed by seed: its worst case against the
sparsity its gates stop at, and against its training work, beside AT
trained for the same work.

    python bench/tradeoff.py --seeds=0,1,2 --targets=40,60 --scales=0.5,2

Sparsity: MAIN_COMMAND (bench/main_command.py) with --seed=S and
--freeze_at_sparsity=T (the gates freeze after the first step at which
T % of the units are pruned, instead of after their 4 epochs), and with
--beta=0 (the same chain with no KL pushing the gates to prune: what the
chain itself costs against AT, pruning apart), and each --variant (the
recipe with some settings overridden, e.g. its base at another rate).
Work: MAIN_COMMAND with its epochs times each --scales value (the same
base and gate epochs, a shorter or longer compact fine-tune, the decays
at the same fractions), and AT for that work (bench/baselines.py: its
epochs' training passes match).
The README's recipe and AT for its work come from bench/quickstart.py's
report of each seed (bench/results/quickstart.json for seed 0,
quickstart_seed<S>.json), not retrained. Each run keeps its workdir in
--runs_dir, and a run whose summary.json exists is read, not retrained,
so an interrupted benchmark resumes.

Writes bench/results/tradeoff.{json,md,png}: worst case (first 1,000 test
images), clean and PGD-40 (all 10,000), unit sparsity, FLOPs reduction,
serving speed-up, training work and time of every point; the PNG plots
the worst case against the unit sparsity and against the training work.
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

import models  # noqa: E402,F401  (registers the zoo)
from anpvs_tf import config as config_lib  # noqa: E402
from anpvs_tf import data  # noqa: E402
from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.plots import pyplot  # noqa: E402
from anpvs_tf.evaluation.plots import save_figure  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402
from anpvs_tf.registry import get_experiment  # noqa: E402
from baselines import MAIN_RECIPE  # noqa: E402
from baselines import matched_baseline_command  # noqa: E402
from budget import seed_path  # noqa: E402
from main_command import MAIN_COMMAND  # noqa: E402
from main_command import row  # noqa: E402
from main_command import run_or_read  # noqa: E402

flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("targets", ["40", "60"],
                  "--freeze_at_sparsity values (% of the gated units).")
flags.DEFINE_bool("unpressed", True,
                  "Also run the recipe with --beta=0: the same chain, no KL "
                  "pushing the gates to prune.")
flags.DEFINE_multi_string(
    "variant", [],
    "A point beside the recipe, run at every seed: 'label: key=value ...' "
    "(space-separated --override values), e.g. 'base at 0.003: "
    "train.base_learning_rate=0.003'. Repeatable.")
flags.DEFINE_list("scales", ["0.5", "2"],
                  "Multiples of the recipe's epochs (1: the README's, read "
                  "from bench/quickstart.py's reports).")
flags.DEFINE_string("runs_dir", "bench/runs/tradeoff",
                    "Where each run's workdir is kept (and resumed from).")
flags.DEFINE_string("output", "bench/results/tradeoff",
                    "Output path without extension.")
FLAGS = flags.FLAGS

# What the report keeps of a run (bench/main_command.row's record).
KEPT = ("command", "worst_case_acc", "clean_acc", "pgd40_acc",
        "unit_sparsity", "flops_speedup", "serving_speedup_b256",
        "train_passes", "train_seconds", "wall_seconds", "base_clean_acc",
        "base_pgd40_acc", "base_examples")


def _kept(point, **extra):
    """What the report keeps of a record (the base's scores where the run
    trained one here)."""
    return {**{key: point[key] for key in KEPT if key in point}, **extra}


def quickstart_report(seed):
    """bench/quickstart.py's report of `seed`: the README's recipe at its
    top, AT under "at"."""
    name = seed_path("quickstart", seed)
    path = ROOT / "bench/results" / f"{name}.json"
    if not path.exists():
        sys.exit(f"{path} is missing: run `python bench/quickstart.py "
                 f"--seed={seed} --norobust --baselines=at "
                 f"--output=bench/results/{name}` first")
    report = json.loads(path.read_text())
    if "at" not in report:
        sys.exit(f"{path} holds no AT row: rerun it with --baselines=at")
    return report


def point(name, command, train_examples):
    """`command` run (or read back) in its workdir `name`, with the PGD-40
    and clean accuracy of the base it started from (its own report, on
    the first 1,000 test images)."""
    workdir = ROOT / FLAGS.runs_dir / name
    seconds, summary = run_or_read(command, workdir)
    record = row(command, seconds, summary, workdir, train_examples)
    base_path = workdir / "base/results.json"
    if base_path.exists():  # AT trains none
        base = json.loads(base_path.read_text())
        record.update(base_clean_acc=base["clean_acc"],
                      base_pgd40_acc=base["pgd_acc"],
                      base_examples=base["test_examples"])
    return record, summary


def variants():
    """[(label, command suffix)] of --variant."""
    parsed = []
    for text in FLAGS.variant:
        label, sep, overrides = text.partition(":")
        if not sep or not label.strip() or not overrides.split():
            sys.exit(f"--variant={text!r}: write 'label: key=value ...'")
        parsed.append((label.strip(), " ".join(
            f"--override={o}" for o in overrides.split())))
    return parsed


def slug(label):
    """A workdir name for a label."""
    return "".join(c if c.isalnum() or c in "._" else "_" for c in label)


def sparsity_points(seed, train_examples):
    points = []
    for label, suffix in variants():
        record, _ = point(f"seed{seed}_{slug(label)}",
                          f"{MAIN_COMMAND} --seed={seed} {suffix}",
                          train_examples)
        points.append(_kept(record, label=label))
    for target in (float(t) for t in FLAGS.targets):
        record, summary = point(
            f"seed{seed}_t{target:g}",
            f"{MAIN_COMMAND} --seed={seed} --freeze_at_sparsity={target:g}",
            train_examples)
        points.append(_kept(
            record, label=f"frozen at {target:g} %",
            gates_frozen_at_step=summary["results"]["gates_frozen_at_step"]))
    if FLAGS.unpressed:
        record, _ = point(f"seed{seed}_kl0",
                          f"{MAIN_COMMAND} --seed={seed} --beta=0",
                          train_examples)
        points.append(_kept(record, label="no KL (--beta=0)"))
    return points


def work_points(seed, train_examples):
    """{scale: {"anp_vs": record, "at": record}}."""
    main = get_experiment(MAIN_RECIPE)
    points = {}
    for scale in (float(s) for s in FLAGS.scales):
        epochs = round(main.train.epochs * scale)
        scaled = config_lib.replace(main, **{"train.epochs": epochs})
        commands = {
            "anp_vs": f"{MAIN_COMMAND} --seed={seed} --epochs={epochs}",
            "at": (f"{matched_baseline_command('at', train_examples, scaled)}"
                   f" --seed={seed}")}
        points[f"{scale:g}"] = {
            method: _kept(point(f"seed{seed}_x{scale:g}_{method}", command,
                                train_examples)[0], epochs=epochs)
            for method, command in commands.items()}
    return points


def _cells(label, record, at):
    gap = "" if at is None else f"{100 * (at - record['worst_case_acc']):.2f}"
    return [label, f"{100 * record['worst_case_acc']:.2f}", gap,
            f"{100 * record['clean_acc']:.2f}",
            f"{100 * record['pgd40_acc']:.2f}",
            f"{record['unit_sparsity']:.2f}",
            f"{record['flops_speedup']:.2f}x",
            f"{record['serving_speedup_b256']:.2f}x",
            f"{record['train_passes'] / 1e6:.2f} M",
            f"{record['train_seconds']:.0f} s",
            (f"{100 * record['base_pgd40_acc']:.2f}"
             if "base_pgd40_acc" in record else "")]


COLUMNS = ["worst case %", "gap to AT", "clean %", "PGD-40 %",
           "unit sparsity %", "FLOPs reduction", "serving speed-up (b256)",
           "training passes", "training time",
           "its base's PGD-40 % (first 1,000)"]


def plot(report, path):
    plt = pyplot()
    with_work = bool(FLAGS.scales)  # else one panel: the work is the same
    figure, panels = plt.subplots(1, 1 + with_work, squeeze=False,
                                  figsize=(11 if with_work else 6.5, 4.5))
    by_sparsity = panels[0][0]
    by_work = panels[0][1] if with_work else None
    markers, shapes = {}, iter("o^Dv<>P*Xh")
    for number, (seed, entry) in enumerate(report.items()):
        color = f"C{number}"
        at = 100 * entry["recipe"]["at"]["worst_case_acc"]
        # One marker per kind of run (the runs are different recipes, not
        # points of one curve), one colour per seed.
        for record in entry["sparsity"]:
            if record["label"] not in markers:
                markers[record["label"]] = next(shapes)
            by_sparsity.plot(record["unit_sparsity"],
                             100 * record["worst_case_acc"],
                             markers[record["label"]], color=color)
        by_sparsity.plot(entry["recipe"]["anp_vs"]["unit_sparsity"],
                         100 * entry["recipe"]["anp_vs"]["worst_case_acc"],
                         "s", markersize=9, color=color, fillstyle="none")
        by_sparsity.axhline(at, color=color, linestyle="--", alpha=0.7,
                            label=f"AT, seed {seed}")
        if not with_work:
            continue
        by_scale = sorted([entry["recipe"], *entry["work"].values()],
                          key=lambda p: p["anp_vs"]["train_passes"])
        for method, style in (("anp_vs", "-o"), ("at", "--^")):
            by_work.plot([p[method]["train_passes"] / 1e6 for p in by_scale],
                         [100 * p[method]["worst_case_acc"] for p in by_scale],
                         style, color=color,
                         label=f"{'ANP-VS' if method == 'anp_vs' else 'AT'}, "
                               f"seed {seed}")
    for kind, shape in (*markers.items(), ("the README's recipe", "s")):
        by_sparsity.plot([], [], shape, color="black", label=kind,
                         fillstyle="none" if shape == "s" else "full")
    by_sparsity.set_xlabel("unit sparsity (%)")
    by_sparsity.set_title("by sparsity (colour: seed; marker: run)",
                          fontsize=9)
    if with_work:
        by_work.set_xlabel("training work (million network passes)")
        by_work.set_title("by training work (ANP-VS and AT matched)",
                          fontsize=9)
    for axes in panels[0]:
        axes.set_ylabel("worst case, first 1,000 test images (%)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


def main(argv):
    del argv
    train_examples = len(data.load_split(
        get_experiment(MAIN_RECIPE).data, "train")[1])
    report = {}
    for seed in (int(s) for s in FLAGS.seeds):
        quickstart = quickstart_report(seed)
        report[seed] = {
            "recipe": {"anp_vs": _kept(quickstart),
                       "at": _kept(quickstart["at"])},
            "sparsity": sparsity_points(seed, train_examples),
            "work": work_points(seed, train_examples)}

    gaps = {}
    sparsity_rows, work_rows = [], []
    for seed, entry in report.items():
        at = entry["recipe"]["at"]["worst_case_acc"]
        for record in entry["sparsity"]:
            sparsity_rows.append([str(seed), *_cells(record["label"],
                                                     record, at)])
            gaps.setdefault(record["label"], []).append(
                100 * (at - record["worst_case_acc"]))
        sparsity_rows.append([str(seed), *_cells(
            "after 4 epochs (README)", entry["recipe"]["anp_vs"], at)])
        sparsity_rows.append([str(seed), *_cells(
            "AT, same work", entry["recipe"]["at"], None)])
        for scale, pair in sorted({"1": entry["recipe"], **entry["work"]}
                                  .items(), key=lambda p: float(p[0])):
            at_scaled = pair["at"]["worst_case_acc"]
            work_rows.append([str(seed), f"x{scale}", *_cells(
                "ANP-VS", pair["anp_vs"], at_scaled)])
            work_rows.append([str(seed), f"x{scale}", *_cells(
                "AT", pair["at"], None)])
            if scale != "1":  # x1: the README's recipe, below
                gaps.setdefault(f"x{scale} work", []).append(
                    100 * (at_scaled - pair["anp_vs"]["worst_case_acc"]))
        gaps.setdefault("after 4 epochs (README)", []).append(
            100 * (at - entry["recipe"]["anp_vs"]["worst_case_acc"]))
    medians = {key: statistics.median(values)
               for key, values in gaps.items()}
    files.write_json(f"{FLAGS.output}.json",
                     {"seeds": {str(k): v for k, v in report.items()},
                      "gap_medians": medians})
    kinds = [*((f"`{MAIN_COMMAND} --seed=S --freeze_at_sparsity=T` (the "
                "gates freeze after the first step at which T % of the "
                "units are pruned)",) if FLAGS.targets else ()),
             *(("`--beta=0` (no KL: the chain without pruning pressure)",)
               if FLAGS.unpressed else ()),
             *(f"{label}: `{MAIN_COMMAND} --seed=S {suffix}`"
               for label, suffix in variants())]
    lines = [
        "The main command's trade-off (bench/tradeoff.py), worst case on "
        "the first 1,000 test images, clean and PGD-40 on all 10,000; gap: "
        "AT's worst case (same training work) minus the row's, in points. "
        "The README's recipe and its AT: bench/quickstart.py's reports. "
        "Training time includes the base; the runs of different sessions "
        "ran on different machines, so times compare only within a "
        "session.", "",
        "By sparsity: " + "; ".join(kinds) + ". Its base: the base "
        "model the run trained first (the README's recipe and `--beta=0` "
        "start from the same one).", ""]
    lines += markdown_table(["seed", "run", *COLUMNS], sparsity_rows)
    if FLAGS.scales:
        lines += ["", "By training work: "
                  f"`{MAIN_COMMAND} --seed=S --epochs=E` (E = 24 x scale; "
                  "the base's 6 and the gates' 4 epochs as they are) and AT "
                  "for the same training passes.", ""]
        lines += markdown_table(["seed", "work", "method", *COLUMNS],
                                work_rows)
    lines += ["", "Median gap to AT over the seeds: " + "; ".join(
        f"{key}: {value:.2f} points" for key, value in medians.items())
        + "."]
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    plot(report, f"{FLAGS.output}.png")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
