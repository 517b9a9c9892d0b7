"""The source model of a black-box (transfer) attack.

The paper's black-box column feeds the target adversarial examples that
PGD crafted on a separately trained network. The source is a finished
workdir, or a zoo entry that is trained once (its own seed, so never the
target's twin) and cached next to the target.
"""

from pathlib import Path

from anpvs_tf import config as config_lib
from anpvs_tf.errors import ConfigError
from anpvs_tf.registry import get_experiment
from anpvs_tf.training import train
from anpvs_tf.workdir import load_trained_model

SOURCES_DIR = "blackbox_sources"


def load_source(source, target_workdir, target_config, epochs=10,
                log=print):
    """Returns (description, config, model) of the black-box source."""
    path = Path(source)
    if path.is_dir():
        if path.resolve() == Path(target_workdir).resolve():
            raise ConfigError(
                "`source` is the target itself; a black-box source must be "
                "a separately trained model (another workdir or a zoo entry)")
        config, model = load_trained_model(path)
        _check_same_data(config, target_config, source)
        return str(path), config, model
    try:
        recipe = get_experiment(source)
    except ConfigError:
        raise ConfigError(
            f"`source` '{source}' is neither a workdir nor a zoo entry; pass "
            "a directory written by train.py or a name from the zoo, e.g. "
            "lenet5_caffe_mnist_standard") from None
    config = config_lib.replace(
        recipe,
        **{
            "train.epochs": epochs,
            # A different seed from the target's: separately trained.
            "train.seed": target_config.train.seed + 1,
            "data.dataset": target_config.data.dataset,
            "data.source": target_config.data.source,
            "data.data_dir": target_config.data.data_dir,
            "data.train_examples": target_config.data.train_examples,
            "data.test_examples": target_config.data.test_examples,
            "data.monitor_examples": 0,
        },
    )
    workdir = Path(target_workdir) / SOURCES_DIR / f"{source}_{epochs}ep"
    log(f"Black-box source: zoo entry {source}, {epochs} epochs, in "
        f"{workdir} (trained once, then reused)")
    train(config, workdir, log=log, verbose=0)
    _, model = load_trained_model(workdir)
    return f"{source} ({epochs} epochs, seed {config.train.seed})", config, (
        model)


def _check_same_data(config, target_config, source):
    if config.data.dataset != target_config.data.dataset:
        raise ConfigError(
            f"`source` '{source}' was trained on {config.data.dataset}, the "
            f"target on {target_config.data.dataset}; choose a source "
            "trained on the same dataset")
