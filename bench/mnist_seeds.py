"""Tuned AT vs tuned TRADES vs tuned ANP-VS over several seeds, on MNIST
(bench/mnist_budget.py) or Fashion-MNIST (bench/fashion_tuned.py).

One seed moves robust accuracy by points, so the tuned-vs-tuned comparison
is only trusted where it holds seed after seed. This reads the tuned rows
of each seed's report (seed 0: bench/results/<benchmark>.json; seed s:
<benchmark>_seed<s>.json, written by `python bench/<benchmark>.py --seed=s
--rows=at_tuned,trades_tuned,anp_vs_tuned`) and reports each seed's worst
case (whole 10k test set), the median and spread of every method's, and
the AT-minus-ANP-VS gaps. It trains nothing: the reports are committed, so
seeds run in different sessions add up.

    python bench/mnist_seeds.py --seeds=0,1,2
    python bench/mnist_seeds.py --benchmark=fashion_tuned --seeds=0,1,2

Writes bench/results/mnist_seeds.{json,md}, or fashion_tuned_seeds.*.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from anpvs_tf import cli  # noqa: E402
from anpvs_tf import files  # noqa: E402

import budget  # noqa: E402

flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to compare.")
LABELS = {"at_tuned": "AT", "trades_tuned": "TRADES",
          "anp_vs_tuned": "ANP-VS"}
flags.DEFINE_list(
    "methods", list(LABELS),
    "Tuned rows to compare, comma-separated; every seed's report must "
    "hold each (at_tuned and anp_vs_tuned always).")
flags.register_validator(
    "methods", lambda methods: ({"at_tuned", "anp_vs_tuned"}
                                <= set(methods) <= set(LABELS)),
    f"--methods takes names from {', '.join(LABELS)} and includes "
    "at_tuned and anp_vs_tuned")
# benchmark -> (its seed-0 report, this script's output, the table's data).
BENCHMARKS = {
    "mnist_budget": ("bench/results/mnist_budget", "bench/results/mnist_seeds",
                     "MNIST, LeNet-5-Caffe, {epochs} epochs on 5,000 "
                     "images, eps 0.3"),
    "fashion_tuned": ("bench/results/fashion_tuned",
                      "bench/results/fashion_tuned_seeds",
                      "Fashion-MNIST, LeNet-5-Caffe, {epochs} epochs on "
                      "the first 5,000 images, eps 0.1"),
}
flags.DEFINE_enum("benchmark", "mnist_budget", list(BENCHMARKS),
                  "Whose tuned rows to compare.")
flags.DEFINE_string("results", None,
                    "The benchmark's output path of seed 0 (other seeds: "
                    "with _seed<N>), without extension; default "
                    "bench/results/<benchmark>.")
flags.DEFINE_string("output", None,
                    "Output path without extension (.json and .md); default "
                    "bench/results/mnist_seeds or fashion_tuned_seeds.")
FLAGS = flags.FLAGS


def labels():
    """--methods' table names, in the table's order."""
    return {name: label for name, label in LABELS.items()
            if name in FLAGS.methods}


def seed_rows(seed):
    """The tuned rows of one seed's report."""
    results = FLAGS.results or BENCHMARKS[FLAGS.benchmark][0]
    path = Path(results if seed == 0
                else f"{results}_seed{seed}").with_suffix(".json")
    command = (f"python bench/{FLAGS.benchmark}.py"
               + (f" --seed={seed}" if seed else "")
               + " --rows=" + ",".join(labels()))
    if not path.exists():
        raise SystemExit(f"error: no {path}; run `{command}` first")
    report = files.read_json(path, f"run `{command}` again")
    rows = {**report["methods"], **report["supplementary"]}
    missing = [name for name in labels() if name not in rows]
    if missing:
        raise SystemExit(f"error: {path} has no {', '.join(missing)} row; "
                         f"run `{command}`")
    return {name: rows[name] for name in labels()}, report


def main(argv):
    del argv
    seeds = [int(s) for s in FLAGS.seeds]
    reports = {seed: seed_rows(seed) for seed in seeds}
    summary = budget.over_seeds(
        {seed: rows for seed, (rows, _) in reports.items()},
        reference="at_tuned", candidate="anp_vs_tuned")
    summary["hyperparameters"] = {
        name: reports[seeds[0]][1]["hyperparameters"][name]["chosen"]
        for name in labels()}
    _, output, data = BENCHMARKS[FLAGS.benchmark]
    data = data.format(epochs=reports[seeds[0]][1]["epochs"])
    budget.save(summary, FLAGS.output or output, budget.seeds_markdown(
        summary,
        f"Tuned {', '.join(labels().values())} of "
        f"bench/{FLAGS.benchmark}.py ({data}, the whole 10k test set), by "
        "seed; each method with the best trial of its own same-budget "
        "search (bench/tuning.py). Worst case: per example, over the clean "
        "image, PGD-40, APGD-CE and APGD-DLR.",
        labels(), reference="at_tuned", candidate="anp_vs_tuned"))


if __name__ == "__main__":
    app.run(cli.run_main(main))
