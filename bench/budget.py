"""Shared by the same-budget benchmarks (mnist_budget.py, fashion_budget.py):
train each method of a list with the same epochs, then compare them.

A method's run is (zoo method, config overrides); gated methods start from
the benchmark's own standard run. Runs resume when interrupted. Every run
is scored on the whole test set by PGD-40 and by the strong suite
(APGD-CE, APGD-DLR and the per-example worst case over them, PGD-40 and
the clean image): the tables lead with the worst case, which PGD-40 alone
overstates; PGD-40 stays as the paper's column.
"""

import statistics
from pathlib import Path

from anpvs_tf import files
from anpvs_tf.evaluation.tables import markdown_table

# The strong suite scores this many test images: all of MNIST's and
# Fashion-MNIST's (train.py's eval.strong_examples; fewer if the test set
# is smaller).
STRONG_EXAMPLES = 10_000
STRONG_KEYS = ("worst_case_acc", "apgd_ce_acc", "apgd_dlr_acc")
KEYS = (*STRONG_KEYS, "pgd40_acc", "clean_acc", "vulnerability",
        "unit_sparsity", "memory_pct", "flops_speedup", "params",
        "train_seconds", "strong_examples")


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
            "eval.strong_examples": STRONG_EXAMPLES,
            **overrides,
        },
    )
    return headline(train(config, runs_dir / name, verbose=2))


def tuned(entry_prefix, method, tuning_results, search_command):
    """The overrides of `method`'s best trial in a bench/tuning.py report
    (`tuning_results`, its JSON), and the note saying how they were
    chosen; `search_command` writes the report."""
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.tuning import overrides_for

    tuning_results = Path(tuning_results)
    recover = f"run `{search_command} --methods={method}` first"
    search = (files.read_json(tuning_results, recover)
              if tuning_results.exists() else {})
    if method not in search.get("methods", {}):
        raise SystemExit(f"error: {tuning_results} holds no {method} "
                         f"search; {recover}")
    best = search["methods"][method]["trials"][0]
    overrides = overrides_for(get_experiment(f"{entry_prefix}_{method}"),
                              best["hyperparameters"])
    return overrides, (
        f"tuned: best trial {best['trial_id']} of bench/tuning.py's "
        f"{method} search ({search['setup']['budget']['max_trials']} "
        "trials, the same budget for every method; "
        f"{tuning_results.name}): "
        + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())))


def train_rows(run, names, only=None, needs_base=False):
    """Trains (or reads) the benchmark's runs with `run(name)`: just
    `only`, to run processes side by side (returns None: no report), or
    the standard base when `needs_base` (a gated row starts from it), then
    every row of `names`; returns {name: results}."""
    if only:
        run(only)
        return None
    if needs_base:
        run("standard")
    return {name: run(name) for name in names}


def with_pgd_label(results):
    """The run's PGD accuracy also under a key naming its steps
    (pgd40_acc for PGD-40): the tables read that key, so a run evaluated
    with another attack is never reported as PGD-40."""
    steps = results["attack"]["num_steps"]
    return {**results, f"pgd{steps}_acc": results["pgd_acc"]}


def headline(results):
    """A run's results with the tables' keys at the top level: PGD under
    its steps, and the strong suite's accuracies (None without it) with
    the number of images it scored."""
    strong = results.get("strong") or {}
    return {**with_pgd_label(results),
            **{key: strong.get(key) for key in STRONG_KEYS},
            "strong_examples": strong.get("examples")}


def checks(at, candidate):
    """The issues' acceptance checks of a pruned candidate against AT, on
    the worst case (the bar was once PGD-40's)."""
    measured = "vulnerability" in candidate and "vulnerability" in at
    return {
        "anp_vs_worst_case_at_least_at":
            candidate["worst_case_acc"] >= at["worst_case_acc"],
        "anp_vs_worst_case_at_least_at_minus_1pt":
            candidate["worst_case_acc"] >= at["worst_case_acc"] - 0.01,
        # bench/quickstart.py's rows do not measure the vulnerability.
        **({"anp_vs_vulnerability_below_at":
            candidate["vulnerability"] < at["vulnerability"]}
           if measured else {}),
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
    at = summary["methods"].get("at")
    summary["checks"] = (checks(at, summary["methods"]["anp_vs"])
                         if at and "anp_vs" in summary["methods"] else {})
    summary["checks_supplementary"] = {
        name: checks(at, entry)
        for name, entry in summary["supplementary"].items()
        if at and name.startswith("anp_vs")
    }
    return summary


def rows_report(results, main_rows, recipe, epochs):
    """report() of the rows in `results`: those in `main_rows` under
    "methods", the others as supplementary rows noted with how they were
    chosen; `recipe(name)` -> (zoo method, overrides, how chosen). Tuned
    AT against tuned ANP-VS is checked where both ran, and every row's
    hyper-parameters are kept."""
    names = list(results)
    recipes = {name: recipe(name) for name in names}  # each read once
    summary = report(
        results, [name for name in names if name in main_rows],
        {name: recipes[name][2] for name in names if name not in main_rows},
        epochs, first=names[0])
    rows = {**summary["methods"], **summary["supplementary"]}
    if {"at_tuned", "anp_vs_tuned"} <= set(rows):
        summary["checks_tuned"] = checks(rows["at_tuned"],
                                         rows["anp_vs_tuned"])
    summary["hyperparameters"] = {
        name: {"overrides": overrides, "chosen": chosen}
        for name, (_, overrides, chosen) in recipes.items()}
    return summary


def seed_path(root, seed):
    """A per-seed report's path: seed 0's is `root`, seed s's
    `root`_seed<s>."""
    return f"{root}_seed{seed}" if seed else root


def spread(values):
    """Median, min, max and range (max - min) of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values), "range": max(values) - min(values)}


def over_seeds(per_seed, reference="at", candidate="anp_vs"):
    """Several methods' rows seed by seed ({seed: {method: row}}), with
    every method's worst-case median and spread and the reference-minus-
    candidate gaps: one seed moves robust accuracy by points, so a
    comparison is only trusted where it holds seed after seed."""
    seeds = {
        seed: {**{method: {key: row[key] for key in KEYS if key in row}
                  for method, row in rows.items()},
               "worst_case_gap_points": 100 * (
                   rows[reference]["worst_case_acc"]
                   - rows[candidate]["worst_case_acc"]),
               "pgd40_gap_points": 100 * (rows[reference]["pgd40_acc"]
                                          - rows[candidate]["pgd40_acc"]),
               "checks": checks(rows[reference], rows[candidate])}
        for seed, rows in per_seed.items()}
    methods = list(next(iter(per_seed.values())))
    return {
        "seeds": seeds,
        "worst_case": {
            method: spread([100 * entry[method]["worst_case_acc"]
                            for entry in seeds.values()])
            for method in methods},
        "worst_case_gap_points": spread(
            [entry["worst_case_gap_points"] for entry in seeds.values()]),
        "pgd40_gap_points": spread(
            [entry["pgd40_gap_points"] for entry in seeds.values()]),
        "seeds_anp_vs_at_least_at": sum(
            entry["checks"]["anp_vs_worst_case_at_least_at"]
            for entry in seeds.values()),
    }


def _spread_text(entry):
    return (f"median {entry['median']:.2f}, min {entry['min']:.2f}, max "
            f"{entry['max']:.2f}")


def seeds_markdown(summary, title, labels, reference="at",
                   candidate="anp_vs"):
    """over_seeds' table; `labels`: {method: name in the table}, in the
    table's order."""
    seeds = summary["seeds"]

    def percent(method, key):
        return [f"{100 * entry[method][key]:.2f}" for entry in
                seeds.values()]

    columns = [
        *(percent(m, "worst_case_acc") for m in labels),
        [f"{entry['worst_case_gap_points']:.2f}" for entry in
         seeds.values()],
        *(percent(m, "pgd40_acc") for m in labels),
        [f"{entry[candidate]['unit_sparsity']:.2f}" for entry in
         seeds.values()],
        *(percent(m, "clean_acc") for m in labels),
    ]
    ref, cand = labels[reference], labels[candidate]
    lines = [
        title, "",
        *markdown_table(
            ("seed", *(f"{label} worst case %" for label in labels.values()),
             "gap (points)",
             *(f"{label} PGD-40 %" for label in labels.values()),
             f"{cand} unit sparsity %",
             *(f"{label} clean %" for label in labels.values())),
            [(seed, *row) for seed, row in zip(seeds, zip(*columns))]),
        "",
        "Worst case %, " + "; ".join(
            f"{label}: {_spread_text(summary['worst_case'][method])}"
            for method, label in labels.items()) + ".",
        f"Gap ({ref} minus {cand}, worst-case points): "
        f"{_spread_text(summary['worst_case_gap_points'])}; {cand} at least "
        f"as robust as {ref} at {summary['seeds_anp_vs_at_least_at']} of "
        f"{len(seeds)} seeds.",
    ]
    return "\n".join(lines) + "\n"


def markdown(summary, title):
    runs = {**summary["methods"],
            **{f"{name} (supplementary)": entry
               for name, entry in summary["supplementary"].items()}}
    lines = [title, "", *markdown_table(
        ("method", "worst case %", "APGD-CE %", "APGD-DLR %", "PGD-40 %",
         "clean %", "vulnerability", "unit sparsity %", "memory %",
         "FLOPs x", "params", "train s"),
        [(name, *(f"{100 * r[key]:.2f}" for key in (
            *STRONG_KEYS, "pgd40_acc", "clean_acc")),
          f"{r['vulnerability']:.4f}", f"{r['unit_sparsity']:.2f}",
          f"{r['memory_pct']:.2f}", f"{r['flops_speedup']:.2f}",
          f"{r['params']:,}", f"{r['train_seconds']:.0f}")
         for name, r in runs.items()])]
    examples = {r["strong_examples"] for r in runs.values()}
    lines += ["", "Worst case: per example, over the clean image, PGD-40, "
              "APGD-CE and APGD-DLR (100 iterations each), on "
              f"{' / '.join(f'{n:,}' for n in sorted(examples))} test "
              "images."]
    checks = [*summary["checks"].items()] + [
        (f"tuned vs tuned: {k}", v)
        for k, v in summary.get("checks_tuned", {}).items()] + [
        (f"supplementary {name}: {k}", v)
        for name, found in summary["checks_supplementary"].items()
        for k, v in found.items()]
    lines += ["", *markdown_table(("check", "passed"), checks)]
    chosen = {name: entry["chosen"] for name, entry in
              summary.get("hyperparameters", {}).items()
              if name in summary["methods"]}
    if chosen:
        lines += ["", "Hyper-parameters:"]
        lines += [f"- {name}: {text}." for name, text in chosen.items()]
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
