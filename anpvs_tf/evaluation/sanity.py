"""Sanity checks that expose gradient masking in a robustness evaluation.

A robust accuracy is an upper bound that a weak attack makes loose; a
network whose gradients are hidden (non-differentiable steps, saturated
outputs, stochastic masks) fools weak attacks. These checks, from the
checklist of Carlini et al. (2019, "On evaluating adversarial
robustness") and Athalye et al. (2018), catch the usual symptoms. Each
returns {"passed": bool | None, "detail": str, ...the numbers it used};
None means it could not run (its inputs were not measured).
"""

import sys

# Slack of the comparisons between two attacks' accuracies on the same
# examples: 0.5 percentage points (5 examples in 1,000).
TOLERANCE = 0.005


def _result(passed, detail, **values):
    return {"passed": None if passed is None else bool(passed),
            "detail": detail, **values}


def skipped(reason):
    return _result(None, f"skipped: {reason}")


def zero_epsilon_equals_clean(clean_acc, zero_epsilon_acc):
    """An attack with eps = 0 cannot change an image: same accuracy, exactly.

    A difference means the evaluation itself is random or the attack
    leaves the threat model.
    """
    passed = zero_epsilon_acc == clean_acc
    return _result(
        passed,
        f"eps 0 accuracy {zero_epsilon_acc:.4f} vs clean {clean_acc:.4f}",
        clean_acc=clean_acc, zero_epsilon_acc=zero_epsilon_acc)


def non_increasing(parameter, values, accuracies, tolerance=TOLERANCE):
    """A larger ball (or more steps) can only make the attack stronger.

    Fails when any later point's accuracy exceeds an earlier one's by more
    than `tolerance`, the signature of an attack that gets lost.
    """
    worst_rise, where = 0.0, None
    for i, earlier in enumerate(accuracies):
        for j in range(i + 1, len(accuracies)):
            rise = accuracies[j] - earlier
            if rise > worst_rise:
                worst_rise, where = rise, (values[i], values[j])
    passed = worst_rise <= tolerance
    detail = (f"accuracy never rises with {parameter}" if where is None
              else f"largest rise {100 * worst_rise:.2f} points, from "
                   f"{parameter} {where[0]} to {where[1]}")
    return _result(passed, detail, values=list(values),
                   accuracies=list(accuracies), tolerance=tolerance)


def large_epsilon_at_chance(accuracy, epsilon, num_classes):
    """With a ball that covers the whole image space, every image can be
    turned into any other: accuracy must fall to chance (1 / classes) or
    below. Higher means the attack cannot follow the gradient."""
    chance = 1.0 / num_classes
    return _result(
        accuracy <= chance,
        f"accuracy {accuracy:.4f} at eps {epsilon} (chance {chance:.4f})",
        accuracy=accuracy, epsilon=epsilon, chance=chance)


def blackbox_not_below_whitebox(blackbox_acc, whitebox_acc,
                                tolerance=TOLERANCE):
    """A white-box attack sees the target's gradient; a transfer attack
    does not. Transfer winning means the target's gradient is useless."""
    return _result(
        blackbox_acc >= whitebox_acc - tolerance,
        f"black-box {blackbox_acc:.4f} vs white-box {whitebox_acc:.4f}",
        blackbox_acc=blackbox_acc, whitebox_acc=whitebox_acc,
        tolerance=tolerance)


def apgd_not_weaker_than_pgd(apgd_accs, pgd_acc, tolerance=TOLERANCE):
    """APGD adapts its step size and should match or beat fixed-step PGD;
    if it does not, its budget or the loss landscape is suspect."""
    weaker = {name: acc for name, acc in apgd_accs.items()
              if acc > pgd_acc + tolerance}
    detail = ", ".join(f"{name} {acc:.4f}" for name, acc in apgd_accs.items())
    return _result(
        not weaker, f"{detail} vs PGD {pgd_acc:.4f}",
        apgd_accs=dict(apgd_accs), pgd_acc=pgd_acc, tolerance=tolerance)


def failed(checks):
    return [name for name, check in checks.items()
            if check["passed"] is False]


def warn_if_failed(checks, stream=None):
    """Prints a loud banner naming every failed check; returns them."""
    names = failed(checks)
    if names:
        stream = stream or sys.stderr
        bar = "!" * 72
        lines = [bar, ("WARNING: robustness sanity checks FAILED. The robust "
                 "accuracy below may"), ("be an overestimate (gradient "
                 "masking or a broken evaluation):")]
        lines += [f"  - {name}: {checks[name]['detail']}" for name in names]
        print("\n".join([*lines, bar]), file=stream)
    return names
