"""Robustness and complexity figures of a trained model."""

import time

from anpvs_tf import data
from anpvs_tf.complexity import complexity_report


def evaluate_model(model, images, labels, eval_config):
    """Clean and PGD accuracy, vulnerability and complexity, as a dict.

    Runs over the whole given test set, in a fixed order (the reference
    code scored a different window of the test set each epoch: SPEC
    pitfall 6). Accuracies are fractions in [0, 1].
    """
    attack = eval_config.attack
    model.set_eval_attack(attack)
    dataset = data.eval_dataset(images, labels, eval_config.batch_size)
    start = time.perf_counter()
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    seconds = time.perf_counter() - start
    report = complexity_report(model.network)
    return {
        "test_examples": int(len(labels)),
        "attack": {
            "name": f"pgd{attack.num_steps}",
            "epsilon": attack.epsilon,
            "step_size": attack.step_size,
            "num_steps": attack.num_steps,
            "random_start": attack.random_start,
        },
        "clean_acc": float(logs["clean_accuracy"]),
        "pgd_acc": float(logs["adv_accuracy"]),
        "vulnerability": float(logs["vs_loss"]),
        "eval_seconds": seconds,
        **report,
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
        ("test examples", f"{results['test_examples']:,}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |",
             f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    per_gate = results.get("active_units_per_gate") or {}
    if per_gate:
        lines.append("")
        lines.append("active units per gate: " + ", ".join(
            f"{name} {count}" for name, count in per_gate.items()
        ))
    return "\n".join(lines)
