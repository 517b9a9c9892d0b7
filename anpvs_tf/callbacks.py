"""Training callbacks."""

import keras


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a tf.train checkpoint (weights, both optimizers, RNG states and
    the epoch counter) after every epoch, so a killed run resumes with the
    same command without losing a finished epoch. The checkpoint index is
    only updated once the files are written, so a kill mid-save leaves the
    previous checkpoint as the latest.
    """

    def __init__(self, manager, epoch_variable):
        super().__init__()
        self.manager = manager
        self.epoch_variable = epoch_variable

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_variable.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
