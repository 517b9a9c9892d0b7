"""Shared by the same-budget benchmarks (mnist_budget.py, fashion_budget.py):
train each method of a list with the same epochs, then compare them.

A method's run is (zoo method, config overrides); gated methods start from
the benchmark's own standard run. Runs resume when interrupted.
"""

from pathlib import Path

from anpvs_tf import files
from anpvs_tf.evaluation.tables import markdown_table

KEYS = ("clean_acc", "pgd40_acc", "vulnerability", "unit_sparsity",
        "memory_pct", "flops_speedup", "params", "train_seconds")


def run_method(entry_prefix, method, overrides, runs_dir, name, epochs,
               monitor_examples):
    """Trains `<entry_prefix>_<method>` with the overrides; returns results."""
    from anpvs_tf import config as config_lib
    from anpvs_tf.methods import FROM_BASE_METHODS
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.training import train

    runs_dir = Path(runs_dir)
    if method in FROM_BASE_METHODS:
        # Starts from the standard model of the same budget, unless the
        # overrides name another base.
        overrides = {"train.base_workdir": str(runs_dir / "standard"),
                     **overrides}
    config = config_lib.replace(
        get_experiment(f"{entry_prefix}_{method}"),
        **{
            "train.epochs": epochs,
            "data.monitor_examples": monitor_examples,
            **overrides,
        },
    )
    results = train(config, runs_dir / name, verbose=2)
    return with_pgd_label(results)


def with_pgd_label(results):
    """The run's PGD accuracy also under a key naming its steps
    (pgd40_acc for PGD-40): the tables read that key, so a run evaluated
    with another attack is never reported as PGD-40."""
    steps = results["attack"]["num_steps"]
    return {**results, f"pgd{steps}_acc": results["pgd_acc"]}


def checks(at, candidate):
    """The issues' acceptance checks of a pruned candidate against AT."""
    return {
        "anp_vs_pgd40_at_least_at_minus_1pt":
            candidate["pgd40_acc"] >= at["pgd40_acc"] - 0.01,
        "anp_vs_vulnerability_below_at":
            candidate["vulnerability"] < at["vulnerability"],
        "anp_vs_unit_sparsity_at_least_50pct":
            candidate["unit_sparsity"] >= 50,
        "anp_vs_clean_within_1pt_of_at":
            abs(candidate["clean_acc"] - at["clean_acc"]) <= 0.01,
    }


def report(results, methods, supplementary, epochs, first="standard"):
    """The JSON report: per-method KEYS, supplementary runs, checks."""
    summary = {
        "epochs": epochs,
        "train_examples": results[first]["train_examples"],
        "test_examples": results[first]["test_examples"],
        "methods": {name: {key: results[name][key] for key in KEYS}
                    for name in methods},
        "supplementary": {
            name: {**{key: results[name][key] for key in KEYS},
                   "note": note}
            for name, note in supplementary.items()
        },
    }
    at = summary["methods"]["at"]
    summary["checks"] = checks(at, summary["methods"]["anp_vs"])
    summary["checks_supplementary"] = {
        name: checks(at, entry)
        for name, entry in summary["supplementary"].items()
    }
    return summary


def markdown(summary, title):
    runs = {**summary["methods"],
            **{f"{name} (supplementary)": entry
               for name, entry in summary["supplementary"].items()}}
    lines = [title, "", *markdown_table(
        ("method", "clean %", "PGD-40 %", "vulnerability", "unit sparsity %",
         "memory %", "FLOPs x", "params", "train s"),
        [(name, f"{100 * r['clean_acc']:.2f}", f"{100 * r['pgd40_acc']:.2f}",
          f"{r['vulnerability']:.4f}", f"{r['unit_sparsity']:.2f}",
          f"{r['memory_pct']:.2f}", f"{r['flops_speedup']:.2f}",
          f"{r['params']:,}", f"{r['train_seconds']:.0f}")
         for name, r in runs.items()])]
    checks = [*summary["checks"].items()] + [
        (f"supplementary {name}: {k}", v)
        for name, found in summary["checks_supplementary"].items()
        for k, v in found.items()]
    lines += ["", *markdown_table(("check", "passed"), checks)]
    if summary["supplementary"]:
        lines += ["", "Supplementary runs:"]
        lines += [f"- {name}: {entry['note']}."
                  for name, entry in summary["supplementary"].items()]
    return "\n".join(lines) + "\n"


def write(summary, output, title):
    save(summary, output, markdown(summary, title))


def save(summary, output, text):
    """Writes <output>.json and the markdown <output>.md; prints the
    markdown."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(output.with_suffix(".json"), summary)
    files.write_text(output.with_suffix(".md"), text)
    print(text)
