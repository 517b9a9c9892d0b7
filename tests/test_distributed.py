"""Replicas and workers: same training as one device, clear errors."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from anpvs_tf import config as config_lib
from anpvs_tf import data
from anpvs_tf import training
from anpvs_tf.errors import ConfigError
from anpvs_tf.distribution import distribute_batches
from anpvs_tf.distribution import read_tf_config
from anpvs_tf.training import train
from tests.processes import tf_configs
from tests.processes import train_processes
from tests.processes import wait_all
from tests.processes import wait_for_checkpoint
from tests.test_compact_training import tiny_gated_run
from tests.test_compact_training import uninterrupted_compact  # noqa: F401
from tests.test_fault_tolerance import interrupt_after_epoch
from tests.test_scripts import assert_one_line_error
from tests.test_scripts import run_script
from tests.tiny_runs import assert_same_weights
from tests.tiny_runs import network_weights
from tests.tiny_runs import run_config
from tests.tiny_runs import run_flags

WORKER_0 = {"type": "worker", "index": 0}
TIMEOUT = 240  # seconds for a whole multi-worker run, on a busy CPU


@pytest.fixture
def mirrored_strategy(monkeypatch, two_cpu_strategy):
    """train()'s "mirrored" is the session's 2-CPU strategy: a second
    MirroredStrategy in the process would break the CPU collectives."""
    real = training.make_strategy

    def make_strategy(name):
        return two_cpu_strategy if name == "mirrored" else real(name)

    monkeypatch.setattr(training, "make_strategy", make_strategy)
    return two_cpu_strategy


def test_each_replica_gets_its_rows_of_the_global_batch(mirrored_strategy):
    """Replica r sees rows [r*b, (r+1)*b) of each global batch, the split
    the per-example noise (replicas.sample_for_global_batch) assumes."""
    images = np.arange(96, dtype=np.float32).reshape(96, 1, 1, 1)
    labels = np.arange(96, dtype=np.int64)
    stream, _ = data.train_dataset(images, labels, 32, seed=3)
    expected = [batch[1].numpy() for batch in stream.take(3)]
    distributed = distribute_batches(mirrored_strategy, stream, 32)
    for global_labels, (_, per_replica) in zip(expected, distributed):
        local = mirrored_strategy.experimental_local_results(per_replica)
        np.testing.assert_array_equal(local[0].numpy(), global_labels[:16])
        np.testing.assert_array_equal(local[1].numpy(), global_labels[16:])


def test_mirrored_training_equals_single_device(tmp_path, mirrored_strategy,
                                                pruned_start):
    """Three epochs of ANP-VS (and its base) through train(): MirroredStrategy
    over 2 CPUs gives the weights, per-epoch metrics and test results of one
    device on the same global batch, with the same learning rates, through
    two gated epochs and then, the gates frozen, the compact network's
    (half the units of every gate pruned at the start)."""
    # Any gated network shows it: a tiny LeNet.
    tiny = {"model.architecture": "lenet5_caffe_tiny",
            "train.gate_epochs": 2}
    single = train(run_config("lenet5_caffe_mnist_anp_vs", 3, **tiny),
                   tmp_path / "single", verbose=0)
    mirrored = train(
        run_config("lenet5_caffe_mnist_anp_vs", 3,
                   **{**tiny, "train.strategy": "mirrored"}),
        tmp_path / "mirrored", verbose=0,
    )
    assert_same_weights(network_weights(tmp_path / "single"),
                        network_weights(tmp_path / "mirrored"))
    history = [np.genfromtxt(tmp_path / run / "history.csv", delimiter=",",
                             names=True) for run in ("single", "mirrored")]
    for name in ("loss", "ce_loss", "adv_ce_loss", "vs_loss", "kl_loss"):
        np.testing.assert_allclose(history[0][name], history[1][name],
                                   rtol=1e-4)
    assert single["active_units"] == mirrored["active_units"]
    for key in ("clean_acc", "pgd_acc"):
        assert_within_one_example(single, mirrored, key)


def assert_within_one_example(expected, actual, key):
    """Weights equal to float tolerance may still flip one borderline test
    example; more than one is a real difference."""
    assert abs(expected[key] - actual[key]) <= 1 / expected["test_examples"]


def test_global_batch_must_split_evenly(tmp_path, mirrored_strategy):
    config = run_config("lenet5_caffe_mnist_at", 1,
                        **{"train.strategy": "mirrored",
                           "train.batch_size": 33})
    with pytest.raises(ConfigError, match="multiple of 2"):
        train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_resuming_under_another_strategy_is_allowed(tmp_path,
                                                    mirrored_strategy):
    """Results do not depend on the replica count, so the strategy is not
    part of the config a resumed run must match."""
    config = run_config("lenet5_caffe_mnist_at", 1)
    train(config, tmp_path / "run", verbose=0)
    logs = []
    train(config_lib.replace(config, **{"train.strategy": "mirrored"}),
          tmp_path / "run", verbose=0, log=logs.append)
    assert "already trained" in logs[0]


@pytest.mark.parametrize(
    "tf_config, phrase",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "not valid JSON"),
        ({"task": WORKER_0}, "no cluster.worker"),
        ({"cluster": {"worker": ["localhost"]}, "task": WORKER_0},
         "'host:port'"),
        ({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": WORKER_0},
         "'ps' job"),
        ({"cluster": {"worker": ["a:1", "b:2"]},
          "task": {"type": "evaluator", "index": 0}}, "task.type"),
        ({"cluster": {"worker": ["a:1", "b:2"]},
          "task": {"type": "worker", "index": 2}},
         "task.index must be 0 to 1"),
    ],
)
def test_bad_tf_config_names_the_fix(tf_config, phrase):
    if isinstance(tf_config, dict):
        tf_config = json.dumps(tf_config)
    with pytest.raises(ConfigError, match=phrase):
        read_tf_config(tf_config)


def test_train_py_reports_a_bad_tf_config_in_one_line(tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    result = run_script("train.py", f"--workdir={tmp_path / 'run'}",
                        "--strategy=multi_worker")
    assert_one_line_error(result, "TF_CONFIG", "cluster.worker")
    assert result.returncode == 2
    assert not (tmp_path / "run").exists()


def worker_runs(workdir, flags, tmp_path, cluster, attempt=0):
    """The same command for each worker of `cluster` (its TF_CONFIGs)."""
    return [
        ([f"--workdir={workdir}", "--strategy=multi_worker", *flags],
         tmp_path / f"worker{index}-{attempt}.log", {"TF_CONFIG": tf_config})
        for index, tf_config in enumerate(cluster)
    ]


def digests(processes):
    found = []
    for process in processes:
        lines = [line for line in process.output.splitlines()
                 if line.startswith("Trained weights digest")]
        assert lines, process.output[-3000:]
        found.append(lines[-1].split()[3])
    return found


def worker_scratch_dirs():
    return sorted(Path(tempfile.gettempdir()).glob("anpvs-worker*"))


def test_two_workers_train_the_same_weights(tmp_path):
    """Two train.py processes on localhost with MultiWorkerMirroredStrategy:
    a gated run (its base first) ends with the same weights on both workers
    and equal to one device on the same global batch; only the chief writes
    the workdir."""
    workdir = tmp_path / "run"
    # Any gated network shows it: a tiny LeNet.
    tiny = "model.architecture=lenet5_caffe_tiny"
    flags = [*run_flags("lenet5_caffe_mnist_anp_vs", 1), f"--override={tiny}"]
    scratch_before = worker_scratch_dirs()
    with train_processes(worker_runs(workdir, flags, tmp_path, tf_configs(2)),
                         TIMEOUT) as (processes, deadline):
        codes = wait_all(processes, deadline)
    assert codes == [0, 0], "\n---\n".join(p.output[-3000:]
                                           for p in processes)
    chief_digest, worker_digest = digests(processes)
    assert chief_digest == worker_digest
    assert "the chief evaluates" in processes[1].output
    assert worker_scratch_dirs() == scratch_before  # scratch removed

    config = run_config("lenet5_caffe_mnist_anp_vs", 1,
                        **{"model.architecture": "lenet5_caffe_tiny"})
    stored = json.loads((workdir / "config.json").read_text())
    assert stored["train"]["strategy"] == "multi_worker"
    single = train(config, tmp_path / "single", verbose=0)
    assert_same_weights(network_weights(tmp_path / "single"),
                        network_weights(workdir))
    results = json.loads((workdir / "results.json").read_text())
    for key in ("clean_acc", "pgd_acc"):
        assert_within_one_example(single, results, key)


def test_two_workers_resume_into_the_compact_fine_tune(
        tmp_path, monkeypatch, uninterrupted_compact):  # noqa: F811
    """A run stopped after its last gated epoch (half of every gate's
    units pruned), resumed by two workers: each rebuilds the compact
    network from the checkpoint's frozen gates, and both end with the
    weights of the uninterrupted single-device run."""
    base = tmp_path / "uninterrupted" / "base"
    workdir = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_gated_run(**{"train.base_workdir": str(base)}),
                  workdir, verbose=0)
    flags = [*run_flags("lenet5_caffe_mnist_anp_vs", 3),
             "--override=model.architecture=lenet5_caffe_tiny",
             "--gate_epochs=1", f"--base_workdir={base}"]
    with train_processes(worker_runs(workdir, flags, tmp_path, tf_configs(2)),
                         TIMEOUT) as (processes, deadline):
        codes = wait_all(processes, deadline)
    outputs = "\n---\n".join(p.output[-3000:] for p in processes)
    assert codes == [0, 0], outputs
    for process in processes:
        assert "trains the compact network" in process.output, outputs
    assert len(set(digests(processes))) == 1, outputs
    assert_same_weights(uninterrupted_compact, network_weights(workdir))


@pytest.mark.slow  # four train.py processes and a reference run: ~1 min
def test_killed_worker_restarted_with_the_same_command_resumes(tmp_path):
    """Worker 1 is killed after epoch 1 of 3 (the chief then fails or is
    stopped, as a cluster manager would); both restarted with the same
    commands resume from the chief's checkpoint and end with the weights of
    an uninterrupted single-device run."""
    workdir = tmp_path / "run"
    flags = run_flags("lenet5_caffe_mnist_at", 3)
    cluster = tf_configs(2)
    scratch_before = worker_scratch_dirs()
    with train_processes(worker_runs(workdir, flags, tmp_path, cluster),
                         TIMEOUT) as (processes, deadline):
        wait_for_checkpoint(workdir, processes, deadline)
        processes[1].kill()
    # Leaving the block killed the chief too, if it had not failed already.
    first_outputs = "\n---\n".join(p.output[-3000:] for p in processes)
    assert not (workdir / "results.json").exists(), first_outputs
    with train_processes(
        worker_runs(workdir, flags, tmp_path, cluster, attempt=1), TIMEOUT
    ) as (processes, deadline):
        codes = wait_all(processes, deadline)
    assert codes == [0, 0], "\n---\n".join(p.output[-3000:]
                                           for p in processes)
    outputs = "\n---\n".join(p.output[-3000:] for p in processes)
    for process in processes:
        assert "Resuming from" in process.output, outputs
    assert len(set(digests(processes))) == 1, outputs
    # The killed worker's scratch folder was reused and then removed.
    assert worker_scratch_dirs() == scratch_before

    train(run_config("lenet5_caffe_mnist_at", 3), tmp_path / "single",
          verbose=0)
    assert_same_weights(network_weights(tmp_path / "single"),
                        network_weights(workdir))
