"""The evaluation suites: which attacks, sweeps and checks run, and the
report they produce.

- paper: the columns of the paper's table: clean, PGD (white-box),
  black-box transfer, vulnerability (white and black, per gated layer) and
  the complexity figures; plus the cheap sanity checks.
- full: paper + FGSM, APGD-CE, APGD-DLR, the worst case over all attacks,
  sweeps over eps and steps, and every sanity check.
"""

import dataclasses
import math
import time

import numpy as np

from anpvs_tf.complexity import complexity_report
from anpvs_tf.config import AttackConfig
from anpvs_tf.evaluation import sanity
from anpvs_tf.evaluation.engine import RobustnessEvaluator
from anpvs_tf.evaluation.engine import attack_name
from anpvs_tf.evaluation.engine import attack_settings
from anpvs_tf.evaluation.engine import default_step_size
from anpvs_tf.evaluation.engine import vulnerability_summary

SUITES = ("paper", "full")
SUITE_ATTACKS = {
    "paper": ("pgd",),
    "full": ("fgsm", "pgd", "apgd_ce", "apgd_dlr"),
}


@dataclasses.dataclass(frozen=True)
class SuiteSettings:
    """Everything that decides the numbers of an evaluation."""

    suite: str = "full"
    # None: the suite's attacks. Names from config.ATTACK_METHODS.
    attacks: tuple | None = None
    norm: str = "linf"
    epsilon: float = 0.3
    # None: 2.5 * epsilon / pgd_steps (engine.default_step_size).
    step_size: float | None = 0.01
    pgd_steps: int = 40
    apgd_steps: int = 100
    restarts: int = 1
    random_start: bool = True
    # Sweeps (full suite) run on the first sweep_examples test examples,
    # with PGD of step 2.5 * eps / steps (eps sweep) or step_size (steps
    # sweep). None: defaults for the norm (the L-inf one ends at 1.0).
    sweep_epsilons: tuple | None = None
    sweep_steps: tuple = (1, 5, 10, 20, 40, 100)
    sweep_examples: int = 1000
    sanity_checks: bool = True
    tolerance: float = sanity.TOLERANCE
    batch_size: int = 500
    seed: int = 0

    @property
    def attack_methods(self):
        return tuple(self.attacks or SUITE_ATTACKS[self.suite])

    def attack(self, method):
        """The AttackConfig of one of the suite's attacks."""
        steps = self.apgd_steps if method.startswith("apgd") else (
            self.pgd_steps)
        step_size = self.step_size
        if step_size is None or method != "pgd":
            step_size = default_step_size(self.epsilon, steps)
        return AttackConfig(
            method=method, epsilon=self.epsilon, num_steps=steps,
            step_size=step_size, norm=self.norm, restarts=self.restarts,
            random_start=self.random_start)

    def blackbox_attack(self):
        """The paper's transfer attack: the white-box PGD, on the source."""
        return self.attack("pgd")


def covering_epsilon(norm, image_shape):
    """The smallest radius whose ball holds every image of [0, 1]^d."""
    return 1.0 if norm == "linf" else math.sqrt(math.prod(image_shape))


def sweep_epsilons(settings, image_shape):
    values = settings.sweep_epsilons
    if values is None:
        values = ((0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
                  if settings.norm == "linf"
                  else (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0))
    large = covering_epsilon(settings.norm, image_shape)
    return tuple(sorted({0.0, *values, large}))


class _Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def attack_entry(evaluator, attack, images, labels):
    """One attack's per-example correctness, per-unit vulnerability and
    report entry."""
    with _Timer() as timer:
        adversarial = evaluator.craft(attack, images, labels)
    correct, units = evaluator.score(images, labels, adversarial)
    return correct, units, {
        "settings": attack_settings(attack),
        "acc": float(np.mean(correct)),
        "vulnerability": vulnerability_summary(units),
        "seconds": timer.seconds,
    }


def _sweeps(evaluator, settings, images, labels):
    """Robust accuracy against eps and against the number of steps."""
    count = min(settings.sweep_examples, len(labels))
    images, labels = images[:count], labels[:count]
    base = settings.attack("pgd")
    epsilons = sweep_epsilons(settings, images.shape[1:])
    eps_acc = []
    for epsilon in epsilons:
        attack = dataclasses.replace(
            base, epsilon=epsilon,
            step_size=default_step_size(epsilon, base.num_steps))
        correct, _ = evaluator.score(
            images, labels, evaluator.craft(attack, images, labels))
        eps_acc.append(float(np.mean(correct)))
    # A fixed step size (the headline attack's), so more steps reach
    # farther and the attack can only get stronger.
    step_size = base.step_size
    steps_acc = []
    for steps in settings.sweep_steps:
        attack = dataclasses.replace(base, num_steps=steps)
        correct, _ = evaluator.score(
            images, labels, evaluator.craft(attack, images, labels))
        steps_acc.append(float(np.mean(correct)))
    clean = float(np.mean(evaluator.clean_correct(images, labels)))
    return {
        "examples": count,
        "clean_acc": clean,
        "epsilon": {"values": list(epsilons), "acc": eps_acc,
                    "num_steps": base.num_steps,
                    "step_size": "2.5 * eps / num_steps"},
        "steps": {"values": list(settings.sweep_steps), "acc": steps_acc,
                  "epsilon": base.epsilon, "step_size": step_size},
    }


def _zero_epsilon_acc(evaluator, settings, images, labels):
    """PGD at eps 0 on the sweep subset (the paper suite has no sweep)."""
    count = min(settings.sweep_examples, len(labels))
    images, labels = images[:count], labels[:count]
    attack = dataclasses.replace(settings.attack("pgd"), epsilon=0.0)
    correct, _ = evaluator.score(
        images, labels, evaluator.craft(attack, images, labels))
    clean = evaluator.clean_correct(images, labels)
    return float(np.mean(clean)), float(np.mean(correct))


def _sanity_checks(report, settings, num_classes):
    checks = {}
    sweeps = report.get("sweeps")
    tolerance = settings.tolerance
    if sweeps:
        eps = sweeps["epsilon"]
        checks["eps_zero_equals_clean"] = sanity.zero_epsilon_equals_clean(
            sweeps["clean_acc"], eps["acc"][eps["values"].index(0.0)])
        checks["non_increasing_in_eps"] = sanity.non_increasing(
            "eps", eps["values"], eps["acc"], tolerance)
        checks["non_increasing_in_steps"] = sanity.non_increasing(
            "steps", sweeps["steps"]["values"], sweeps["steps"]["acc"],
            tolerance)
        checks["large_eps_at_chance"] = sanity.large_epsilon_at_chance(
            eps["acc"][-1], eps["values"][-1], num_classes)
    elif "zero_epsilon" in report:
        zero = report["zero_epsilon"]
        checks["eps_zero_equals_clean"] = sanity.zero_epsilon_equals_clean(
            zero["clean_acc"], zero["acc"])
    attacks = report["attacks"]
    pgd_name = attack_name(settings.attack("pgd"))
    if report.get("blackbox") and pgd_name in attacks:
        checks["blackbox_not_below_whitebox"] = (
            sanity.blackbox_not_below_whitebox(
                report["blackbox"]["acc"], attacks[pgd_name]["acc"],
                tolerance))
    elif pgd_name in attacks:
        checks["blackbox_not_below_whitebox"] = sanity.skipped(
            "no black-box source model")
    apgd = {name: entry["acc"] for name, entry in attacks.items()
            if entry["settings"]["method"].startswith("apgd")}
    if apgd and pgd_name in attacks:
        checks["apgd_not_weaker_than_pgd"] = sanity.apgd_not_weaker_than_pgd(
            apgd, attacks[pgd_name]["acc"], tolerance)
    return checks


def run_suite(target, images, labels, settings, source=None,
              source_name=None, num_classes=10, complexity=True,
              log=lambda message: None, scored=None):
    """Evaluates `target` (a classifier.Classifier); returns the report.

    source: a separately trained Classifier for the black-box transfer
    attack (its PGD examples are fed to the target), or None.
    complexity: add the sparsity / memory / FLOPs figures (zoo networks).
    log: called with a line of progress after each stage.
    scored: {attack method: attack_entry(...)} of attacks already run on
    these images with these settings and seed, taken as they are rather
    than run twice.
    """
    evaluator = RobustnessEvaluator(target, settings.batch_size,
                                    settings.seed)
    clean_correct = evaluator.clean_correct(images, labels)
    report = {
        "suite": settings.suite,
        "settings": {**dataclasses.asdict(settings),
                     "attacks": list(settings.attack_methods)},
        "test_examples": len(labels),
        "seed": settings.seed,
        "gates": target.gates,
        "eot_samples": target.eot_samples,
        "clean_acc": float(np.mean(clean_correct)),
        "attacks": {},
    }
    survived = clean_correct.copy()
    unit_vulnerability = {}
    for method in settings.attack_methods:
        attack = settings.attack(method)
        name = attack_name(attack)
        correct, units, entry = (scored or {}).get(method) or attack_entry(
            evaluator, attack, images, labels)
        report["attacks"][name] = entry
        survived &= correct
        log(f"{name}: {100 * entry['acc']:.2f} % "
            f"({entry['seconds']:.0f} s)")
        if method == "pgd":
            unit_vulnerability["white"] = units
    pgd = report["attacks"].get(attack_name(settings.attack("pgd")))
    if pgd:
        report["pgd_acc"] = pgd["acc"]
        report["vulnerability_white"] = pgd["vulnerability"]["overall"]
    report["blackbox"] = None
    if source is not None:
        attack = settings.blackbox_attack()
        with _Timer() as timer:
            crafted = RobustnessEvaluator(
                source, settings.batch_size, settings.seed
            ).craft(attack, images, labels)
        correct, units = evaluator.score(images, labels, crafted)
        survived &= correct
        unit_vulnerability["black"] = units
        vulnerability = vulnerability_summary(units)
        report["blackbox"] = {
            "source": source_name, "settings": attack_settings(attack),
            "acc": float(np.mean(correct)), "vulnerability": vulnerability,
            "seconds": timer.seconds,
        }
        report["blackbox_acc"] = report["blackbox"]["acc"]
        log(f"black-box: {100 * report['blackbox_acc']:.2f} %")
        report["vulnerability_black"] = vulnerability["overall"]
    report["worst_case_acc"] = float(np.mean(survived))
    report["worst_case_over"] = ["clean", *report["attacks"]] + (
        ["blackbox"] if source is not None else [])
    report["vulnerability_units"] = {
        kind: {name: values.tolist() for name, values in units.items()}
        for kind, units in unit_vulnerability.items()
    }
    if settings.suite == "full":
        log(f"sweeps over eps and steps on {settings.sweep_examples} "
            "examples")
        report["sweeps"] = _sweeps(evaluator, settings, images, labels)
    elif settings.sanity_checks:
        clean, acc = _zero_epsilon_acc(evaluator, settings, images, labels)
        report["zero_epsilon"] = {"clean_acc": clean, "acc": acc}
    report["sanity_checks"] = (
        _sanity_checks(report, settings, num_classes)
        if settings.sanity_checks else {})
    if complexity:
        report["complexity"] = complexity_report(target.network)
    return report
