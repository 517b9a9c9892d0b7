"""One training run in a workdir: data, model, resume, fit, evaluation.

Workdir layout:
    config.json             the resolved experiment config (compared on resume)
    checkpoints/            tf.train checkpoints, one per epoch (resume)
    logs/                   TensorBoard
    history.csv             per-epoch metrics
    network.weights.h5      the trained network (written once training ends)
    command.txt             the command line that started the run
    results.json, results.md  the final evaluation on the test set
    base/                   the base model a gated method starts from, when
                            none was given

Under multi-worker training every worker runs this same code on the same
--workdir (a shared filesystem); only the chief writes into it, the others
write into throw-away folders (distribution.WorkerPaths).
"""

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from anpvs_tf import config as config_lib
from anpvs_tf import data
from anpvs_tf import files
from anpvs_tf import precision
from anpvs_tf.callbacks import EpochCheckpoint
from anpvs_tf.callbacks import GateFreeze
from anpvs_tf.callbacks import HistoryLog
from anpvs_tf.config import FROM_BASE_METHODS
from anpvs_tf.config import GATED_METHODS
from anpvs_tf.config import ConfigError
from anpvs_tf.distribution import WorkerPaths
from anpvs_tf.distribution import agree_across_workers
from anpvs_tf.distribution import check_global_batch
from anpvs_tf.distribution import distribute_batches
from anpvs_tf.distribution import is_multi_worker
from anpvs_tf.distribution import make_strategy
from anpvs_tf.evaluation.results import evaluate_model
from anpvs_tf.evaluation.results import format_results
from anpvs_tf.guards import DivergenceGuard
from anpvs_tf.guards import check_usable
from anpvs_tf.model import ANPVSModel
from anpvs_tf.optimizers import make_optimizers
from anpvs_tf.registry import build_network
from anpvs_tf.serving import EXPORT_ENTRIES

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
COMMAND_FILE = "command.txt"
NETWORK_FILE = "network.weights.h5"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
BASE_DIR = "base"
# Everything train.py (and evaluate.py / export.py with their default
# outputs) writes into a workdir, as a files.foreign_entries layout:
# --overwrite deletes these and nothing else, and refuses a workdir that
# holds anything more, here or in base/, export/ or a black-box source.
WORKDIR_ENTRIES = dict.fromkeys({
    CONFIG_FILE, CHECKPOINT_DIR, "logs", HISTORY_FILE, NETWORK_FILE,
    COMMAND_FILE, RESULTS_FILE, "results.md", "evaluation.json",
    "evaluation.md", "evaluation_accuracy_vs_eps.png",
    "evaluation_vulnerability.png",
})
WORKDIR_ENTRIES.update({
    BASE_DIR: WORKDIR_ENTRIES,  # a workdir in its own right
    "export": dict.fromkeys(EXPORT_ENTRIES),
    "blackbox_sources": {"*": WORKDIR_ENTRIES},  # one workdir per source
})


def load_split(data_config, split):
    """Arrays of a split: "train", "validation" or "test".

    The validation split is `validation_examples` training examples held
    out for hyper-parameter search: the first ones of a fixed random order
    of the training set (seed 0); "train" is never any of them. A training
    subset (--train_examples) is taken from the rest of that same order
    (the embedded MNIST is sorted by class, so a prefix would hold only a
    few digits). A test subset is a prefix of the fixed test order.
    """
    images, labels = data.load_arrays(
        data_config.dataset,
        "test" if split == "test" else "train",
        data_config.source,
        data_config.data_dir,
    )
    if split == "test":
        return data.take_examples(images, labels, data_config.test_examples)
    held_out = data_config.validation_examples
    if data_config.train_examples is None and not held_out:
        return images, labels
    order = np.random.RandomState(0).permutation(len(labels))
    if held_out >= len(order):
        raise ConfigError(
            f"--validation_examples={held_out} leaves no training example "
            f"of the {len(order)}; hold out fewer"
        )
    if split == "validation":
        order = order[:held_out]
        return images[order], labels[order]
    order = order[held_out:]
    return data.take_examples(
        images[order], labels[order], data_config.train_examples
    )


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
    return ANPVSModel(
        network,
        method=method,
        attack=config.attack,
        eval_attack=config.attack,
        kl_weight=config.loss.kl_weight,
        kl_normalizer=config.loss.kl_normalizer or num_train_examples,
        vs_weight=config.loss.vs_weight,
        adv_weight=config.loss.adv_weight,
        trades_weight=config.loss.trades_weight,
        l2_weight=config.loss.l2_weight,
        seed=config.train.seed,
    )


def read_config(workdir):
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(
            f"no trained run in '{workdir}' ({CONFIG_FILE} is missing); "
            "pass the --workdir that train.py wrote"
        )
    stored = files.read_json(path, _DAMAGED_CONFIG)
    if not _is_our_config(stored):
        raise ConfigError(
            f"'{path}' is not a config train.py wrote; pass the --workdir "
            "of a train.py run"
        )
    return config_lib.from_dict(stored)


_DAMAGED_CONFIG = (
    "train.py wrote it atomically, so it was changed afterwards: restore "
    "it, or train again in a new --workdir"
)


def _is_our_config(stored):
    """Whether a parsed config.json has the layout train.py writes."""
    return isinstance(stored, dict) and set(stored) == set(
        config_lib.ExperimentConfig().to_dict()
    )


def load_trained_model(workdir):
    """Rebuilds a finished run's model; returns (config, model).

    A damaged weights file, or a network that diverged or collapsed, is a
    one-line error, never a result.
    """
    workdir = Path(workdir)
    config = read_config(workdir)
    weights = workdir / NETWORK_FILE
    if not weights.exists():
        raise ConfigError(
            f"'{workdir}' holds no finished training ({NETWORK_FILE} is "
            "missing); run train.py with the same flags to finish it"
        )
    input_shape, num_classes = data.DATASET_INFO[config.data.dataset]
    model = build_model(config, input_shape, num_classes, 1)
    try:
        model.network.load_weights(weights)
    except Exception as error:  # h5py and Keras raise many kinds
        summary = (str(error).strip().splitlines() or [""])[0][:120]
        raise files.DamagedFileError(
            f"'{weights}' is damaged ({type(error).__name__}: {summary}); "
            f"delete it and {RESULTS_FILE} beside it, then run the same "
            "train.py command: it rewrites both from the last checkpoint"
        ) from None
    check_usable(model.network, f"'{workdir}'")
    model.compile(jit_compile=False)
    return config, model


# Config fields that hold paths: stored resolved, compared by target.
PATH_KEYS = ("data.data_dir", "train.base_workdir")


def resolve_paths(config):
    """The config with its path fields made absolute, symlinks resolved,
    so the same folder spelled differently is the same run."""
    values = {}
    for key in PATH_KEYS:
        section, field = key.split(".")
        value = getattr(getattr(config, section), field)
        if value is not None:
            values[key] = str(Path(value).expanduser().resolve())
    return config_lib.replace(config, **values)


def _comparable(config_dict):
    """A stored config as the current code reads it (keys added since get
    their defaults, paths resolved), minus the strategy: results do not
    depend on the number of replicas (tested), so a run may resume on
    other hardware."""
    try:
        config_dict = json.loads(resolve_paths(
            config_lib.from_dict(config_dict)).to_json())
    except (TypeError, ConfigError):  # keys this version does not know
        config_dict = dict(config_dict)
    config_dict["train"] = {
        k: v for k, v in config_dict.get("train", {}).items()
        if k != "strategy"
    }
    return config_dict


def holds_run(config, workdir):
    """Whether `workdir` holds a run of `config` (to resume or reuse);
    False for a missing workdir."""
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        return False
    stored = files.read_json(path, _DAMAGED_CONFIG)
    return _is_our_config(stored) and (
        _comparable(stored) == _comparable(config.to_dict()))


def _has_trained(workdir):
    """Whether a workdir holds any result of training: a checkpoint, the
    network, results or a base model."""
    checkpoints = workdir / CHECKPOINT_DIR
    return (
        (checkpoints.is_dir() and any(checkpoints.iterdir()))
        or any((workdir / name).exists()
               for name in (NETWORK_FILE, RESULTS_FILE, BASE_DIR))
    )


_OVERWRITE_DELETES = (
    "--overwrite to delete that run (its checkpoints, network, logs, "
    "results, base model and default evaluation and export)"
)


def _check_workdir(config, workdir, overwrite):
    """Whether to clear `workdir` before the run; ConfigError if it holds
    something this run must not touch. Reads only, deletes nothing."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"--workdir '{workdir}' is a file, not a folder; choose another "
            "--workdir"
        )
    if not workdir.exists() or not any(workdir.iterdir()):
        return False
    foreign = files.foreign_entries(workdir, WORKDIR_ENTRIES)
    path = workdir / CONFIG_FILE
    stored = files.read_json(path, _DAMAGED_CONFIG) if path.exists() else None
    if foreign or not _is_our_config(stored):
        what = (f"files train.py did not write ({', '.join(foreign[:3])})"
                if foreign else "no train.py run")
        raise ConfigError(
            f"'{workdir}' is not empty and holds {what}; nothing was "
            "changed: choose a new or empty --workdir"
        )
    previous = _comparable(stored)
    current = _comparable(config.to_dict())
    if previous != current and not overwrite:
        if not _has_trained(workdir):
            # A run that failed before its first epoch: nothing to lose.
            return True
        changed = config_lib.first_difference(previous, current)
        raise ConfigError(
            f"'{workdir}' holds a run with a different config "
            f"({changed}); choose another --workdir, or pass "
            f"{_OVERWRITE_DELETES}"
        )
    if overwrite and (workdir / BASE_DIR).exists():
        # base/ is deleted too: it must be ours all the way down.
        _check_workdir(config, workdir / BASE_DIR, overwrite=True)
    return overwrite


def _prepare_workdir(config, workdir, overwrite, chief=True):
    """Creates the workdir, or checks that it holds the same run.

    With `overwrite`, deletes only what train.py writes (WORKDIR_ENTRIES)
    and refuses a workdir holding anything else. Only the chief creates,
    deletes or writes; the other workers check.
    """
    if not chief:
        # Read-only checks; under overwrite the chief may be clearing the
        # workdir right now, so only it checks.
        if not overwrite:
            _check_workdir(config, workdir, overwrite)
        return
    clear = _check_workdir(config, workdir, overwrite)
    if clear:
        files.remove_owned(workdir, WORKDIR_ENTRIES, "a train.py workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_text(workdir / CONFIG_FILE, config.to_json())


def base_config(config):
    """The config of the base model a gated method trains first."""
    return config_lib.assign(
        config,
        **{"train.method": config.train.base_method,
           "train.epochs": config.train.base_epochs,
           "train.gate_epochs": None,
           "train.base_workdir": None},
    )


def _check_base(config):
    """A given --base_workdir must hold a finished run of the same
    architecture: checked before anything is created."""
    if config.train.base_workdir is None:
        return
    base_dir = Path(config.train.base_workdir)
    if not base_dir.is_dir():
        raise ConfigError(
            f"--base_workdir '{base_dir}' does not exist; pass the workdir "
            "of a finished train.py run, or leave it out to train a base"
        )
    base_run = read_config(base_dir)
    if not (base_dir / NETWORK_FILE).exists():
        raise ConfigError(
            f"--base_workdir '{base_dir}' holds no finished training "
            f"({NETWORK_FILE} is missing); finish that run first"
        )
    if base_run.model.architecture != config.model.architecture:
        raise ConfigError(
            f"base model in '{base_dir}' is a "
            f"{base_run.model.architecture}, not a "
            f"{config.model.architecture}; pass a matching --base_workdir"
        )


def _base_workdir(config, workdir, log, verbose):
    """The base a gated method starts from; trains it if none was given."""
    if config.train.base_workdir is not None:
        return Path(config.train.base_workdir)
    base_dir = workdir / BASE_DIR
    log(f"Training the base model ({config.train.base_epochs} epochs, "
        f"method {config.train.base_method}) in {base_dir}")
    train(base_config(config), base_dir, log=log, verbose=verbose)
    return base_dir


def copy_base_weights(config, base_dir, network, log):
    """Copies base weights into the gated network, layer by layer."""
    base_config, base_model = load_trained_model(base_dir)
    if base_config.model.architecture != config.model.architecture:
        raise ConfigError(
            f"base model in '{base_dir}' is a "
            f"{base_config.model.architecture}, not a "
            f"{config.model.architecture}; pass a matching --base_workdir"
        )
    for layer in base_model.network.layers:
        if layer.weights:
            network.get_layer(layer.name).set_weights(layer.get_weights())
    log(f"Initialised from the base model in {base_dir}")


def _compiled_model(config, strategy, num_train_examples):
    """Builds and compiles the model (and its optimizers) in the strategy."""
    train_config = config.train
    with strategy.scope():
        model = build_model(
            config, *data.DATASET_INFO[config.data.dataset],
            num_train_examples,
        )
        steps_per_epoch = num_train_examples // train_config.batch_size
        weight_optimizer, gate_optimizer = make_optimizers(
            train_config, train_config.epochs * steps_per_epoch
        )
        model.compile(weight_optimizer, gate_optimizer, jit_compile=False)
    return model


def _checkpoint(model):
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
    )


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
            f"--workdir, or pass {_OVERWRITE_DELETES}"
        )
    return None


def _weights_digest(network):
    """sha256 of the network's weights: equal on workers in sync."""
    digest = hashlib.sha256()
    for weight in network.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def train(config, workdir, overwrite=False, log=print, verbose="auto",
          command=None):
    """Trains (or resumes) `config` in `workdir`; returns the results dict.

    `command`, the command line that started the run, is kept in the
    workdir (command.txt, for the export's model card).

    Under multi-worker training the chief returns the results and the
    other workers None.
    """
    # First: multi_worker configures TensorFlow's runtime, which has to
    # happen before any op runs.
    strategy = make_strategy(config.train.strategy)
    check_global_batch(strategy, config.train.batch_size)
    config = resolve_paths(config)
    paths = WorkerPaths(strategy, workdir)
    try:
        return _train(config, Path(workdir), overwrite, log, verbose,
                      strategy, paths, command)
    finally:
        paths.cleanup()


def _train(config, workdir, overwrite, log, verbose, strategy, paths,
           command=None):
    # Everything is checked before the workdir is touched, so a mistake
    # leaves nothing behind to conflict with the corrected command.
    train_images, train_labels = load_split(config.data, "train")
    test_images, test_labels = load_split(config.data, "test")
    if config.train.batch_size > len(train_labels):
        raise ConfigError(
            f"--batch_size={config.train.batch_size} is larger than the "
            f"{len(train_labels)} training examples; lower --batch_size or "
            "use more --train_examples"
        )
    _check_base(config)
    _prepare_workdir(config, workdir, overwrite, paths.chief)
    command_path = workdir / COMMAND_FILE
    if command and paths.chief and not command_path.exists():
        # The first command of the run; resuming repeats it.
        files.write_text(command_path, command + "\n")
    # Nobody reads the workdir before the chief has prepared it.
    agree_across_workers(strategy, int(overwrite), "--overwrite")
    results_path = workdir / RESULTS_FILE
    if results_path.exists():
        log(f"{workdir} is already trained; results from {results_path}")
        return files.read_json(
            results_path,
            f"delete it and run the same command: it re-evaluates the "
            f"network in {NETWORK_FILE}")

    train_config = config.train
    checkpoint_dir = workdir / CHECKPOINT_DIR
    resuming = agree_across_workers(
        strategy,
        int(bool(checkpoint_candidates(checkpoint_dir, log=lambda _: None))),
        "whether a checkpoint exists",
    )
    base_dir = None
    if not resuming and train_config.method in FROM_BASE_METHODS:
        # Before this run's model exists: the base trains on its own.
        base_dir = _base_workdir(config, workdir, log, verbose)
    keras.utils.set_random_seed(train_config.seed)
    model = _compiled_model(config, strategy, len(train_labels))
    checkpoint = _checkpoint(model)
    restored = restore_latest(checkpoint, checkpoint_dir, log)
    if restored:
        log(f"Resuming from {restored} (epoch "
            f"{int(checkpoint.epoch.numpy())} of {train_config.epochs})")
    elif base_dir is not None:
        with strategy.scope():
            copy_base_weights(config, base_dir, model.network, log)
    initial_epoch = agree_across_workers(
        strategy, int(checkpoint.epoch.numpy()), "the epoch to resume from"
    )
    # Every worker saves (a save may read variables from all of them);
    # only the chief's checkpoints land in the workdir.
    manager = tf.train.CheckpointManager(
        checkpoint, paths(checkpoint_dir), max_to_keep=2
    )

    train_ds, steps_per_epoch = data.train_dataset(
        train_images,
        train_labels,
        train_config.batch_size,
        seed=train_config.seed,
        initial_epoch=initial_epoch,
        augment=config.data.augment,
    )
    train_ds = distribute_batches(strategy, train_ds, train_config.batch_size)
    monitor = config.data.monitor_examples
    monitor_ds = None
    if monitor:
        monitor_ds = data.eval_dataset(
            test_images[:monitor], test_labels[:monitor],
            config.eval.batch_size,
        )
    callbacks = [
        # First: a diverged epoch is never logged or checkpointed.
        DivergenceGuard(),
        # Before the checkpoint: a kill between the two repeats the epoch,
        # whose row the resumed run then replaces, so no row is missing.
        HistoryLog(paths(workdir / HISTORY_FILE), initial_epoch),
        EpochCheckpoint(manager, checkpoint.epoch, checkpoint.seconds),
        keras.callbacks.TensorBoard(
            str(paths(workdir / "logs")), write_graph=False
        ),
    ]
    if train_config.gate_epochs is not None and model.gates:
        callbacks.append(GateFreeze(train_config.gate_epochs))
    log(f"Training {train_config.method} for {train_config.epochs} epochs "
        f"({steps_per_epoch} steps of {train_config.batch_size} over "
        f"{strategy.num_replicas_in_sync} replica(s)) in {workdir}")
    if initial_epoch < train_config.epochs:
        model.fit(
            train_ds,
            epochs=train_config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=monitor_ds,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the dataset is shuffled, per seed and epoch
        )
    check_usable(model.network, f"'{workdir}' after training")
    if paths.chief:
        with files.atomic_path(workdir / NETWORK_FILE,
                               suffix=".weights.h5") as temporary:
            model.network.save_weights(temporary)
    if is_multi_worker(strategy):
        log(f"Trained weights digest {_weights_digest(model.network)} "
            "(the same on every worker)")
        # The weights file exists before any worker goes on (a gated run's
        # workers all read their base's).
        agree_across_workers(strategy, 1, "the end of training")
        if not paths.chief:
            log("Done; the chief evaluates and writes the results")
            return None
        # Evaluated by the chief alone, on one device: exactly what
        # evaluate.py reports for this workdir.
        _, model = load_trained_model(workdir)

    log(f"Evaluating on {len(test_labels)} test examples "
        f"(PGD-{config.eval.attack.num_steps}, eps "
        f"{config.eval.attack.epsilon})")
    results = evaluate_model(model, test_images, test_labels, config.eval)
    results.update(
        method=train_config.method,
        architecture=config.model.architecture,
        dataset=config.data.dataset,
        train_examples=len(train_labels),
        epochs=train_config.epochs,
        # Whole training time, across interruptions; per-epoch scoring of
        # the monitor slice included.
        train_seconds=float(checkpoint.seconds.numpy()),
    )
    files.write_text(workdir / "results.md", format_results(results) + "\n")
    # Last: results.json marks the run finished.
    files.write_json(results_path, results)
    log(format_results(results))
    return results
