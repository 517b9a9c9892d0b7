"""Training callbacks."""

import time

import keras


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


class GateFreeze(keras.callbacks.Callback):
    """Freezes the gates of an ANPVSModel at the start of epoch
    `gate_epochs` (0-based), on a fresh run and on a resumed one alike."""

    def __init__(self, gate_epochs):
        super().__init__()
        self.gate_epochs = gate_epochs

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= self.gate_epochs and not self.model.gates_frozen:
            self.model.freeze_gates()
