"""The same-budget benchmarks' tables lead with the worst case and name
what was run (bench/budget.py, shared by mnist_budget, fashion_budget and
fashion_seeds)."""

import sys
from pathlib import Path

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
