"""Killed runs resume to the uninterrupted result; checkpoints are atomic."""

import shutil

import pytest
import tensorflow as tf

from anpvs_tf import callbacks
from anpvs_tf.errors import ConfigError
from anpvs_tf.workdir import NETWORK_FILE
from anpvs_tf.checkpoints import restore_latest
from anpvs_tf.training import train
from tests.processes import train_processes
from tests.processes import wait_all
from tests.processes import wait_for_checkpoint
from tests.tiny_runs import assert_same_weights
from tests.tiny_runs import network_weights
from tests.tiny_runs import run_config
from tests.tiny_runs import run_flags

MODEL = "lenet5_caffe_mnist_at"
EPOCHS = 3


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Weights of the run every interrupted one must end with."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    train(run_config(MODEL, EPOCHS), workdir, verbose=0)
    return network_weights(workdir)


def interrupt_after_epoch(monkeypatch, epoch):
    """Makes training die (KeyboardInterrupt) once `epoch` is saved."""
    save = callbacks.EpochCheckpoint.on_epoch_end

    def save_then_die(self, index, logs=None):
        save(self, index, logs)
        if index + 1 == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.EpochCheckpoint, "on_epoch_end",
                        save_then_die)


def resume(workdir):
    """Runs the same training again; returns its log lines."""
    logs = []
    train(run_config(MODEL, EPOCHS), workdir, verbose=0, log=logs.append)
    return logs


def resumed_epoch(logs):
    line = next(line for line in logs if line.startswith("Resuming from"))
    return line, int(line.split("(epoch ")[1].split()[0])


def test_killed_process_restarted_with_the_same_command_ends_the_same(
    tmp_path, uninterrupted
):
    """train.py is SIGKILLed (no chance to clean up; possibly mid-save)
    once its first epoch is saved, and the same command finishes it."""
    workdir = tmp_path / "run"
    command = [f"--workdir={workdir}", *run_flags(MODEL, EPOCHS)]
    with train_processes([(command, tmp_path / "first.log", None)],
                         timeout=180) as (processes, deadline):
        wait_for_checkpoint(workdir, processes, deadline)
        processes[0].kill()
    assert not (workdir / NETWORK_FILE).exists()
    with train_processes([(command, tmp_path / "again.log", None)],
                         timeout=180) as (processes, deadline):
        assert wait_all(processes, deadline) == [0], processes[0].output
    assert "Resuming from" in processes[0].output
    assert_same_weights(uninterrupted, network_weights(workdir))


def test_kill_between_writing_and_publishing_a_checkpoint(
    tmp_path, monkeypatch, uninterrupted
):
    """Killed after epoch 2's files are written but before the checkpoint
    index names them: the run resumes from epoch 1, not from a checkpoint
    it never finished publishing."""
    real_save = tf.train.CheckpointManager.save

    def die_before_publishing(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == 2:
            # Write callbacks run after the files are complete and before
            # the manager's own callback, which rewrites the index.
            def die(save_path):
                raise KeyboardInterrupt

            kwargs["options"] = tf.train.CheckpointOptions(
                experimental_write_callbacks=[die]
            )
        return real_save(manager, checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save",
                        die_before_publishing)
    workdir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(run_config(MODEL, EPOCHS), workdir, verbose=0)
    assert (workdir / "checkpoints" / "ckpt-2.index").exists()
    assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith(
        "ckpt-1"
    )
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    _, epoch = resumed_epoch(resume(workdir))
    assert epoch == 1
    assert_same_weights(uninterrupted, network_weights(workdir))


def test_leftovers_of_a_half_written_checkpoint_are_ignored(
    tmp_path, monkeypatch, uninterrupted
):
    """A kill while epoch 2's files are being written leaves a temporary
    folder and truncated files; the index still names epoch 1."""
    interrupt_after_epoch(monkeypatch, 1)
    workdir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(run_config(MODEL, EPOCHS), workdir, verbose=0)
    checkpoints = workdir / "checkpoints"
    (checkpoints / "ckpt-2_temp").mkdir()
    (checkpoints / "ckpt-2_temp" / "part-00000-of-00001.index").write_bytes(
        b"\0" * 10
    )
    data = (checkpoints / "ckpt-1.data-00000-of-00001").read_bytes()
    (checkpoints / "ckpt-2.data-00000-of-00001").write_bytes(
        data[: len(data) // 3]
    )
    monkeypatch.undo()
    _, epoch = resumed_epoch(resume(workdir))
    assert epoch == 1
    assert_same_weights(uninterrupted, network_weights(workdir))


def test_unreadable_latest_checkpoint_falls_back_to_the_one_before(
    tmp_path, monkeypatch, uninterrupted
):
    """Should the newest checkpoint be damaged anyway (lost writes, a full
    disk), the run resumes from the previous one and still ends the same."""
    interrupt_after_epoch(monkeypatch, 2)
    workdir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(run_config(MODEL, EPOCHS), workdir, verbose=0)
    monkeypatch.undo()
    latest = workdir / "checkpoints" / "ckpt-2.data-00000-of-00001"
    latest.write_bytes(latest.read_bytes()[:1000])
    logs = resume(workdir)
    assert any("ckpt-2 is unreadable" in line for line in logs)
    _, epoch = resumed_epoch(logs)
    assert epoch == 1
    assert_same_weights(uninterrupted, network_weights(workdir))


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    variable = tf.Variable(1.0)
    checkpoint = tf.train.Checkpoint(v=variable)
    tf.train.CheckpointManager(checkpoint, checkpoints, 2).save()
    for path in checkpoints.glob("ckpt-1.*"):
        path.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="`overwrite`"):
        restore_latest(checkpoint, checkpoints, log=lambda line: None)
    shutil.rmtree(checkpoints)
    assert restore_latest(checkpoint, checkpoints, log=print) is None
