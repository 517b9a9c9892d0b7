"""AT vs ANP-VS of bench/fashion_budget.py over several seeds.

One seed's robust accuracy moves by points from seed to seed (AT's own
PGD-40 varied by 3.31 points over three seeds), so a comparison is only
worth trusting when it holds seed after seed. For each seed this trains
(or finds) fashion_budget.py's at_base, at and anp_vs runs, with every flag
of fashion_budget.py as given, seed 0 in its --runs_dir and seed s in
<runs_dir>_seed<s>; then reports, on the per-example worst case over
PGD-40, APGD-CE and APGD-DLR (the whole test set), each seed's gap, and
the median and spread of every method's worst case and of the gaps.

    python bench/fashion_seeds.py --seeds=0,1,2

Writes bench/results/fashion_seeds.json and fashion_seeds.md.
"""

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import budget  # noqa: E402
import fashion_budget  # noqa: E402  (defines the budget's flags)

flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to train and compare.")
flags.DEFINE_string("seeds_output", "bench/results/fashion_seeds",
                    "Output path without extension (.json and .md).")
FLAGS = flags.FLAGS

RUNS = ("at_base", "at", "anp_vs")


def runs_dir(seed, first_dir):
    return first_dir if seed == 0 else f"{first_dir}_seed{seed}"


def seed_results(seed, first_dir):
    """The at and anp_vs results of one seed (training what is missing)."""
    FLAGS.seed = seed
    FLAGS.runs_dir = runs_dir(seed, first_dir)
    results = {name: fashion_budget.run(name) for name in RUNS}
    at, anp_vs = results["at"], results["anp_vs"]
    return {
        "runs_dir": FLAGS.runs_dir,
        "at": {key: at[key] for key in budget.KEYS},
        "anp_vs": {key: anp_vs[key] for key in budget.KEYS},
        "worst_case_gap_points": 100 * (
            at["worst_case_acc"] - anp_vs["worst_case_acc"]),
        "pgd40_gap_points": 100 * (at["pgd40_acc"] - anp_vs["pgd40_acc"]),
        "checks": budget.checks(at, anp_vs),
    }


def spread(values):
    """Median, min and max of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values)}


def _spread_text(entry):
    return (f"median {entry['median']:.2f}, min {entry['min']:.2f}, max "
            f"{entry['max']:.2f}")


def markdown(summary):
    seeds = summary["seeds"]
    lines = [
        f"AT vs ANP-VS of bench/fashion_budget.py (Fashion-MNIST, "
        f"{FLAGS.epochs} epochs, eps 0.1, the whole test set), by seed. "
        "Worst case: per example, over the clean image, PGD-40, APGD-CE "
        "and APGD-DLR.",
        "",
        *markdown_table(
            ("seed", "AT worst case %", "ANP-VS worst case %",
             "gap (points)", "AT PGD-40 %", "ANP-VS PGD-40 %",
             "ANP-VS unit sparsity %", "AT clean %", "ANP-VS clean %"),
            [(seed, f"{100 * r['at']['worst_case_acc']:.2f}",
              f"{100 * r['anp_vs']['worst_case_acc']:.2f}",
              f"{r['worst_case_gap_points']:.2f}",
              f"{100 * r['at']['pgd40_acc']:.2f}",
              f"{100 * r['anp_vs']['pgd40_acc']:.2f}",
              f"{r['anp_vs']['unit_sparsity']:.2f}",
              f"{100 * r['at']['clean_acc']:.2f}",
              f"{100 * r['anp_vs']['clean_acc']:.2f}")
             for seed, r in seeds.items()]),
        "",
        f"Worst case %, AT: {_spread_text(summary['worst_case']['at'])}; "
        f"ANP-VS: {_spread_text(summary['worst_case']['anp_vs'])}.",
        f"Gap (AT minus ANP-VS, worst-case points): "
        f"{_spread_text(summary['worst_case_gap_points'])}; ANP-VS at least "
        f"as robust as AT at {summary['seeds_anp_vs_at_least_at']} of "
        f"{len(seeds)} seeds.",
    ]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    import models  # noqa: F401

    first_dir = FLAGS.runs_dir
    seeds = {int(s): seed_results(int(s), first_dir) for s in FLAGS.seeds}
    summary = {
        "seeds": seeds,
        "worst_case": {
            method: spread([100 * r[method]["worst_case_acc"]
                            for r in seeds.values()])
            for method in ("at", "anp_vs")},
        "worst_case_gap_points": spread(
            [r["worst_case_gap_points"] for r in seeds.values()]),
        "pgd40_gap_points": spread(
            [r["pgd40_gap_points"] for r in seeds.values()]),
        "seeds_anp_vs_at_least_at": sum(
            r["checks"]["anp_vs_worst_case_at_least_at"]
            for r in seeds.values()),
        "anp_vs_overrides": fashion_budget.anp_vs_overrides(),
    }
    budget.save(summary, FLAGS.seeds_output, markdown(summary))


if __name__ == "__main__":
    app.run(cli.run_main(main))
