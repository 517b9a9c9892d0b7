"""Writes an evaluation report: JSON, markdown and PNG plots.

A report never silently replaces an earlier one: writing to a path that
holds one needs overwrite=True (evaluate.py --overwrite).
"""

import tempfile
from pathlib import Path

from anpvs_tf import files
from anpvs_tf.errors import ConfigError
from anpvs_tf.evaluation.plots import plot_accuracy_vs_epsilon
from anpvs_tf.evaluation.plots import plot_vulnerability_distribution
from anpvs_tf.evaluation.tables import markdown_table


def report_paths(prefix):
    prefix = Path(prefix)
    return {
        "json": prefix.with_suffix(".json"),
        "markdown": prefix.with_suffix(".md"),
        "eps_plot": prefix.with_name(prefix.name + "_accuracy_vs_eps.png"),
        "vulnerability_plot": prefix.with_name(
            prefix.name + "_vulnerability.png"),
    }


def check_writable(prefix, overwrite):
    """Raises ConfigError if a report already lives at `prefix`, or if its
    folder cannot be written: checked before an evaluation runs, so its
    results are never lost to a refused write at the end."""
    existing = [p for p in report_paths(prefix).values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"'{existing[0]}' already exists; pass `overwrite` to replace "
            "it (and the other files of that report), or `output`=<path> "
            "to keep both")
    folder = Path(prefix).absolute().parent
    nearest = folder
    while not nearest.exists():
        nearest = nearest.parent
    if not nearest.is_dir():
        raise ConfigError(
            f"cannot write the report into '{folder}': '{nearest}' is a "
            "file; choose another `output`")
    try:
        # A real write: permission bits do not tell (root, read-only
        # mounts, full disks).
        tempfile.TemporaryFile(dir=nearest).close()
    except OSError as error:
        raise ConfigError(
            f"cannot write the report into '{folder}' ({error.strerror}); "
            "choose a writable `output`") from None


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}"


def _attack_rows(report):
    rows = [("clean", "-", report["clean_acc"], None)]
    for name, entry in report["attacks"].items():
        settings = entry["settings"]
        budget = f"{settings['num_steps']} steps"
        if settings.get("step_size") is not None:
            budget += f", step {settings['step_size']:g}"
        if settings["restarts"] > 1:
            budget += f", {settings['restarts']} restarts"
        rows.append((name, budget, entry["acc"],
                     entry["vulnerability"]["overall"]))
    if report.get("blackbox"):
        black = report["blackbox"]
        rows.append(((f"black-box ({black['settings']['name']} on "
                     f"{black['source']})"), "transfer", black["acc"],
                     black["vulnerability"]["overall"]))
    rows.append(("worst case over " + ", ".join(report["worst_case_over"]),
                 "per example", report["worst_case_acc"], None))
    return rows


def format_report(report, title=None):
    """The report as markdown."""
    settings = report["settings"]
    lines = [
        f"# {title or 'Robustness evaluation'}",
        "",
        f"Suite `{report['suite']}`, {report['test_examples']:,} test "
        f"examples, {settings['norm']} eps {settings['epsilon']:g}, seed "
        f"{report['seed']}, gates {report['gates']}"
        + (f" (EOT over {report['eot_samples']} samples)"
           if report["gates"] == "sampled" else "") + ".",
        "",
        *markdown_table(
            ("attack", "budget", "accuracy %", "vulnerability"),
            [(name, budget, _percent(acc),
              "" if vulnerability is None else f"{vulnerability:.4f}")
             for name, budget, acc, vulnerability in _attack_rows(report)]),
    ]
    lines += _layer_table(report)
    lines += _sweep_tables(report.get("sweeps"))
    lines += _check_table(report["sanity_checks"])
    complexity = report.get("complexity")
    if complexity:
        lines += [
            "", (f"Unit sparsity {complexity['unit_sparsity']:.2f} %, memory "
            f"{complexity['memory_pct']:.2f} %, FLOPs speed-up "
            f"{complexity['flops_speedup']:.2f}x, parameters "
            f"{complexity['params']:,} of {complexity['params_full']:,}.")]
    return "\n".join(lines) + "\n"


def _layer_table(report):
    white = report["attacks"].get(
        f"pgd{report['settings']['pgd_steps']}", {}).get("vulnerability")
    black = (report.get("blackbox") or {}).get("vulnerability")
    if not white:
        return []
    rows = [
        (layer, f"{value:.4f}",
         f"{black['per_layer'][layer]:.4f}" if black else "n/a")
        for layer, value in white["per_layer"].items()
    ]
    return ["", "Vulnerability per gated layer (mean |f(x) - f(x_adv)|):",
            "", *markdown_table(("layer", "white-box", "black-box"), rows)]


def _sweep_tables(sweeps):
    if not sweeps:
        return []
    eps, steps = sweeps["epsilon"], sweeps["steps"]
    return [
        "", (f"Sweeps on the first {sweeps['examples']:,} examples (clean "
        f"{_percent(sweeps['clean_acc'])} %):"), "",
        f"PGD-{eps['num_steps']}, step {eps['step_size']}:", "",
        *markdown_table(
            ("eps", *(f"{v:g}" for v in eps["values"])),
            [("accuracy %", *(_percent(a) for a in eps["acc"]))]),
        "", f"eps {steps['epsilon']:g}, step {steps['step_size']:g}:", "",
        *markdown_table(
            ("steps", *steps["values"]),
            [("accuracy %", *(_percent(a) for a in steps["acc"]))]),
    ]


def _check_table(checks):
    if not checks:
        return ["", "Sanity checks: not run."]
    results = {True: "passed", False: "**FAILED**", None: "skipped"}
    return ["", *markdown_table(
        ("sanity check", "result", "detail"),
        [(name, results[check["passed"]], check["detail"])
         for name, check in checks.items()])]


def write_report(report, prefix, overwrite=False, others=None, title=None):
    """Writes JSON, markdown and the plots; returns the written paths.

    others: {name: report} of further models drawn in the same plots.
    """
    check_writable(prefix, overwrite)
    paths = report_paths(prefix)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    written = [paths["json"], paths["markdown"]]
    files.write_json(paths["json"], report)
    files.write_text(paths["markdown"], format_report(report, title))
    reports = {title or "this model": report, **(others or {})}
    curves = {
        name: (r["sweeps"]["epsilon"]["values"], r["sweeps"]["epsilon"]["acc"])
        for name, r in reports.items() if r.get("sweeps")
    }
    if curves:
        written.append(plot_accuracy_vs_epsilon(
            curves, paths["eps_plot"],
            xlabel=f"eps ({report['settings']['norm']})"))
    units = {name: r["vulnerability_units"]["white"]
             for name, r in reports.items()
             if r.get("vulnerability_units", {}).get("white")}
    if units:
        written.append(plot_vulnerability_distribution(
            units, paths["vulnerability_plot"]))
    return written
