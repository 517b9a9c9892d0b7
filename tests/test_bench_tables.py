"""The same-budget benchmarks' tables lead with the worst case and name
what was run (bench/budget.py, shared by mnist_budget, fashion_budget,
fashion_tuned and seeds)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import budget  # noqa: E402


def _results(worst, pgd, steps=40, strong=True):
    return {
        "attack": {"num_steps": steps}, "pgd_acc": pgd, "clean_acc": 0.9,
        "vulnerability": 0.01, "unit_sparsity": 70.0, "memory_pct": 10.0,
        "flops_speedup": 5.0, "params": 1234, "train_seconds": 60.0,
        "train_examples": 5000, "test_examples": 10000,
        **({"strong": {"examples": 10000, "worst_case_acc": worst,
                       "apgd_ce_acc": worst + 0.01,
                       "apgd_dlr_acc": worst + 0.02}} if strong else {}),
    }


def test_headline_names_pgd_by_its_steps_and_lifts_the_strong_suite():
    row = budget.headline(_results(0.6, 0.8, steps=20))
    assert row["pgd20_acc"] == 0.8 and "pgd40_acc" not in row
    assert row["worst_case_acc"] == 0.6 and row["strong_examples"] == 10000
    plain = budget.headline(_results(0.6, 0.8, strong=False))
    assert plain["worst_case_acc"] is None
    assert plain["strong_examples"] is None


def test_the_table_leads_with_the_worst_case_and_checks_use_it():
    results = {name: budget.headline(_results(worst, pgd))
               for name, worst, pgd in (("standard", 0.0, 0.0),
                                        ("at", 0.50, 0.60),
                                        ("anp_vs", 0.495, 0.70))}
    summary = budget.report(results, ("standard", "at", "anp_vs"), {}, 10)
    header = next(line for line in budget.markdown(summary, "t").splitlines()
                  if line.startswith("| method"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[1:5] == ["worst case %", "APGD-CE %", "APGD-DLR %",
                            "PGD-40 %"]
    # ANP-VS is 10 PGD points above AT but 0.5 worst-case points below.
    assert summary["checks"]["anp_vs_worst_case_at_least_at"] is False
    assert summary["checks"]["anp_vs_worst_case_at_least_at_minus_1pt"]
    assert "on 10,000 test images" in budget.markdown(summary, "t")


def test_a_fashion_variant_trains_with_its_extra_overrides(monkeypatch):
    """fashion_budget.run(name, extra): the extra overrides reach the run
    (they were once dropped for ANP-VS variants, so a "masked" variant
    trained the compact network)."""
    from absl import flags

    import fashion_budget

    flags.FLAGS.mark_as_parsed()
    calls = {}
    monkeypatch.setattr(
        budget, "run_method",
        lambda entry, method, overrides, *args: calls.update(
            method=method, overrides=overrides))
    monkeypatch.setattr(fashion_budget, "decay_fractions",
                        lambda first, epochs: ())
    fashion_budget.run("anp_vs_masked",
                       {"train.compact_fine_tune": False})
    assert calls["method"] == "anp_vs"
    assert calls["overrides"]["train.compact_fine_tune"] is False
    fashion_budget.run("anp_vs_gate3")
    assert calls["overrides"]["train.gate_epochs"] == 3


def _seed_rows(at, anp_vs):
    return {"at": budget.headline(_results(at, at + 0.1)),
            "anp_vs": budget.headline(_results(anp_vs, anp_vs + 0.1))}


def test_over_seeds_reports_medians_spreads_and_where_the_claim_holds():
    summary = budget.over_seeds({0: _seed_rows(0.60, 0.62),
                                 1: _seed_rows(0.58, 0.55),
                                 2: _seed_rows(0.64, 0.65)})
    assert summary["worst_case"]["at"] == pytest.approx(
        {"median": 60.0, "min": 58.0, "max": 64.0, "range": 6.0})
    assert summary["worst_case"]["anp_vs"]["median"] == 62.0
    gaps = summary["worst_case_gap_points"]
    assert round(gaps["min"], 6) == -2.0 and round(gaps["max"], 6) == 3.0
    # ANP-VS at least as robust as AT at seeds 0 and 2, not at seed 1.
    assert summary["seeds_anp_vs_at_least_at"] == 2
    text = budget.seeds_markdown(summary, "t", {"at": "AT",
                                                "anp_vs": "ANP-VS"})
    header, _, first = [line for line in text.splitlines()
                        if line.startswith("|")][:3]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:4] == ["seed", "AT worst case %", "ANP-VS worst case %",
                           "gap (points)"]
    assert [c.strip() for c in first.strip("|").split("|")][:4] == [
        "0", "60.00", "62.00", "-2.00"]
    assert "ANP-VS at least as robust as AT at 2 of 3 seeds" in text


def test_report_of_tuned_rows_only_checks_nothing_it_cannot():
    """mnist_budget --rows=at_tuned,anp_vs_tuned: no paper rows, so no
    paper checks; ungated supplementary rows get no ANP-VS checks."""
    results = {"at_tuned": budget.headline(_results(0.6, 0.7)),
               "anp_vs_tuned": budget.headline(_results(0.62, 0.7))}
    summary = budget.report(results, (), {"at_tuned": "n",
                                          "anp_vs_tuned": "n"}, 10,
                            first="at_tuned")
    assert summary["checks"] == {} and summary["checks_supplementary"] == {}
    assert summary["supplementary"]["anp_vs_tuned"]["worst_case_acc"] == 0.62


MNIST_SEED_PROBE = """
import json, sys
sys.path[:0] = ["bench", "."]
from absl import flags
import budget, mnist_budget
flags.FLAGS(["probe", "--seed=2", "--rows=anp_vs"])
calls = []
budget.run_method = lambda entry, method, overrides, runs_dir, name, *a: (
    calls.append([name, overrides, runs_dir]))
mnist_budget.run("standard")
mnist_budget.run("anp_vs")
print(json.dumps(calls))
"""


def test_another_mnist_seed_trains_every_row_with_it():
    """mnist_budget --seed: the seed reaches every run, runs go to their
    own folder, and a standard run that is only the gated rows' base skips
    the strong suite. (A subprocess: mnist_budget and fashion_budget
    define the same absl flags.)"""
    import json

    out = subprocess.run([sys.executable, "-c", MNIST_SEED_PROBE], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    (_, base, runs_dir), (_, gated, _) = json.loads(out.splitlines()[-1])
    assert runs_dir == "bench/runs/mnist_budget_seed2"
    assert base["train.seed"] == gated["train.seed"] == 2
    assert base["eval.strong_examples"] == 0
    assert "eval.strong_examples" not in gated


def _seed_report(rows, path):
    """A benchmark's report of `rows` ({name: (worst, pgd) or None for a
    PGD-only row}) at `path`, as bench/budget.py writes it."""
    import json

    results = {name: budget.headline(_results(*(scores or (0.5, 0.7)),
                                              strong=scores is not None))
               for name, scores in rows.items()}
    summary = budget.report(results, (), dict.fromkeys(rows, "note"), 10,
                            first=next(iter(rows)))
    summary["hyperparameters"] = {
        name: {"overrides": {}, "chosen": name} for name in rows}
    path.write_text(json.dumps(summary))


def test_seeds_compares_the_methods_asked_for_seed_by_seed(tmp_path):
    """seeds --methods: a method run at fewer seeds (here TRADES,
    at none) does not block the AT vs ANP-VS comparison, and the table
    names only the methods compared."""
    import json

    for seed, (at, anp) in enumerate([(0.60, 0.62), (0.64, 0.61)]):
        name = "r.json" if seed == 0 else f"r_seed{seed}.json"
        _seed_report({"at_tuned": (at, 0.7), "anp_vs_tuned": (anp, 0.7)},
                     tmp_path / name)
    command = [sys.executable, "bench/seeds.py", "--seeds=0,1",
               f"--results={tmp_path / 'r'}", f"--output={tmp_path / 'o'}"]
    refused = subprocess.run(command, cwd=ROOT, capture_output=True,
                             text=True)
    assert refused.returncode != 0
    assert "no trades_tuned row" in refused.stderr + refused.stdout
    subprocess.run(command + ["--methods=at_tuned,anp_vs_tuned"], cwd=ROOT,
                   capture_output=True, text=True, check=True)
    out = json.loads((tmp_path / "o.json").read_text())
    assert set(out["worst_case"]) == {"at_tuned", "anp_vs_tuned"}
    assert out["worst_case"]["at_tuned"]["median"] == pytest.approx(62.0)
    assert out["seeds_anp_vs_at_least_at"] == 1
    table = (tmp_path / "o.md").read_text()
    assert "TRADES" not in table and "ANP-VS worst case %" in table


def test_seeds_merges_a_seeds_reports_and_refuses_pgd_only_rows(tmp_path):
    """seeds --results=a,b: a method trained into a report of its own
    (fashion_tuned's TRADES) joins the others of its seed; a row scored
    with PGD-40 alone (no worst case) is refused with the command that
    scores it, not compared."""
    import json

    _seed_report({"at": (0.60, 0.7), "anp_vs": (0.62, 0.7)},
                 tmp_path / "a.json")
    _seed_report({"trades": (0.66, 0.7)}, tmp_path / "b.json")
    _seed_report({"at": (0.58, 0.7), "anp_vs": None},
                 tmp_path / "a_seed1.json")
    _seed_report({"trades": (0.64, 0.7)}, tmp_path / "b_seed1.json")
    command = [sys.executable, "bench/seeds.py", "--benchmark=fashion_budget",
               f"--results={tmp_path / 'a'},{tmp_path / 'b'}",
               f"--output={tmp_path / 'o'}"]
    subprocess.run(command + ["--seeds=0"], cwd=ROOT, capture_output=True,
                   text=True, check=True)
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["worst_case"]["trades"]["median"] == pytest.approx(66.0)
    assert out["seeds"]["0"]["worst_case_gap_points"] == pytest.approx(-2.0)
    refused = subprocess.run(command + ["--seeds=0,1"], cwd=ROOT,
                             capture_output=True, text=True)
    assert refused.returncode != 0
    message = refused.stderr + refused.stdout
    assert "seed 1's reports have no anp_vs row with a worst case" in message
    assert f"--output={tmp_path / 'a'}_seed1" in message
    assert "Traceback" not in message


def _quickstart_row(worst, clean=0.97):
    """A row of bench/quickstart.py's report (no vulnerability measured)."""
    return {"command": "python train.py", "worst_case_acc": worst,
            "apgd_ce_acc": worst + 0.01, "apgd_dlr_acc": worst + 0.02,
            "pgd40_acc": worst + 0.05, "clean_acc": clean,
            "unit_sparsity": 63.0, "flops_speedup": 9.0, "params": 60000,
            "train_seconds": 240.0, "worst_case_examples": 1000}


def test_seeds_reads_quickstart_reports_with_its_own_layout(tmp_path):
    """seeds --benchmark=quickstart: the main command's row is the
    report's top level and AT's sits under "at"; a seed whose report lacks
    a baseline is refused with the quickstart command that trains it."""
    import json

    for seed, (anp, at) in enumerate([(0.78, 0.80), (0.79, 0.77),
                                      (0.76, 0.78)]):
        name = "q.json" if seed == 0 else f"q_seed{seed}.json"
        report = {**_quickstart_row(anp), "at": _quickstart_row(at),
                  "seed": seed or None, "cpu_cores": 2}
        (tmp_path / name).write_text(json.dumps(report))
    (tmp_path / "q_seed3.json").write_text(json.dumps(_quickstart_row(0.7)))
    command = [sys.executable, "bench/seeds.py", "--benchmark=quickstart",
               "--methods=anp_vs,at", f"--results={tmp_path / 'q'}",
               f"--output={tmp_path / 'o'}"]
    subprocess.run(command + ["--seeds=0,1,2"], cwd=ROOT,
                   capture_output=True, text=True, check=True)
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["worst_case"]["anp_vs"]["median"] == pytest.approx(78.0)
    assert out["worst_case"]["at"]["median"] == pytest.approx(78.0)
    assert out["worst_case_gap_points"]["median"] == pytest.approx(2.0)
    assert out["seeds_anp_vs_at_least_at"] == 1
    assert "anp_vs_vulnerability_below_at" not in out["seeds"]["1"]["checks"]
    refused = subprocess.run(command + ["--seeds=0,3"], cwd=ROOT,
                             capture_output=True, text=True)
    message = refused.stderr + refused.stdout
    assert refused.returncode != 0
    assert ("python bench/quickstart.py --seed=3 --baselines=at "
            f"--output={tmp_path / 'q'}_seed3") in message


FASHION_TUNED_PROBE = """
import json, sys
sys.path[:0] = ["bench", "."]
from absl import flags
import budget, fashion_tuned
import models
flags.FLAGS(["probe", "--seed=1"])
fashion_tuned.TUNING_RESULTS = sys.argv[1]
calls = []
budget.run_method = lambda entry, method, overrides, runs_dir, name, *a: (
    calls.append([entry, method, name, overrides, runs_dir]))
fashion_tuned.run("standard")
fashion_tuned.run("at_tuned")
print(json.dumps(calls))
"""


def test_fashion_tuned_trains_the_searched_point_on_the_searched_images(
        tmp_path):
    """fashion_tuned: a tuned row gets its search's best trial, the data
    the search trained on (the IDX files, the first 5,000 images) and the
    seed; the standard base skips the strong suite; a missing search is
    a one-line error naming the command that writes it."""
    import json

    search = tmp_path / "tuning_fashion_mnist.json"
    command = [sys.executable, "-c", FASHION_TUNED_PROBE, str(search)]
    refused = subprocess.run(command, cwd=ROOT, capture_output=True,
                             text=True)
    assert refused.returncode != 0
    assert "--dataset=fashion_mnist" in refused.stderr.splitlines()[-1]
    search.write_text(json.dumps({
        "setup": {"budget": {"max_trials": 3}},
        "methods": {"at": {"trials": [{
            "trial_id": "02",
            "hyperparameters": {"weight_lr": 0.004}}]}}}))
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    (entry, _, _, base, runs_dir), (_, method, name, at, _) = json.loads(
        out.splitlines()[-1])
    assert entry == "lenet5_caffe_fashion_mnist" and method == "at"
    assert runs_dir == "bench/runs/fashion_tuned_seed1"
    assert base["eval.strong_examples"] == 0
    assert "eval.strong_examples" not in at
    assert at["train.weight_learning_rate"] == pytest.approx(0.004)
    for overrides in (base, at):
        assert overrides["data.source"] == "idx"
        assert overrides["data.train_examples"] == 5000
        assert overrides["train.seed"] == 1


def test_rows_report_checks_tuned_rows_wherever_they_are_listed():
    """mnist_budget lists tuned rows beside the paper's as supplementary,
    fashion_tuned as its methods: tuned AT vs tuned ANP-VS is checked on
    the worst case either way, and each row keeps how it was chosen."""
    results = {"standard": budget.headline(_results(0.0, 0.0)),
               "at_tuned": budget.headline(_results(0.64, 0.76)),
               "anp_vs_tuned": budget.headline(_results(0.62, 0.80))}

    def recipe(name):
        return name, {"train.seed": 0}, f"chosen for {name}"

    for main_rows in (("standard",), tuple(results)):
        summary = budget.rows_report(results, main_rows, recipe, 60)
        assert set(summary["methods"]) == set(main_rows)
        assert summary["checks_tuned"]["anp_vs_worst_case_at_least_at"] \
            is False
        assert summary["hyperparameters"]["at_tuned"]["chosen"] == (
            "chosen for at_tuned")
    assert "- anp_vs_tuned: chosen for anp_vs_tuned." in budget.markdown(
        summary, "t")


def test_train_rows_trains_the_base_first_or_only_the_run_asked_for():
    ran = []
    results = budget.train_rows(lambda name: ran.append(name) or name,
                                ["at_tuned", "anp_vs_tuned"],
                                needs_base=True)
    assert ran == ["standard", "at_tuned", "anp_vs_tuned"]
    assert results == {"at_tuned": "at_tuned", "anp_vs_tuned": "anp_vs_tuned"}
    ran.clear()
    assert budget.train_rows(ran.append, ["at_tuned"], only="standard",
                             needs_base=True) is None
    assert ran == ["standard"]


@pytest.mark.parametrize("method", ["at", "trades"])
def test_a_baseline_trains_what_its_seed_study_validated(method):
    """The README's AT and TRADES rows run the search's trial of each
    with the refinement its validation seed study kept
    (bench/baselines.py REFINEMENTS), the command's overrides read as
    train.py reads them."""
    import json
    import shlex

    import baselines
    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment

    command = shlex.split(baselines.matched_baseline_command(method, 5000))
    recipe = get_experiment(next(a.split("=", 1)[1] for a in command
                                 if a.startswith("--model=")))
    overrides = dict(config_lib.parse_override(a.split("=", 1)[1])
                     for a in command if a.startswith("--override="))
    ran = config_lib.replace(recipe, **overrides)
    study = json.loads(baselines.REFINEMENTS[method].read_text())
    search = json.loads(baselines.SEARCH.read_text())
    assert study["trials"][method].startswith(
        search[f"{method}_chosen"] + "__")
    refinement = study[f"{method}_overrides"]
    assert refinement and config_lib.replace(recipe, **refinement) != recipe
    assert config_lib.replace(ran, **refinement) == ran
    chosen = search[f"{method}_trials"][search[f"{method}_chosen"]][
        "overrides"]
    assert ran.train.weight_learning_rate == chosen[
        "train.weight_learning_rate"]


SEED_STUDY_PROBE = """
import json, sys
sys.path[:0] = ["bench", "."]
from absl import flags
import budget_seeds
flags.FLAGS(["probe", *sys.argv[1:]])
import models
report = json.load(open("bench/results/budget_search.json"))
configs = budget_seeds.chosen_configs(report, flags.FLAGS.baseline)
print(json.dumps({m: [name, config.train.method,
                      config.train.weight_learning_rate,
                      config.train.decay_fractions, config.loss.trades_weight]
                  for m, (name, config) in configs.items()}))
"""


def test_a_seed_study_refines_the_trades_baseline_it_is_asked_for():
    """bench/budget_seeds.py --baseline=trades: the search's chosen TRADES
    trial with --trades_override on top, beside the unchanged ANP-VS
    trial; AT is the default."""
    import json

    def configs(*argv):
        out = subprocess.run(
            [sys.executable, "-c", SEED_STUDY_PROBE, *argv], cwd=ROOT,
            capture_output=True, text=True, check=True).stdout
        return json.loads(out.splitlines()[-1])

    search = json.loads(
        (ROOT / "bench/results/budget_search.json").read_text())
    chosen = search["trades_chosen"]
    trades = configs("--baseline=trades",
                     "--trades_override=train.decay_fractions=0.7,0.9")
    assert set(trades) == {"anp_vs", "trades"}
    assert trades["trades"] == [
        f"{chosen}__train.decay_fractions=0.7,0.9", "trades",
        search["trades_trials"][chosen]["overrides"][
            "train.weight_learning_rate"], [0.7, 0.9],
        search["trades_shared_overrides"]["loss.trades_weight"]]
    at = configs()
    assert set(at) == {"anp_vs", "at"} and at["at"][0] == search["at_chosen"]
    assert at["anp_vs"] == trades["anp_vs"]
