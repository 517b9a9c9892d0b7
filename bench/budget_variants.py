"""The validation trade-off of the chosen ANP-VS trial's variants: every
committed bench/budget_seeds*.json report side by side, each variant's
median worst case against its median unit sparsity and FLOPs reduction,
beside AT's median on the same seeds.

    python bench/budget_variants.py

Trains nothing: it reads the reports bench/budget_seeds.py writes (one per
--anp_vs_override set, on 1,000 held-out training images, never the test
set), over the seeds all of them hold, so every row has the same seeds,
and the baselines' refinements (their --at_override and --trades_override
reports: --at_reports, --trades_reports) as reference lines beside the AT
the gaps are taken to.
Writes bench/results/budget_variants.{json,md,png}.
"""

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

import budget_search as search  # noqa: E402  (its rule; defines its flags)
from anpvs_tf import config as config_lib  # noqa: E402
from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.plots import pyplot  # noqa: E402
from anpvs_tf.evaluation.plots import save_figure  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

flags.DEFINE_string("reports", "bench/results/budget_seeds*.json",
                    "The bench/budget_seeds.py reports to read (a glob).")
flags.DEFINE_string("at_reports", "bench/results/at_seeds*.json",
                    "bench/budget_seeds.py reports of AT's refinements "
                    "(--at_override), drawn as reference lines (a glob; "
                    "empty: none).")
flags.DEFINE_string("trades_reports", "bench/results/trades_seeds*.json",
                    "The same for TRADES' refinements (--baseline=trades "
                    "--trades_override).")
flags.DEFINE_string("variants_output", "bench/results/budget_variants",
                    "Output path without extension.")
FLAGS = flags.FLAGS


def label(overrides):
    """A variant as its overrides, a tuple as --override writes it (an
    empty one as "()")."""
    return ", ".join(f"{key}={config_lib.override_text(value) or '()'}"
                     for key, value in overrides.items()) or (
                         "the search's choice")


def median(report, seeds, method, key):
    return statistics.median(report["seeds"][s][method][key] for s in seeds)


def variant_row(path, report, seeds):
    anp_vs = {key: median(report, seeds, "anp_vs", key)
              for key in ("worst_case_acc", "clean_acc", "unit_sparsity",
                          "flops_speedup")}
    per_seed = [100 * report["seeds"][s]["anp_vs"]["worst_case_acc"]
                for s in seeds]
    return {
        "report": path.name,
        "variant": label(report.get("anp_vs_overrides", {})),
        **anp_vs,
        "worst_case_min": min(per_seed) / 100,
        "worst_case_max": max(per_seed) / 100,
        "at_worst_case_acc": median(report, seeds, "at", "worst_case_acc"),
        "gap_points": statistics.median(
            report["seeds"][s]["worst_case_gap_points"] for s in seeds),
        # The search's floors, by the medians.
        "meets_rule": (
            anp_vs["unit_sparsity"] >= search.MIN_SPARSITY
            and anp_vs["flops_speedup"] >= search.MIN_FLOPS_SPEEDUP
            and anp_vs["clean_acc"] >= search.clean_floor(
                report["validation_examples"])),
    }


def refinements(seeds, baseline, pattern):
    """{the baseline's overrides: its median worst case over `seeds`} of
    each report `pattern` matches (a glob; empty: none)."""
    refined = {}
    for path in sorted(Path().glob(pattern)) if pattern else ():
        report = files.read_json(path, "rerun bench/budget_seeds.py")
        if not set(seeds) <= set(report["seeds"]):
            sys.exit(f"{path} lacks seeds {', '.join(seeds)}: rerun "
                     f"bench/budget_seeds.py with its --{baseline}_override")
        refined[label(report[f"{baseline}_overrides"])] = median(
            report, seeds, baseline, "worst_case_acc")
    return refined


def plot(rows, at, refined, trades_refined, path):
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 9))
    for number, row in enumerate(rows):
        worst = 100 * row["worst_case_acc"]
        axes.errorbar(
            row["unit_sparsity"], worst,
            yerr=[[worst - 100 * row["worst_case_min"]],
                  [100 * row["worst_case_max"] - worst]],
            marker="o" if row["meets_rule"] else "x", capsize=3,
            color=plt.get_cmap("tab20")(number % 20),
            label=f"{row['variant']} ({row['flops_speedup']:.1f}x FLOPs)")
    axes.axhline(100 * at, color="black", linestyle="--",
                 label="AT, unpruned, same work")
    for number, (name, worst) in enumerate(refined.items()):
        axes.axhline(100 * worst, color="black", alpha=0.6,
                     linestyle=(0, (1, 1 + number)),
                     label=f"AT, {name}")
    for number, (name, worst) in enumerate(trades_refined.items()):
        axes.axhline(100 * worst, color="tab:brown", alpha=0.8,
                     linestyle=(0, (3, 1 + number)),
                     label=f"TRADES, {name}")
    axes.axvline(search.MIN_SPARSITY, color="grey", linestyle=":")
    axes.set_xlabel("unit sparsity, median over seeds (%)")
    axes.set_ylabel("worst case, median and range (%)")
    axes.set_title("Variants of the chosen trial on held-out training images"
                   "\n(o: the search's floors met: sparsity, FLOPs, clean; "
                   "x: not)", fontsize=9)
    axes.grid(alpha=0.3)
    # Below the axes: the long labels would hide the points.
    axes.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    figure.tight_layout()
    save_figure(figure, path)


def main(argv):
    del argv
    paths = sorted(Path().glob(FLAGS.reports))
    if not paths:
        sys.exit(f"no report matches {FLAGS.reports}: run "
                 "bench/budget_seeds.py first")
    reports = {p: files.read_json(p, "rerun bench/budget_seeds.py")
               for p in paths}
    seeds = sorted(set.intersection(*(set(r["seeds"])
                                      for r in reports.values())), key=int)
    ats = {median(r, seeds, "at", "worst_case_acc")
           for r in reports.values()}
    if not seeds or len(ats) != 1:
        sys.exit("the reports share no seeds or disagree on AT: rerun "
                 "bench/budget_seeds.py with the same --reuse")
    at = ats.pop()
    refined = refinements(seeds, "at", FLAGS.at_reports)
    trades_refined = refinements(seeds, "trades", FLAGS.trades_reports)
    best_at = max(refined.values(), default=None)
    rows = sorted((variant_row(p, r, seeds) for p, r in reports.items()),
                  key=lambda row: row["unit_sparsity"])
    output = FLAGS.variants_output
    floor = search.clean_floor(next(iter(reports.values()))[
        "validation_examples"])
    files.write_json(f"{output}.json",
                     {"seeds": seeds, "at_worst_case_acc": at,
                      "at_refined_worst_case_acc": refined,
                      **({"trades_refined_worst_case_acc": trades_refined}
                         if trades_refined else {}),
                      "rows": rows})
    lines = [
        "Variants of the budget search's chosen ANP-VS trial on the 1,000 "
        "held-out training images (`python bench/budget_variants.py`, from "
        "the bench/budget_seeds.py reports named in the last column), "
        f"medians over seeds {', '.join(seeds)}; AT, unpruned and trained "
        f"for the same work, scored a median {100 * at:.2f} %. Gap: AT's "
        "worst case minus the variant's, median over the seeds. Rule: the "
        f"search's floors by the medians, >= {search.MIN_SPARSITY:g} % unit "
        f"sparsity, >= {search.MIN_FLOPS_SPEEDUP:g}x fewer FLOPs and >= "
        f"{100 * floor:.2f} % clean."
        + ("" if not refined else
           " AT given the refinements the variants found (bench/budget_seeds.py"
           " --at_override, the same seeds; their reports: --at_reports): "
           + "; ".join(f"`{name}`: {100 * worst:.2f} %"
                       for name, worst in refined.items())
           + " median worst case.")
        + ("" if not trades_refined else
           " TRADES given refinements (bench/budget_seeds.py "
           "--baseline=trades --trades_override, the same seeds; "
           "--trades_reports): "
           + "; ".join(f"`{name}`: {100 * worst:.2f} %"
                       for name, worst in trades_refined.items())
           + "."), "",
        *markdown_table(
            ("variant", "worst case %", "range %", "gap (points)",
             *(("under the best refined AT (points)",) if refined else ()),
             "clean %", "unit sparsity %", "FLOPs reduction",
             "rule", "report"),
            [(row["variant"], f"{100 * row['worst_case_acc']:.2f}",
              f"{100 * row['worst_case_min']:.2f}-"
              f"{100 * row['worst_case_max']:.2f}",
              f"{row['gap_points']:.2f}",
              *((f"{100 * (best_at - row['worst_case_acc']):.2f}",)
                if refined else ()),
              f"{100 * row['clean_acc']:.2f}",
              f"{row['unit_sparsity']:.2f}",
              f"{row['flops_speedup']:.2f}x",
              "met" if row["meets_rule"] else "not met",
              row["report"]) for row in rows]),
    ]
    files.write_text(f"{output}.md", "\n".join(lines) + "\n")
    plot(rows, at, refined, trades_refined, f"{output}.png")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
