"""Tests for the evaluation engine, the suites and the reports."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import config as config_lib
from anpvs_tf import losses
from anpvs_tf.config import AttackConfig
from anpvs_tf.errors import ConfigError
from anpvs_tf.config import EvalConfig
from anpvs_tf.config import ExperimentConfig
from anpvs_tf.evaluation.classifier import Classifier
from anpvs_tf.evaluation.engine import RobustnessEvaluator
from anpvs_tf.evaluation.engine import attack_name
from anpvs_tf.evaluation.engine import attack_settings
from anpvs_tf.evaluation.engine import default_step_size
from anpvs_tf.evaluation.reports import format_report
from anpvs_tf.evaluation.reports import write_report
from anpvs_tf.evaluation.results import evaluate_model
from anpvs_tf.evaluation.suites import SuiteSettings
from anpvs_tf.evaluation.suites import run_suite
from anpvs_tf.layers import gates_of
from anpvs_tf.model import ANPVSModel
from anpvs_tf.registry import build_network

SMALL = SuiteSettings(
    suite="full", epsilon=0.15, step_size=0.02, pgd_steps=10,
    apgd_steps=10, sweep_epsilons=(0.1, 0.2), sweep_steps=(1, 10),
    sweep_examples=50, batch_size=64, tolerance=0.02,
)


@pytest.fixture(scope="module")
def full_report(briefly_trained_lenets):
    from anpvs_tf import data

    images, labels = data.load_arrays("mnist", "test", "embedded")
    target, source = briefly_trained_lenets
    # 150 examples in batches of 64: the last batch is shorter.
    return run_suite(
        Classifier(target), images[:150], labels[:150], SMALL,
        source=Classifier(source), source_name="seed 1")


def test_worst_case_is_never_above_any_single_attack(full_report):
    accuracies = [full_report["clean_acc"], full_report["blackbox_acc"]]
    accuracies += [a["acc"] for a in full_report["attacks"].values()]
    assert set(full_report["attacks"]) == {
        "fgsm", "pgd10", "apgd_ce", "apgd_dlr"}
    assert full_report["worst_case_acc"] <= min(accuracies)
    # Non-trivial: the attacks break different examples, so the worst
    # case is strictly below at least one of them.
    assert full_report["worst_case_acc"] < max(accuracies[1:])


def test_worst_case_is_the_per_example_and_of_all_attacks(
    briefly_trained_lenets, mnist_eval_batch
):
    target, _ = briefly_trained_lenets
    # 100 images: two batches, the last one shorter.
    images, labels = (array[:100] for array in mnist_eval_batch)
    evaluator = RobustnessEvaluator(Classifier(target), batch_size=64)
    survived = evaluator.clean_correct(images, labels)
    for method in SMALL.attack_methods:
        attack = SMALL.attack(method)
        correct, _ = evaluator.score(
            images, labels, evaluator.craft(attack, images, labels))
        survived &= correct
    settings = SuiteSettings(
        suite="paper", attacks=SMALL.attack_methods, epsilon=0.15,
        step_size=0.02, pgd_steps=10, apgd_steps=10, batch_size=64,
        sanity_checks=False)
    report = run_suite(Classifier(target), images, labels, settings)
    assert report["worst_case_acc"] == pytest.approx(np.mean(survived))


def test_report_holds_every_number_and_setting(full_report):
    report = json.loads(json.dumps(full_report))  # JSON-serialisable
    assert report["test_examples"] == 150 and report["seed"] == 0
    pgd = report["attacks"]["pgd10"]["settings"]
    assert pgd == {"name": "pgd10", "method": "pgd", "epsilon": 0.15,
                   "num_steps": 10, "step_size": 0.02, "norm": "linf",
                   "restarts": 1, "random_start": True}
    assert report["blackbox"]["source"] == "seed 1"
    white = report["attacks"]["pgd10"]["vulnerability"]
    assert report["vulnerability_white"] == white["overall"]
    assert set(white["per_layer"]) == {"conv1", "conv2", "flatten", "fc1"}
    assert report["sweeps"]["epsilon"]["values"] == [0.0, 0.1, 0.2, 1.0]
    assert report["complexity"]["params"] == 431080
    assert len(report["vulnerability_units"]["white"]["conv2"]) == 50


def test_vulnerability_matches_the_training_metric(briefly_trained_lenets,
                                                   mnist_eval_batch):
    """Per-unit averages, re-averaged, equal losses.vulnerability on one
    batch (the quantity the VS loss and test_step use)."""
    target, _ = briefly_trained_lenets
    x, y = mnist_eval_batch
    evaluator = RobustnessEvaluator(Classifier(target), batch_size=len(y))
    x_adv = evaluator.craft(
        AttackConfig(epsilon=0.2, step_size=0.1, num_steps=5), x, y)
    _, units = evaluator.score(x, y, x_adv)
    expected = losses.vulnerability(
        target(x, training=False)["features"],
        target(x_adv, training=False)["features"])
    overall = np.mean([np.mean(v) for v in units.values()])
    np.testing.assert_allclose(overall, float(expected), rtol=1e-5)


def test_training_results_come_from_the_suites_engine(
    briefly_trained_lenets, mnist_eval_batch
):
    """train.py's final numbers equal evaluate.py's paper suite on the same
    images, attack and seed: both go through one engine."""
    target, _ = briefly_trained_lenets
    images, labels = mnist_eval_batch
    attack = AttackConfig(epsilon=0.15, step_size=0.02, num_steps=10)
    results = evaluate_model(
        ANPVSModel(target, method="standard"), images, labels,
        EvalConfig(attack=attack, batch_size=64), seed=3)
    report = run_suite(Classifier(target), images, labels, SuiteSettings(
        suite="paper", epsilon=0.15, step_size=0.02, pgd_steps=10,
        batch_size=64, seed=3, sanity_checks=False), complexity=False)
    assert results["clean_acc"] == report["clean_acc"]
    assert results["pgd_acc"] == report["pgd_acc"]
    assert results["pgd_acc"] < results["clean_acc"]  # a real attack
    assert results["vulnerability"] == report["vulnerability_white"]
    assert results["attack"]["name"] == "pgd10"


def test_sampled_gates_score_eps_zero_exactly_and_reproducibly(
    mnist_test_batch
):
    """Training-mode masks are random; the evaluator resets their noise per
    batch, so clean and eps-0 predictions see the same masks."""
    x, y = mnist_test_batch
    network = build_network("lenet5_caffe", gated=True, seed=0,
                            gate_concentration1_init=0.0)
    classifier = Classifier(network, gates="sampled", eot_samples=3)
    evaluator = RobustnessEvaluator(classifier, batch_size=32)
    clean = evaluator.clean_correct(x, y)
    np.testing.assert_array_equal(clean, evaluator.clean_correct(x, y))
    zero = AttackConfig(epsilon=0.0, step_size=0.01, num_steps=3)
    correct, _ = evaluator.score(x, y, evaluator.craft(zero, x, y))
    np.testing.assert_array_equal(correct, clean)
    # The attack itself sees sampled masks: two calls differ.
    first = classifier.attack_logits(tf.constant(x[:4]))
    second = classifier.attack_logits(tf.constant(x[:4]))
    assert not np.allclose(first, second)


def test_craft_is_reproducible_and_sweeps_share_the_noise(
    briefly_trained_lenets, mnist_test_batch
):
    target, _ = briefly_trained_lenets
    x, y = mnist_test_batch
    evaluator = RobustnessEvaluator(Classifier(target), batch_size=32)
    attack = AttackConfig(epsilon=0.1, step_size=0.01, num_steps=0)
    start = evaluator.craft(attack, x, y)
    np.testing.assert_array_equal(start, evaluator.craft(attack, x, y))
    # Zero steps: only the random start, scaled by eps.
    wider = evaluator.craft(
        dataclasses.replace(attack, epsilon=0.2), x, y)
    inside = (x > 0.2) & (x < 0.8)  # no clipping at either radius
    np.testing.assert_allclose(
        (wider - x)[inside], 2 * (start - x)[inside], atol=1e-5)


def test_attack_names_settings_and_checks():
    assert attack_name(AttackConfig(num_steps=40)) == "pgd40"
    assert attack_name(AttackConfig(
        method="apgd_dlr", epsilon=1.0, num_steps=100, norm="l2",
    )) == "apgd_dlr_l2"
    assert default_step_size(0.3, 40) == pytest.approx(2.5 * 0.3 / 40)
    # Only the settings a method reads reach the report.
    assert "step_size" not in attack_settings(AttackConfig(method="apgd_ce"))
    assert attack_settings(AttackConfig(method="fgsm", num_steps=7))[
        "num_steps"] == 1
    # The suite's PGD falls back to the default step when none is given.
    assert SuiteSettings(step_size=None, epsilon=0.2, pgd_steps=5).attack(
        "pgd").step_size == pytest.approx(0.1)
    # An attack the engine cannot run cannot be configured.
    with pytest.raises(ConfigError, match="unknown `attack.method` 'cw'"):
        AttackConfig(method="cw")
    with pytest.raises(ConfigError, match="unknown `attack.norm` 'l1'"):
        AttackConfig(norm="l1")
    # A config names only attacks the engine runs, and trains with PGD.
    with pytest.raises(ConfigError,
                       match="unknown `eval.attack.method` 'cw'"):
        config_lib.replace(ExperimentConfig(), **{"eval.attack.method": "cw"})
    with pytest.raises(ConfigError, match="training attack is L-inf PGD"):
        config_lib.replace(ExperimentConfig(), **{"attack.method": "fgsm"})


def test_reports_are_written_and_never_silently_replaced(full_report,
                                                         tmp_path):
    prefix = tmp_path / "evaluation"
    written = write_report(full_report, prefix, title="tiny")
    names = sorted(p.name for p in written)
    assert names == ["evaluation.json", "evaluation.md",
                     "evaluation_accuracy_vs_eps.png",
                     "evaluation_vulnerability.png"]
    for path in written:
        assert path.stat().st_size > 0
    assert (tmp_path / "evaluation_vulnerability.png").read_bytes()[
        :4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="already exists.*`overwrite`"):
        write_report(full_report, prefix)
    before = (tmp_path / "evaluation_accuracy_vs_eps.png").read_bytes()
    # Other models' reports are drawn into the same plots.
    write_report(full_report, prefix, overwrite=True,
                 others={"another model": full_report})
    assert (tmp_path / "evaluation_accuracy_vs_eps.png").read_bytes() != (
        before)


def test_markdown_shows_failed_checks(full_report):
    report = json.loads(json.dumps(full_report))
    report["sanity_checks"]["large_eps_at_chance"]["passed"] = False
    text = format_report(report)
    assert "| large_eps_at_chance | **FAILED** |" in text
    assert "| pgd10 | 10 steps, step 0.02 |" in text
    assert "black-box (pgd10 on seed 1)" in text


def test_attacks_through_the_compact_network_match_the_gated_one(
        mnist_eval_batch):
    """Classifier's compact_attacks: the attack sees the same function
    (logits within 1e-4), and PGD through it scores like PGD through the
    gated network; predictions stay the gated network's."""
    images, labels = mnist_eval_batch
    network = build_network("lenet5_caffe_tiny", seed=3)
    rng = np.random.RandomState(0)
    for gate in gates_of(network):
        raw = rng.uniform(1.0, 3.0, size=gate.units)
        raw[rng.rand(gate.units) < 0.6] = -10.0  # pruned
        gate.concentration1_raw.assign(raw.astype("float32"))
    fast = Classifier(network)
    plain = Classifier(network, compact_attacks=False)
    assert fast.attack_network is not None and plain.attack_network is None
    assert (fast.attack_network.count_params()
            < 0.6 * network.count_params())
    x = tf.constant(images[:64])
    np.testing.assert_allclose(fast.attack_logits(x), plain.attack_logits(x),
                               atol=1e-4)
    attack = AttackConfig(epsilon=0.2, step_size=0.02, num_steps=10)
    scores = []
    for classifier in (fast, plain):
        evaluator = RobustnessEvaluator(classifier, batch_size=100)
        adversarial = evaluator.craft(attack, images, labels)
        scores.append(evaluator.score(images, labels, adversarial)[0])
    assert abs(scores[0].mean() - scores[1].mean()) <= 0.01
    assert (scores[0] == scores[1]).mean() >= 0.98
