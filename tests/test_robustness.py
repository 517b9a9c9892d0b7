"""Tests for the evaluation engine, the suites and the reports."""

import json

import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import losses
from anpvs_tf.classifier import Classifier
from anpvs_tf.config import ConfigError
from anpvs_tf.registry import build_network
from anpvs_tf.reports import format_report
from anpvs_tf.reports import write_report
from anpvs_tf.robustness import AttackSpec
from anpvs_tf.robustness import RobustnessEvaluator
from anpvs_tf.suites import SuiteSettings
from anpvs_tf.suites import run_suite

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
        spec = SMALL.spec(method)
        correct, _ = evaluator.score(
            images, labels, evaluator.craft(spec, images, labels))
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
    x_adv = evaluator.craft(AttackSpec("pgd", 0.2, 5), x, y)
    _, units = evaluator.score(x, y, x_adv)
    expected = losses.vulnerability(
        target(x, training=False)["features"],
        target(x_adv, training=False)["features"])
    overall = np.mean([np.mean(v) for v in units.values()])
    np.testing.assert_allclose(overall, float(expected), rtol=1e-5)


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
    zero = AttackSpec("pgd", 0.0, 3, step_size=0.01)
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
    spec = AttackSpec("pgd", 0.1, 0, step_size=0.01)
    start = evaluator.craft(spec, x, y)
    np.testing.assert_array_equal(start, evaluator.craft(spec, x, y))
    # Zero steps: only the random start, scaled by eps.
    wider = evaluator.craft(AttackSpec("pgd", 0.2, 0, step_size=0.01), x, y)
    inside = (x > 0.2) & (x < 0.8)  # no clipping at either radius
    np.testing.assert_allclose(
        (wider - x)[inside], 2 * (start - x)[inside], atol=1e-5)


def test_attack_spec_names_and_checks():
    assert AttackSpec("pgd", 0.3, 40).name == "pgd40"
    assert AttackSpec("apgd_dlr", 1.0, 100, norm="l2").name == "apgd_dlr_l2"
    assert AttackSpec("pgd", 0.3, 40).effective_step_size == pytest.approx(
        2.5 * 0.3 / 40)
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        AttackSpec("cw")
    with pytest.raises(ValueError, match="unknown norm"):
        AttackSpec("pgd", norm="l1")


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
    with pytest.raises(ConfigError, match="already exists.*--overwrite"):
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
