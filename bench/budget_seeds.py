"""The budget search's chosen ANP-VS trial against a baseline, by seed.

bench/budget_search.py picks one trial out of dozens on 1,000 validation
images, where trials of equal settings scatter by about 2 points of
worst case; this retrains the chosen trial (`anp_vs_chosen`) and the
chosen AT trial (`at_chosen`, the same training work; `trades_chosen`
with --baseline=trades) of its committed report at other seeds
(`train.seed`; seed 0 is the search's own run) on the same split, and
reports each seed's worst case, clean accuracy and unit sparsity, every
method's median and spread, and the baseline-minus-ANP-VS gaps. The test
set is never read.

    python bench/budget_seeds.py --seeds=0,1,2   # ~5 min per new run

Trials resume from budget_search's --runs_dir; a seed the committed
report already holds for the same two trials is read from it, so seeds
run in different sessions add up (a shorter --seeds keeps them). Writes
bench/results/budget_seeds.{json,md}.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import budget_search as search  # noqa: E402  (defines the search's flags)
from anpvs_tf import config as config_lib  # noqa: E402
from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402
from anpvs_tf.methods import FROM_BASE_METHODS  # noqa: E402
from anpvs_tf.registry import get_experiment  # noqa: E402
from budget import spread  # noqa: E402

flags.DEFINE_list("seeds", ["0", "1", "2"],
                  "Seeds to train (where no report holds them) and compare; "
                  "the seeds an earlier report holds for both trials stay in "
                  "the table too, so a shorter list never drops rows.")
flags.DEFINE_string("seeds_output", "bench/results/budget_seeds",
                    "Output path without extension (.json and .md).")
flags.DEFINE_multi_string(
    "anp_vs_override", [],
    "section.field=value applied to the chosen ANP-VS trial (repeatable): "
    "a variant of it, named after them, against the same AT rows. Write it "
    "to its own --seeds_output.")
flags.DEFINE_multi_string(
    "at_override", [],
    "section.field=value applied to the chosen AT trial (repeatable): the "
    "same refinement for the baseline, against the same ANP-VS rows. Write "
    "it to its own --seeds_output (not budget_seeds*, which "
    "budget_variants.py reads as ANP-VS variants).")
flags.DEFINE_multi_string(
    "trades_override", [],
    "The same as --at_override for the TRADES baseline (with "
    "--baseline=trades; write it to a trades_seeds* --seeds_output).")
flags.DEFINE_enum(
    "baseline", "at", list(search.BASELINES),
    "Which of the search's chosen baselines the ANP-VS trial is compared "
    "with (and --<baseline>_override refines).")
flags.DEFINE_string(
    "reuse", "bench/results/budget_seeds",
    "A committed report (no extension) whose rows of the same trials are "
    "read instead of retrained, method by method.")
FLAGS = flags.FLAGS

KEYS = ("worst_case_acc", "clean_acc", "unit_sparsity", "flops_speedup",
        "train_seconds")


def override_texts(method):
    """--anp_vs_override or --at_override, as typed."""
    return {"anp_vs": FLAGS.anp_vs_override, "at": FLAGS.at_override,
            "trades": FLAGS.trades_override}[method]


def variant_overrides(method="anp_vs"):
    """--anp_vs_override (or --at_override) as {key: value}."""
    return dict(config_lib.parse_override(text)
                for text in override_texts(method))


def variant_name(method, trial):
    """A trial's name with its variant's overrides (the cache's key)."""
    return trial + "".join(f"__{text}" for text in override_texts(method))


def chosen_configs(report, baseline="at"):
    """{"anp_vs": (trial name, config), baseline: (...)} as the search ran
    them."""
    recipe = search.validation_config(config_lib.replace(
        get_experiment(search.PAPER), **search.START))
    anp_vs = report["anp_vs_chosen"]
    chosen = report[f"{baseline}_chosen"]
    baseline_config = config_lib.replace(recipe, **{
        **report[f"{baseline}_shared_overrides"], "train.method": baseline,
        "train.gate_epochs": None,
        **report[f"{baseline}_trials"][chosen]["overrides"],
        **variant_overrides(baseline)})
    return {"anp_vs": (variant_name("anp_vs", anp_vs), config_lib.replace(
                recipe, **{**search.ANP_VS_TRIALS[anp_vs],
                           **variant_overrides()})),
            baseline: (variant_name(baseline, chosen), baseline_config)}


def seed_row(name, config, seed):
    """One trial at `seed` (seed 0: the search's own, from its cache)."""
    config = config_lib.replace(config, **{"train.seed": seed})
    name = name if seed == 0 else f"{name}_seed{seed}"
    base_dir = (search.trained_base(config)[0]
                if config.train.method in FROM_BASE_METHODS else None)
    trial = search.run_trial(name, config, base_dir)
    return {key: trial[key] for key in KEYS}


def earlier_rows(configs):
    """{seed: {method: row}} of the committed reports (this output's and
    --reuse's) for each method whose trial they ran (a JSON file's keys
    are strings)."""
    rows = {}
    for stem in dict.fromkeys((FLAGS.reuse, FLAGS.seeds_output)):
        path = Path(f"{stem}.json")
        if not path.exists():
            continue
        earlier = files.read_json(path, "delete it to retrain every seed")
        for method, (name, _) in configs.items():
            if earlier["trials"].get(method) != name:
                continue
            for seed, entry in earlier["seeds"].items():
                rows.setdefault(int(seed), {})[method] = entry[method]
    return rows


def main(argv):
    del argv
    import models  # noqa: F401

    report = files.read_json(f"{FLAGS.output}.json",
                             "run bench/budget_search.py first")
    baseline = FLAGS.baseline
    name = search.NAMES[baseline]
    for method in set(search.NAMES) - {baseline}:
        if override_texts(method):
            sys.exit(f"--{method}_override refines the {method} baseline: "
                     f"add --baseline={method}")
    configs = chosen_configs(report, baseline)
    earlier = earlier_rows(configs)
    seeds = sorted({int(s) for s in FLAGS.seeds} | {
        seed for seed, entry in earlier.items()
        if entry.keys() >= configs.keys()})
    rows = {seed: {method: earlier.get(seed, {}).get(method)
                   or seed_row(trial, config, seed)
                   for method, (trial, config) in configs.items()}
            for seed in seeds}
    for entry in rows.values():
        entry["worst_case_gap_points"] = 100 * (
            entry[baseline]["worst_case_acc"]
            - entry["anp_vs"]["worst_case_acc"])
    summary = {
        "trials": {method: trial for method, (trial, _) in configs.items()},
        # The variant's settings on top of the chosen trials ({}: none).
        **{f"{method}_overrides": variant_overrides(method)
           for method in configs},
        "validation_examples": FLAGS.validation_examples,
        "seeds": rows,
        "worst_case": {method: spread([100 * rows[s][method]["worst_case_acc"]
                                       for s in seeds])
                       for method in configs},
        "clean": {method: spread([100 * rows[s][method]["clean_acc"]
                                  for s in seeds])
                  for method in configs},
        "worst_case_gap_points": spread(
            [rows[s]["worst_case_gap_points"] for s in seeds]),
    }
    files.write_json(f"{FLAGS.seeds_output}.json", summary)
    lines = [
        "The budget search's chosen ANP-VS trial "
        f"(`{configs['anp_vs'][0]}`) and its {name} baseline "
        f"(`{configs[baseline][0]}`, the same training work) by seed, on the "
        f"{FLAGS.validation_examples} held-out training images "
        "(`python bench/budget_seeds.py"
        + ("" if baseline == "at" else f" --baseline={baseline}")
        + "".join(f" --{method}_override={text}"
                  for method in configs
                  for text in override_texts(method))
        + "`; seed 0: " + "; ".join(
            f"{who}'s is " + ("its own run" if override_texts(method)
                              else "the search's run")
            for method, who in (("anp_vs", "ANP-VS"), (baseline, name)))
        + ").", "",
        *markdown_table(
            ("seed", f"{name} worst case %", "ANP-VS worst case %",
             "gap (points)", f"{name} clean %", "ANP-VS clean %",
             "ANP-VS unit sparsity %", "ANP-VS FLOPs reduction"),
            [(seed, f"{100 * r[baseline]['worst_case_acc']:.2f}",
              f"{100 * r['anp_vs']['worst_case_acc']:.2f}",
              f"{r['worst_case_gap_points']:.2f}",
              f"{100 * r[baseline]['clean_acc']:.2f}",
              f"{100 * r['anp_vs']['clean_acc']:.2f}",
              f"{r['anp_vs']['unit_sparsity']:.2f}",
              f"{r['anp_vs']['flops_speedup']:.2f}x")
             for seed, r in rows.items()]), "",
        *(f"{who} worst case %: median {s['median']:.2f}, "
          f"{s['min']:.2f}-{s['max']:.2f}; clean % median "
          f"{summary['clean'][method]['median']:.2f}."
          for method, who in ((baseline, name), ("anp_vs", "ANP-VS"))
          for s in (summary["worst_case"][method],)),
        f"Gap ({name} minus ANP-VS, worst-case points): median "
        f"{summary['worst_case_gap_points']['median']:.2f}, "
        f"{summary['worst_case_gap_points']['min']:.2f} to "
        f"{summary['worst_case_gap_points']['max']:.2f}.",
    ]
    files.write_text(f"{FLAGS.seeds_output}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
