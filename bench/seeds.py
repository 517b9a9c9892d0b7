"""A same-budget benchmark's methods over several seeds, read from its
committed per-seed reports.

One seed moves robust accuracy by points, so a comparison is only trusted
where it holds seed after seed. This reads the rows of each seed's report
(seed 0: bench/results/<report>.json; seed s: <report>_seed<s>.json, for
each of the benchmark's reports) and writes each seed's worst case (whole
10k test set; quickstart: its first 1,000 images), the median and spread
of every method's, and the AT-minus-ANP-VS gaps. It trains nothing: the
reports are committed, so seeds run in different sessions (a
Fashion-MNIST seed of fashion_budget.py takes over an hour on 2 CPU
cores) add up.

    python bench/seeds.py --seeds=0,1,2                       # mnist_budget
    python bench/seeds.py --benchmark=fashion_tuned --seeds=0,1,2
    python bench/seeds.py --benchmark=fashion_budget --seeds=0,1,2
    python bench/seeds.py --benchmark=quickstart --seeds=0,1,2

Writes bench/results/mnist_seeds.*, fashion_tuned_seeds.*,
fashion_seeds.* or quickstart_seeds.* (.json and .md).
"""

import sys
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from anpvs_tf import cli  # noqa: E402
from anpvs_tf import files  # noqa: E402

import budget  # noqa: E402


def budget_rows(report):
    return {**report["methods"], **report["supplementary"]}


@dataclass(frozen=True)
class Benchmark:
    # Seed 0's report paths (no extension) -> the rows each is written
    # for (what a missing row's command writes into).
    reports: dict
    output: str
    title: str  # formatted with the labels and the report's epochs
    labels: dict  # row name -> label, in the table's order
    # Writes seed {seed}'s rows {rows} into report {output} (its runs in
    # {runs}).
    command: str
    reference: str  # the gaps are reference minus candidate
    candidate: str
    # A report's rows by name.
    rows: Callable = budget_rows


def quickstart_rows(report):
    """bench/quickstart.py's report: the main command's row at the top,
    the robust recipe's and each baseline's under their names."""
    return {"anp_vs": report,
            **{("anp_vs_robust" if key == "robust" else key): value
               for key, value in report.items()
               if key in ("robust", "at", "trades")}}


TUNED = {"at_tuned": "AT", "trades_tuned": "TRADES",
         "anp_vs_tuned": "ANP-VS"}


def tuned(script, output, data):
    """A tuned-against-tuned benchmark: AT's and ANP-VS's rows in
    bench/results/<script>, TRADES' trained apart into <script>_trades
    (mnist_budget's seed 0 holds it too; any report's rows count)."""
    return Benchmark(
        {f"bench/results/{script}": ("at_tuned", "anp_vs_tuned"),
         f"bench/results/{script}_trades": ("trades_tuned",)},
        f"bench/results/{output}",
        f"Tuned {{labels}} of bench/{script}.py ({data}, the whole 10k test "
        "set), by seed; each method with the best trial of its own "
        "same-budget search (bench/tuning.py).",
        TUNED, f"python bench/{script}.py --seed={{seed}} --rows={{rows}} "
        "--output={output}", "at_tuned", "anp_vs_tuned")


BENCHMARKS = {
    "mnist_budget": tuned(
        "mnist_budget", "mnist_seeds",
        "MNIST, LeNet-5-Caffe, {epochs} epochs on 5,000 images, eps 0.3"),
    "fashion_tuned": tuned(
        "fashion_tuned", "fashion_tuned_seeds",
        "Fashion-MNIST, LeNet-5-Caffe, {epochs} epochs on the first 5,000 "
        "images, eps 0.1"),
    "fashion_budget": Benchmark(
        {"bench/results/fashion_budget": ("at", "trades", "anp_vs")},
        "bench/results/fashion_seeds",
        "{labels} of bench/fashion_budget.py (Fashion-MNIST, LeNet-5-Caffe, "
        "{epochs} epochs on the 60,000 training images, every method with "
        "the same untuned weight rate; ANP-VS branches off AT's first "
        "epochs; eps 0.1, the whole 10k test set), by seed.",
        {"at": "AT", "trades": "TRADES", "anp_vs": "ANP-VS"},
        "python bench/fashion_budget.py --seed={seed} --nosupplementary "
        "--methods={rows} --runs_dir={runs} --output={output}", "at", "anp_vs"),
    "quickstart": Benchmark(
        {"bench/results/quickstart": ("anp_vs", "anp_vs_robust", "at",
                                      "trades")},
        "bench/results/quickstart_seeds",
        "The README's main command and the unpruned baselines trained for "
        "the same work by bench/quickstart.py ({labels}), by seed; worst "
        "case on the first 1,000 MNIST test images, clean and PGD-40 on "
        "all 10,000.",
        {"anp_vs": "ANP-VS",
         "anp_vs_robust": "ANP-VS robust", "at": "AT",
         "trades": "TRADES"},
        "python bench/quickstart.py --seed={seed} "
        "--baselines={baselines} --output={output}",
        "at", "anp_vs", rows=quickstart_rows),
}
# What a report without per-row hyper-parameters says of its settings.
SETTINGS = ("weight_lr", "train_pgd_steps", "base_epochs",
            "anp_vs_overrides")

flags.DEFINE_enum("benchmark", "mnist_budget", list(BENCHMARKS),
                  "Whose rows to compare.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to compare.")
flags.DEFINE_list(
    "methods", None,
    "Rows to compare, comma-separated; every seed's reports must hold "
    "each. Default: all of the benchmark's (mnist_budget, fashion_tuned: "
    "at_tuned, trades_tuned, anp_vs_tuned; fashion_budget: at, trades, "
    "anp_vs); AT's and ANP-VS's always.")
flags.DEFINE_list(
    "results", None,
    "The benchmark's seed-0 report paths without extension (other seeds: "
    "with _seed<N>), their rows merged; default: the benchmark's own.")
flags.DEFINE_string(
    "output", None,
    "Output path without extension (.json and .md); default the "
    "benchmark's: bench/results/mnist_seeds, fashion_tuned_seeds or "
    "fashion_seeds.")
FLAGS = flags.FLAGS


def labels(benchmark):
    """--methods' table names, in the table's order."""
    wanted = FLAGS.methods or list(benchmark.labels)
    unknown = set(wanted) - set(benchmark.labels)
    needed = {benchmark.reference, benchmark.candidate} - set(wanted)
    if unknown or needed:
        raise SystemExit(
            f"error: --methods takes names from {', '.join(benchmark.labels)} "
            f"for --benchmark={FLAGS.benchmark} and includes "
            f"{benchmark.reference} and {benchmark.candidate}")
    return {name: label for name, label in benchmark.labels.items()
            if name in wanted}


def reports(benchmark):
    """Seed 0's report paths -> the rows each holds (--results: any)."""
    if FLAGS.results:
        return {root: tuple(benchmark.labels) for root in FLAGS.results}
    return benchmark.reports


def seed_rows(benchmark, names, seed):
    """The rows `names` of one seed's reports, and how each report says
    its hyper-parameters were chosen."""
    rows, settings = {}, {}
    for root in reports(benchmark):
        path = Path(budget.seed_path(root, seed)).with_suffix(".json")
        if not path.exists():
            continue
        report = files.read_json(path, "write it again with its benchmark")
        rows.update(benchmark.rows(report))
        hyperparameters = report.get("hyperparameters", {})
        settings.update(
            {name: entry["chosen"] for name, entry in hyperparameters.items()}
            or {key: report[key] for key in SETTINGS if key in report})
        settings["epochs"] = report.get("epochs")
    for root, held in reports(benchmark).items():
        missing = [name for name in names if name in held and (
            rows.get(name, {}).get("worst_case_acc") is None)]  # PGD only
        if missing:
            command = benchmark.command.format(
                seed=seed, rows=",".join(missing),
                baselines=",".join(m for m in missing if "anp_vs" not in m),
                output=budget.seed_path(root, seed),
                runs=budget.seed_path(f"bench/runs/{Path(root).name}",
                                      seed))
            raise SystemExit(
                f"error: seed {seed}'s reports have no {', '.join(missing)} "
                f"row with a worst case; run `{command}` first")
    return {name: rows[name] for name in names}, settings


def main(argv):
    del argv
    benchmark = BENCHMARKS[FLAGS.benchmark]
    names = labels(benchmark)
    seeds = [int(s) for s in FLAGS.seeds]
    reports = {seed: seed_rows(benchmark, names, seed) for seed in seeds}
    summary = budget.over_seeds(
        {seed: rows for seed, (rows, _) in reports.items()},
        reference=benchmark.reference, candidate=benchmark.candidate)
    summary["settings"] = {seed: settings
                           for seed, (_, settings) in reports.items()}
    title = benchmark.title.format(
        labels=", ".join(names.values()),
        epochs=reports[seeds[0]][1]["epochs"])
    budget.save(summary, FLAGS.output or benchmark.output,
                budget.seeds_markdown(
                    summary,
                    f"{title} Worst case: per example, over the clean image, "
                    "PGD-40, APGD-CE and APGD-DLR.",
                    names, reference=benchmark.reference,
                    candidate=benchmark.candidate))


if __name__ == "__main__":
    app.run(cli.run_main(main))
