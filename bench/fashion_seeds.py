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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

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
    """The at and anp_vs rows of one seed (training what is missing)."""
    FLAGS.seed = seed
    FLAGS.runs_dir = runs_dir(seed, first_dir)
    results = {name: fashion_budget.run(name) for name in RUNS}
    return {name: results[name] for name in ("at", "anp_vs")}


def main(argv):
    del argv
    import models  # noqa: F401

    first_dir = FLAGS.runs_dir
    seeds = [int(s) for s in FLAGS.seeds]
    summary = budget.over_seeds(
        {seed: seed_results(seed, first_dir) for seed in seeds})
    for seed in seeds:
        summary["seeds"][seed]["runs_dir"] = runs_dir(seed, first_dir)
    summary["anp_vs_overrides"] = fashion_budget.anp_vs_overrides()
    budget.save(summary, FLAGS.seeds_output, budget.seeds_markdown(
        summary,
        f"AT vs ANP-VS of bench/fashion_budget.py (Fashion-MNIST, "
        f"{FLAGS.epochs} epochs, eps 0.1, the whole test set), by seed. "
        "Worst case: per example, over the clean image, PGD-40, APGD-CE "
        "and APGD-DLR.",
        {"at": "AT", "anp_vs": "ANP-VS"}))


if __name__ == "__main__":
    app.run(cli.run_main(main))
