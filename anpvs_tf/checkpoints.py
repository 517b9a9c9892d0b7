"""Per-epoch checkpoints of a run: what they hold and how the newest
readable one is found, so an interrupted run resumes exactly."""

from pathlib import Path

import tensorflow as tf

from anpvs_tf.errors import ConfigError
from anpvs_tf.workdir import OVERWRITE_DELETES


# What every run's checkpoint holds (make_checkpoint).
RUN_ENTRIES = ("model_variables", "weight_optimizer", "gate_optimizer",
               "epoch", "seconds", "gates_frozen_at_step")


def make_checkpoint(model):
    """A checkpoint of everything a resumed run needs."""
    # Keras 3 models are not traversed by tf.train.Checkpoint: list their
    # variables (weights, gate parameters and every SeedGenerator state, so
    # the attack and gate noise continue where they stopped).
    return tf.train.Checkpoint(
        model_variables=list(model.variables),
        weight_optimizer=model.optimizer,
        gate_optimizer=model.gate_optimizer or tf.train.Checkpoint(),
        epoch=tf.Variable(0, dtype=tf.int64, trainable=False),
        seconds=tf.Variable(0.0, dtype=tf.float64, trainable=False),
        # The step after which `train.freeze_at_sparsity` froze the gates
        # (0: not yet; a checkpoint written before it existed reads 0).
        gates_frozen_at_step=tf.Variable(0, dtype=tf.int64,
                                         trainable=False),
    )


def _compact_entries(compact):
    return {"compact_variables": list(compact.variables),
            "compact_optimizer": compact.optimizer}


def compact_part(compact):
    """What a checkpoint holds of a compact fine-tune (compact_training):
    the compact model's variables and its optimizer."""
    return tf.train.Checkpoint(**_compact_entries(compact))


def with_compact(checkpoint, compact):
    """A run's checkpoint during its compact fine-tune: the gated model as
    its gates froze (it no longer changes: the compact architecture is
    derived from it on resume), plus the compact model, in its own shapes."""
    return tf.train.Checkpoint(
        **{name: getattr(checkpoint, name) for name in RUN_ENTRIES},
        **_compact_entries(compact))


def _checkpoint_number(path):
    return int(str(path).rsplit("-", 1)[1])


def checkpoint_candidates(directory, log=print):
    """Checkpoint paths to try, oldest first.

    The `checkpoint` index names them; should the index itself be garbled
    (TensorFlow then sees no checkpoint at all), the complete checkpoints
    on disk (those with an .index file) are used instead, so a damaged
    index never silently restarts a run from epoch 0.
    """
    directory = Path(directory)
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except ValueError:  # an empty index
        state = None
    if state is not None and state.all_model_checkpoint_paths:
        return list(state.all_model_checkpoint_paths)
    on_disk = sorted(
        (str(p.with_suffix("")) for p in directory.glob("ckpt-*.index")
         if p.stem.split("-", 1)[1].isdigit()),
        key=_checkpoint_number,
    )
    if on_disk and (directory / "checkpoint").exists():
        log(f"The checkpoint index in {directory} is unreadable; using the "
            "checkpoint files beside it")
    return on_disk


def restore_latest(checkpoint, directory, log):
    """Restores the newest readable checkpoint; returns its path or None.

    CheckpointManager moves the `checkpoint` index file (atomically) only
    after a checkpoint's files are complete, so a kill during a save leaves
    the previous one as the latest. Should the latest still be unreadable
    (a filesystem that lost writes, a full disk), the one before it is used,
    so no completed epoch but the last is lost.
    """
    candidates = checkpoint_candidates(directory, log)
    for path in reversed(candidates):
        try:
            checkpoint.restore(path).expect_partial()
        # What TensorFlow raises for truncated or corrupt files.
        except (tf.errors.OpError, ValueError, IndexError) as error:
            summary = str(error).strip().splitlines()[0][:200]
            log(f"Checkpoint {path} is unreadable ({type(error).__name__}: "
                f"{summary}); trying the one before it")
            continue
        return path
    if candidates:
        raise ConfigError(
            f"no readable checkpoint in '{directory}' (all of "
            f"{len(candidates)} are damaged); start over in a new "
            f"`workdir`, or pass {OVERWRITE_DELETES}"
        )
    return None
