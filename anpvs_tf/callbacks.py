"""Training callbacks."""

import csv
import io
import sys
import time
from pathlib import Path

import keras

from anpvs_tf import files


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a tf.train checkpoint after every epoch, for exact resume.

    The checkpoint holds the weights, both optimizers, every RNG state, the
    epoch counter and the training time so far (so a resumed run reports
    its whole training time). The checkpoint index is only updated once the
    files are written, so a kill mid-save leaves the previous checkpoint as
    the latest.
    """

    def __init__(self, manager, epoch_variable, seconds_variable):
        super().__init__()
        self.manager = manager
        self.epoch_variable = epoch_variable
        self.seconds_variable = seconds_variable
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds_variable.assign_add(time.perf_counter() - self._start)
        self.epoch_variable.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


class FreezeAtSparsity(keras.callbacks.Callback):
    """Freezes the gates (ANPVSModel.freeze_gates) after the first step at
    which at least `target` % of the gated units are pruned, and keeps that
    step in `step_variable` (checkpointed, so a resumed run freezes them
    again). The gates prune in a cliff (hundreds of units in one step), at
    a step that varies by seed: an epoch boundary cannot hold a sparsity,
    and a target is met at the first step past it, not exactly."""

    def __init__(self, target, step_variable, log=print):
        super().__init__()
        self.target = target
        self.step_variable = step_variable
        self.log = log

    def on_train_batch_end(self, batch, logs=None):
        if self.model.gates_frozen:
            return
        # As complexity_report computes the reported sparsity (float64).
        total = sum(gate.units for gate in self.model.gates)
        sparsity = 100.0 * (1.0 - int(self.model.active_units()) / total)
        if sparsity < self.target:
            return
        self.model.freeze_gates()
        step = int(self.model.optimizer.iterations.numpy())
        self.step_variable.assign(step)
        self.log(f"\nGates frozen at step {step}: {sparsity:.2f} % of the "
                 f"gated units pruned (target {self.target:g} %)")


class HistoryLog(keras.callbacks.Callback):
    """history.csv: one row per finished epoch, rewritten atomically.

    A resumed run first drops the rows of epochs it trains again (those
    after the checkpoint it resumed from, e.g. after a fallback to an older
    checkpoint), so no epoch is ever listed twice; a torn last line of a
    file written by an older version is dropped too.
    """

    def __init__(self, path, initial_epoch):
        super().__init__()
        self.path = Path(path)
        self.rows = self._read_rows(initial_epoch)

    def _read_rows(self, initial_epoch):
        if not self.path.exists():
            return []
        try:
            rows = list(csv.DictReader(io.StringIO(self.path.read_text())))
        except (csv.Error, UnicodeDecodeError):
            return []
        kept = []
        for row in rows:
            epoch = row.get("epoch") or ""
            if not epoch.isdigit() or None in row.values():
                continue  # a torn or foreign line
            if int(epoch) < initial_epoch:
                kept.append(row)
        return kept

    def on_epoch_end(self, epoch, logs=None):
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
        self.rows.append({"epoch": str(epoch), **{
            key: _format(value) for key, value in (logs or {}).items()
        }})
        keys = ["epoch", *sorted(
            {key for row in self.rows for key in row} - {"epoch"}
        )]
        text = io.StringIO()
        writer = csv.DictWriter(text, keys, restval="",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        files.write_text(self.path, text.getvalue())


def _format(value):
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


# The training metrics a progress bar shows, in this order (Keras' own
# bar shows every log, a dozen for ANP-VS, and restarts each epoch).
PROGRESS_METRICS = ("clean_accuracy", "adv_accuracy", "sparsity")


class PhaseProgress(keras.callbacks.Callback):
    """One progress bar over all the epochs of a training phase, so its
    ETA is the phase's, not the epoch's; the monitor slice's accuracies
    are added once per epoch. One instance may serve several `fit` calls
    (the gated epochs, then the compact fine-tune): the bar goes on."""

    def __init__(self, epochs, steps_per_epoch, initial_epoch=0):
        super().__init__()
        self.epoch = initial_epoch
        self.target = (epochs - initial_epoch) * steps_per_epoch
        self.done = 0
        self.bar = None
        self.monitor = []

    def on_train_begin(self, logs=None):
        if self.bar is not None:
            return
        interactive = (getattr(sys.stdout, "isatty", lambda: False)()
                       or "ipykernel" in sys.modules)
        self.bar = keras.utils.Progbar(
            self.target, unit_name="step",
            # Redirected to a file, a bar line every 30 s, not 20 a second.
            interval=0.1 if interactive else 30.0,
            stateful_metrics=[*PROGRESS_METRICS, "val_clean_accuracy",
                              "val_adv_accuracy", "epoch"])

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        values = [("epoch", self.epoch + 1)] + [
            (name, float(logs[name])) for name in PROGRESS_METRICS
            if logs and name in logs] + self.monitor
        self.bar.update(min(self.done, self.target), values=values,
                        finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        self.monitor = [(name, float(logs[name]))
                        for name in ("val_clean_accuracy",
                                     "val_adv_accuracy")
                        if logs and name in logs]

    def on_train_end(self, logs=None):
        if self.bar is not None and self.done >= self.target:
            self.bar.update(self.done, values=self.monitor, finalize=True)
