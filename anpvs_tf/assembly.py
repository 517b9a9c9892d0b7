"""The trainable model of a config: build, compile, fit.

The one path train.py and the hyper-parameter tuner share, so a trial
trains exactly as a run of the same config does.
"""

from anpvs_tf import data
from anpvs_tf import precision
from anpvs_tf.complexity import flops_kl_weights
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.model import ANPVSModel
from anpvs_tf.optimizers import make_optimizers
from anpvs_tf.registry import build_network


def build_model(config, input_shape, num_classes, num_train_examples):
    """The (uncompiled) ANPVSModel of a config, in its precision policy."""
    with precision.dtype_policy(config.train.mixed_precision):
        return _build_model(
            config, input_shape, num_classes, num_train_examples
        )


def _build_model(config, input_shape, num_classes, num_train_examples):
    method = config.train.method
    network = build_network(
        config.model.architecture,
        num_classes=num_classes,
        input_shape=input_shape,
        gated=method in GATED_METHODS,
        gate_concentration1_init=config.model.gate_concentration1_init,
        gate_concentration0_init=config.model.gate_concentration0_init,
        seed=config.train.seed,
    )
    exponent = config.loss.kl_flops_exponent
    return ANPVSModel(
        network,
        method=method,
        attack=config.attack,
        eval_attack=config.attack,
        kl_weight=config.loss.kl_weight,
        kl_normalizer=config.loss.kl_normalizer or num_train_examples,
        kl_gate_weights=(flops_kl_weights(network, exponent)
                         if exponent and method in GATED_METHODS else None),
        vs_weight=config.loss.vs_weight,
        adv_weight=config.loss.adv_weight,
        trades_weight=config.loss.trades_weight,
        l2_weight=config.loss.l2_weight,
        seed=config.train.seed,
    )


def compile_model(model, config, num_train_examples):
    """Compiles with the config's two optimizers, whose learning-rate
    schedules span the whole run; call it in the strategy's scope."""
    steps_per_epoch = num_train_examples // config.train.batch_size
    model.compile(
        *make_optimizers(config.train, config.train.epochs * steps_per_epoch),
        jit_compile=False,
    )
    return model


def fit_model(model, config, images, labels, *, initial_epoch=0,
              epochs=None, validation_data=None, callbacks=(), verbose="auto",
              distribute=None):
    """Fits on the config's training pipeline (shuffled per seed and epoch,
    so resuming at `initial_epoch` sees the batches an unbroken run does);
    `distribute(dataset)` splits its batches over replicas."""
    dataset, steps_per_epoch = data.train_dataset(
        images, labels, config.train.batch_size, seed=config.train.seed,
        initial_epoch=initial_epoch, augment=config.data.augment,
        augment_padding=config.data.augment_padding,
        augment_flip=config.data.augment_flip,
    )
    if distribute is not None:
        dataset = distribute(dataset)
    return model.fit(
        dataset,
        epochs=epochs or config.train.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation_data,
        callbacks=list(callbacks),
        verbose=verbose,
        shuffle=False,  # the dataset is shuffled, per seed and epoch
    )
