"""The final numbers of a training run (results.json), from the engine.

train.py scores its model with the same engine as evaluate.py
(engine.RobustnessEvaluator), so the two agree on the same images,
attack and seed.
"""

import time

import numpy as np

from anpvs_tf.complexity import complexity_report
from anpvs_tf.evaluation.classifier import Classifier
from anpvs_tf.evaluation.engine import RobustnessEvaluator
from anpvs_tf.evaluation.engine import attack_name
from anpvs_tf.evaluation.engine import vulnerability_summary
from anpvs_tf.evaluation.suites import SuiteSettings
from anpvs_tf.evaluation.suites import attack_entry
from anpvs_tf.evaluation.suites import run_suite
from anpvs_tf.evaluation.tables import markdown_table


def evaluate_model(model, images, labels, eval_config, seed=0,
                   log=lambda message: None):
    """Clean and PGD accuracy, vulnerability and complexity, as a dict;
    with `eval.strong_examples`, the strong suite's figures as "strong".

    Runs over the whole given test set, in a fixed order (the reference
    code scored a different window of the test set each epoch: SPEC
    pitfall 6), with inference-mode gates. Accuracies are fractions in
    [0, 1]. seed: of the attacks' random start (evaluate.py --seed).
    When the strong suite covers the whole set, its PGD is this one's
    (the same attack on the same images and seed), not run again.
    """
    attack = eval_config.attack
    evaluator = RobustnessEvaluator(
        Classifier(model.network), eval_config.batch_size, seed)
    start = time.perf_counter()
    clean_correct = evaluator.clean_correct(images, labels)
    pgd = attack_entry(evaluator, attack, images, labels)
    adversarial_correct, units, _ = pgd
    seconds = time.perf_counter() - start
    results = {
        "test_examples": int(len(labels)),
        "attack": {
            "name": attack_name(attack),
            "epsilon": attack.epsilon,
            "step_size": attack.step_size,
            "num_steps": attack.num_steps,
            "random_start": attack.random_start,
        },
        "clean_acc": float(np.mean(clean_correct)),
        "pgd_acc": float(np.mean(adversarial_correct)),
        "vulnerability": vulnerability_summary(units)["overall"],
        "eval_seconds": seconds,
        **complexity_report(model.network),
    }
    if eval_config.strong_examples:
        count = min(eval_config.strong_examples, len(labels))
        log(f"Strong evaluation on the first {count} test examples "
            f"(PGD-{attack.num_steps}, APGD-CE and APGD-DLR of "
            f"{eval_config.apgd_steps} iterations, worst case per "
            "example)")
        results["strong"] = strong_evaluation(
            model, images, labels, eval_config, seed,
            log=lambda line: log(f"  {line}"),
            pgd=pgd if count == len(labels) else None)
    return results


STRONG_ATTACKS = ("pgd", "apgd_ce", "apgd_dlr")


def strong_evaluation(model, images, labels, eval_config, seed=0,
                      log=lambda message: None, pgd=None):
    """APGD-CE, APGD-DLR and PGD on the first `eval.strong_examples`
    images, and the per-example worst case over them and the clean image:
    the figure that PGD alone overstates. The same engine and settings as
    `evaluate.py --attacks=pgd,apgd_ce,apgd_dlr`. pgd: an attack_entry of
    eval.attack already run on exactly these images with this seed."""
    count = min(eval_config.strong_examples, len(labels))
    attack = eval_config.attack
    settings = SuiteSettings(
        suite="paper", attacks=STRONG_ATTACKS, norm=attack.norm,
        epsilon=attack.epsilon, step_size=attack.step_size,
        pgd_steps=attack.num_steps, apgd_steps=eval_config.apgd_steps,
        random_start=attack.random_start, sanity_checks=False,
        batch_size=eval_config.batch_size, seed=seed)
    if pgd is not None and settings.attack("pgd") != attack:
        pgd = None  # another PGD than the suite's: run the suite's
    start = time.perf_counter()
    report = run_suite(Classifier(model.network), images[:count],
                       labels[:count], settings, complexity=False, log=log,
                       scored={"pgd": pgd} if pgd is not None else None)
    accuracies = {name: entry["acc"]
                  for name, entry in report["attacks"].items()}
    return {
        "examples": count,
        "clean_acc": report["clean_acc"],
        "apgd_steps": eval_config.apgd_steps,
        "attacks": accuracies,
        "apgd_ce_acc": accuracies[attack_name(settings.attack("apgd_ce"))],
        "apgd_dlr_acc": accuracies[
            attack_name(settings.attack("apgd_dlr"))],
        "worst_case_acc": report["worst_case_acc"],
        "worst_case_over": report["worst_case_over"],
        "seconds": time.perf_counter() - start,
    }


def format_results(results):
    """A small markdown table of the headline numbers."""
    attack = results["attack"]
    rows = [
        ("clean accuracy", f"{100 * results['clean_acc']:.2f} %"),
        (
            f"PGD-{attack['num_steps']} accuracy (eps {attack['epsilon']})",
            f"{100 * results['pgd_acc']:.2f} %",
        ),
        ("vulnerability (white-box)", f"{results['vulnerability']:.4f}"),
        (
            "active units",
            f"{results['active_units']} / {results['gated_units']}",
        ),
        ("unit sparsity", f"{results['unit_sparsity']:.2f} %"),
        ("memory", f"{results['memory_pct']:.2f} %"),
        ("FLOPs speed-up", f"{results['flops_speedup']:.2f}x"),
        (
            "parameters (pruned / full)",
            f"{results['params']:,} / {results['params_full']:,}",
        ),
        # A search's base model is scored on the validation split.
        (f"{results.get('evaluation_split', 'test')} examples",
         f"{results['test_examples']:,}"),
    ]
    strong = results.get("strong")
    if strong:
        subset = f"first {strong['examples']:,} test examples"
        rows[1:1] = [
            (f"worst case over clean, {', '.join(strong['attacks'])} "
             f"({subset})", f"{100 * strong['worst_case_acc']:.2f} %"),
            (f"APGD-CE ({strong['apgd_steps']} iterations, {subset})",
             f"{100 * strong['apgd_ce_acc']:.2f} %"),
            (f"APGD-DLR ({strong['apgd_steps']} iterations, {subset})",
             f"{100 * strong['apgd_dlr_acc']:.2f} %"),
        ]
    lines = markdown_table(("metric", "value"), rows)
    per_gate = results.get("active_units_per_gate") or {}
    if per_gate:
        lines.append("")
        lines.append("active units per gate: " + ", ".join(
            f"{name} {count}" for name, count in per_gate.items()
        ))
    return "\n".join(lines)
