"""What a finished run delivers: the strong evaluation, the compact export
with its measured speed-up, the summary and the training curve."""

import dataclasses
import json
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import config as config_lib
from anpvs_tf.config import AttackConfig
from anpvs_tf.config import EvalConfig
from anpvs_tf.delivery import CPU_FLOPS_PER_SECOND
from anpvs_tf.delivery import deliver
from anpvs_tf.delivery import estimated_seconds
from anpvs_tf.delivery import matched_epochs
from anpvs_tf.delivery import training_passes
from anpvs_tf.delivery import plan
from anpvs_tf.delivery import summary_rows
from anpvs_tf.evaluation.engine import RobustnessEvaluator
from anpvs_tf.evaluation.results import evaluate_model
from anpvs_tf.evaluation.results import strong_evaluation
from anpvs_tf.registry import get_experiment
from anpvs_tf.speed import speed_report
from anpvs_tf.training import train
from anpvs_tf.workdir import check_workdir
from tests.tiny_runs import run_config

STRONG = dict(batch_size=64, apgd_steps=5)


def test_strong_evaluation_at_zero_eps_is_the_clean_accuracy(
        briefly_trained_lenets, mnist_eval_batch):
    images, labels = mnist_eval_batch
    model = types.SimpleNamespace(network=briefly_trained_lenets[0])
    eval_config = EvalConfig(
        attack=AttackConfig(epsilon=0.0, step_size=0.0, num_steps=3),
        strong_examples=100, **STRONG)
    strong = strong_evaluation(model, images, labels, eval_config)
    assert strong["examples"] == 100
    assert strong["clean_acc"] > 0.5  # the network learned something
    for value in (strong["apgd_ce_acc"], strong["apgd_dlr_acc"],
                  strong["worst_case_acc"], *strong["attacks"].values()):
        assert value == pytest.approx(strong["clean_acc"])


def test_strong_worst_case_is_below_every_attack_and_uses_the_subset(
        briefly_trained_lenets, mnist_eval_batch):
    images, labels = mnist_eval_batch
    model = types.SimpleNamespace(network=briefly_trained_lenets[0])
    eval_config = EvalConfig(
        attack=AttackConfig(epsilon=0.1, step_size=0.02, num_steps=5),
        strong_examples=120, **STRONG)
    strong = strong_evaluation(model, images, labels, eval_config)
    assert set(strong["attacks"]) == {"pgd5", "apgd_ce", "apgd_dlr"}
    assert strong["worst_case_acc"] <= min(strong["attacks"].values())
    assert strong["worst_case_acc"] < strong["clean_acc"]
    # Only the first 120 images count: the other 80 change nothing.
    shuffled = np.concatenate([images[:120], images[120:][::-1]])
    again = strong_evaluation(model, shuffled, labels, eval_config)
    assert again["worst_case_acc"] == strong["worst_case_acc"]


def test_a_strong_suite_over_the_whole_set_runs_its_pgd_once(
        briefly_trained_lenets, mnist_eval_batch, monkeypatch):
    """The final evaluation's PGD is the suite's when the suite covers
    every image: the same figures as running it twice, at one PGD's
    cost; on a subset the suite runs its own."""
    images, labels = mnist_eval_batch
    images, labels = images[:96], labels[:96]
    model = types.SimpleNamespace(network=briefly_trained_lenets[0])
    eval_config = EvalConfig(
        attack=AttackConfig(epsilon=0.1, step_size=0.02, num_steps=5),
        strong_examples=96, **STRONG)
    separate = strong_evaluation(model, images, labels, eval_config)
    crafted = []
    craft = RobustnessEvaluator.craft

    def counting_craft(self, attack, *args):
        crafted.append(attack.method)
        return craft(self, attack, *args)

    monkeypatch.setattr(RobustnessEvaluator, "craft", counting_craft)
    results = evaluate_model(model, images, labels, eval_config)
    assert crafted.count("pgd") == 1
    assert results["strong"]["attacks"] == separate["attacks"]
    assert results["strong"]["worst_case_acc"] == separate["worst_case_acc"]
    assert results["strong"]["attacks"]["pgd5"] == results["pgd_acc"]
    crafted.clear()
    evaluate_model(model, images, labels,
                   dataclasses.replace(eval_config, strong_examples=50))
    assert crafted.count("pgd") == 2


def _sleeping_serve(seconds):
    def serve(images):
        time.sleep(seconds)
        return {"logits": tf.zeros((len(images), 10))}
    return serve


def test_speed_report_ranks_a_slower_function_below():
    batch = np.zeros((8, 4), np.float32)
    report = speed_report({"fast": _sleeping_serve(0.001),
                           "slow": _sleeping_serve(0.006)},
                          batch, rounds=3, round_seconds=0.03)
    assert len(report["slow"]["round_medians_ms"]) == 3
    assert report["slow"]["median_latency_ms"] >= 6.0
    assert (report["fast"]["examples_per_sec"]
            > 2 * report["slow"]["examples_per_sec"])


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """A tiny ANP-VS run with the strong evaluation and the export on."""
    workdir = tmp_path_factory.mktemp("delivered") / "run"
    config = run_config("lenet5_caffe_mnist_anp_vs", 2, **{
        "eval.strong_examples": 16, "eval.apgd_steps": 2,
        "serve.export": True, "serve.batch_size": 8, "serve.rounds": 1,
        "serve.round_seconds": 0.01})
    started = time.perf_counter()
    results = train(config, workdir, verbose=0)
    summary = deliver(config, workdir, results, started, log=lambda _: None)
    return config, workdir, results, summary


def test_delivery_exports_times_and_summarises(delivered):
    config, workdir, results, summary = delivered
    assert (workdir / "export" / "saved_model" / "saved_model.pb").exists()
    card = json.loads((workdir / "export" / "model_card.json").read_text())
    assert card["params"] == results["params"]
    serving = summary["serving"]
    assert serving["batch_size"] == 8
    assert serving["speedup"] == pytest.approx(
        serving["compact_examples_per_sec"]
        / serving["unpruned_examples_per_sec"])
    assert serving["unpruned_params"] == results["params_full"]
    assert (workdir / "training_curve.png").read_bytes()[:8] == (
        b"\x89PNG\r\n\x1a\n")
    assert summary["wall_seconds"] > results["train_seconds"]
    stored = json.loads((workdir / "summary.json").read_text())
    assert stored["serving"] == serving


def test_summary_leads_with_the_worst_case(delivered):
    _, workdir, results, summary = delivered
    rows = summary_rows(summary)
    assert rows[0][0].startswith("worst case")
    assert rows[0][1] == f"{100 * results['strong']['worst_case_acc']:.2f} %"
    table = (workdir / "summary.md").read_text()
    assert table.index("worst case") < table.index("PGD-")


def test_delivery_is_not_redone_and_overwrite_owns_its_files(delivered):
    config, workdir, results, summary = delivered
    export = workdir / "export" / "saved_model" / "saved_model.pb"
    before = export.stat().st_mtime_ns
    again = deliver(config, workdir, results, time.perf_counter(),
                    log=lambda _: None)
    assert again == json.loads(json.dumps(summary))
    assert export.stat().st_mtime_ns == before
    # Everything delivered is ours: --overwrite may delete it all.
    changed = config_lib.replace(config, **{"train.seed": 1})
    assert check_workdir(changed, workdir, overwrite=True) is True


def test_phase_progress_spans_every_remaining_step(capsys):
    """One bar over the phase: a resumed run's bar counts only the steps
    left, and it ends at its target."""
    import keras

    from anpvs_tf.callbacks import PhaseProgress

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((16, 3), np.float32), np.zeros((16, 2), np.float32)
    progress = PhaseProgress(epochs=3, steps_per_epoch=4, initial_epoch=1)
    model.fit(x, y, batch_size=4, epochs=3, initial_epoch=1, verbose=0,
              callbacks=[progress])
    assert progress.target == 8
    assert progress.done == 8
    assert progress.bar._seen_so_far == 8
    assert "8/8" in capsys.readouterr().out


def _estimate_config(method="at", **overrides):
    return config_lib.replace(
        get_experiment(f"lenet5_caffe_mnist_{method}"),
        **{"train.epochs": 2, "attack.num_steps": 3,
           "eval.attack.num_steps": 4, "data.monitor_examples": 10,
           "eval.strong_examples": 0, **overrides})


def _passes(config, train_examples=100, test_examples=50):
    """estimated_seconds in forward passes (FLOPs per pass = the rate)."""
    return estimated_seconds(config, CPU_FLOPS_PER_SECOND, train_examples,
                             test_examples)


def test_the_estimate_counts_every_pass_of_training_and_evaluation():
    # AT: 2 epochs x 100 examples x (3 attack steps x 3 + 6), the monitor's
    # 2 x 10 x (3 x 3 + 2), PGD-4 on 50 test images: 50 x (4 x 3 + 2).
    assert _passes(_estimate_config()) == pytest.approx(3000 + 220 + 700)
    # The strong suite adds APGD-CE and -DLR (3 passes a step each) and
    # its PGD on its examples.
    strong = _estimate_config(**{"eval.strong_examples": 20,
                                 "eval.apgd_steps": 5})
    assert _passes(strong) - _passes(_estimate_config()) == pytest.approx(
        20 * (6 * 5 + 14))
    # Standard training: one clean pass and its backward pass.
    assert _passes(_estimate_config("standard")) == pytest.approx(
        2 * 100 * 3 + 220 + 700)


def test_the_estimate_grows_with_the_base_and_shrinks_with_compaction():
    gated = _estimate_config("anp_vs", **{
        "train.base_epochs": 1, "train.base_method": "at",
        "train.epochs": 4, "train.gate_epochs": 1})
    masked = config_lib.replace(gated, **{"train.compact_fine_tune": False})
    # A compact fine-tune epoch costs less than a masked one.
    assert _passes(gated) < _passes(masked)
    given_base = config_lib.replace(gated,
                                    **{"train.base_workdir": "elsewhere"})
    # The base: its epoch (and monitor) and its report on the test images.
    assert _passes(gated) - _passes(given_base) == pytest.approx(
        100 * 15 + 10 * 11 + 50 * 14)


def test_matched_epochs_give_a_baseline_the_same_training_work():
    gated = _estimate_config("anp_vs", **{
        "train.base_epochs": 1, "train.base_method": "at",
        "train.epochs": 4, "train.gate_epochs": 1})
    at = _estimate_config()
    budget = training_passes(gated, 100)
    epochs = matched_epochs(budget, at, 100)

    def work(n):
        return training_passes(
            config_lib.replace(at, **{"train.epochs": n}), 100)
    # The closest count: one epoch more or fewer misses by more.
    assert all(abs(work(epochs) - budget) <= abs(work(n) - budget)
               for n in (epochs - 1, epochs + 1))
    # An AT epoch: 100 x (3 x 3 + 6) + the monitor's 10 x (3 x 3 + 2).
    assert work(epochs) == pytest.approx(epochs * (1500 + 110))
    assert matched_epochs(1.0, at, 100) == 1  # never none


def test_the_header_says_about_how_long():
    config = get_experiment("lenet5_caffe_mnist_anp_vs_budget")
    assert plan(config).endswith("serving check")
    assert plan(config, 6.4 * 60).endswith("; about 6 min on 2 CPU cores")
    assert plan(config, 3 * 3600).endswith("; about 3.0 h on 2 CPU cores")
