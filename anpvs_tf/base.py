"""The base model a gated method (or at_pretrained) starts from: its
config, the checks of a given one, and copying its weights."""

from pathlib import Path

from anpvs_tf import config as config_lib
from anpvs_tf.config import LossConfig
from anpvs_tf.errors import ConfigError
from anpvs_tf.workdir import NETWORK_FILE
from anpvs_tf.workdir import load_trained_model
from anpvs_tf.workdir import read_config


# The base model's own report uses at most this many test images: it is
# a starting point, and PGD-40 over a whole test set would cost a budget
# run a quarter of its time.
BASE_TEST_EXAMPLES = 1000


def base_config(config):
    """The config of the base model a gated method trains first."""
    train = config.train
    return config_lib.replace(
        config,
        **{"train.method": train.base_method,
           "train.epochs": train.base_epochs,
           "train.weight_learning_rate": (
               train.weight_learning_rate if train.base_learning_rate is None
               else train.base_learning_rate),
           "train.base_learning_rate": None,
           "train.decay_fractions": (
               train.decay_fractions if train.base_decay_fractions is None
               else train.base_decay_fractions),
           "train.base_decay_fractions": None,
           "train.gate_epochs": None,
           "train.freeze_at_sparsity": None,
           "train.fine_tune_learning_rate": None,
           # Gate and VS settings: an unpruned base (BASE_METHODS) reads
           # none, so bases of runs that differ only there are the same run.
           "loss.kl_weight": LossConfig.kl_weight,
           "loss.kl_normalizer": LossConfig.kl_normalizer,
           "loss.kl_flops_exponent": LossConfig.kl_flops_exponent,
           "loss.vs_weight": LossConfig.vs_weight,
           "train.base_workdir": None,
           # The base is a starting point: PGD is enough to report.
           "eval.strong_examples": 0,
           "serve.export": False},
    )


def check_base(config):
    """A given `train.base_workdir` must hold a finished run of the same
    architecture: checked before anything is created."""
    if config.train.base_workdir is None:
        return
    base_dir = Path(config.train.base_workdir)
    if not base_dir.is_dir():
        raise ConfigError(
            f"`train.base_workdir` '{base_dir}' does not exist; pass the "
            "workdir of a finished train.py run, or leave it out to train a "
            "base"
        )
    base_run = read_config(base_dir)
    if not (base_dir / NETWORK_FILE).exists():
        raise ConfigError(
            f"`train.base_workdir` '{base_dir}' holds no finished training "
            f"({NETWORK_FILE} is missing); finish that run first"
        )
    if base_run.model.architecture != config.model.architecture:
        raise ConfigError(
            f"base model in '{base_dir}' is a "
            f"{base_run.model.architecture}, not a "
            f"{config.model.architecture}; pass a matching `train.base_workdir`"
        )


def copy_base_weights(config, base_dir, network, log):
    """Copies base weights into the gated network, layer by layer."""
    base_config, base_model = load_trained_model(base_dir)
    if base_config.model.architecture != config.model.architecture:
        raise ConfigError(
            f"base model in '{base_dir}' is a "
            f"{base_config.model.architecture}, not a "
            f"{config.model.architecture}; pass a matching `train.base_workdir`"
        )
    for layer in base_model.network.layers:
        if layer.weights:
            network.get_layer(layer.name).set_weights(layer.get_weights())
    log(f"Initialised from the base model in {base_dir}")
