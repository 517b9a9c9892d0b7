"""One training run in a workdir: resume, fit, final evaluation.

The orchestration only: the workdir's layout and checks (workdir), the
model (assembly), the base model (base) and checkpoints (checkpoints) live
below it, so nothing else needs to import this module.

Under multi-worker training every worker runs this same code on the same
workdir (a shared filesystem); only the chief writes into it, the others
write into throw-away folders (distribution.WorkerPaths).
"""

import hashlib
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from anpvs_tf import data
from anpvs_tf import files
from anpvs_tf.assembly import build_model
from anpvs_tf.assembly import compile_model
from anpvs_tf.assembly import fit_model
from anpvs_tf.base import BASE_TEST_EXAMPLES
from anpvs_tf.base import base_config
from anpvs_tf.base import check_base
from anpvs_tf.base import copy_base_weights
from anpvs_tf.callbacks import EpochCheckpoint
from anpvs_tf.callbacks import HistoryLog
from anpvs_tf.callbacks import PhaseProgress
from anpvs_tf.checkpoints import checkpoint_candidates
from anpvs_tf.checkpoints import compact_part
from anpvs_tf.checkpoints import make_checkpoint
from anpvs_tf.checkpoints import restore_latest
from anpvs_tf.checkpoints import with_compact
from anpvs_tf.compact_training import fit_in_phases
from anpvs_tf.datasets import DATASET_INFO
from anpvs_tf.distribution import WorkerPaths
from anpvs_tf.distribution import agree_across_workers
from anpvs_tf.distribution import check_global_batch
from anpvs_tf.distribution import distribute_batches
from anpvs_tf.distribution import make_strategy
from anpvs_tf.errors import ConfigError
from anpvs_tf.evaluation.results import evaluate_model
from anpvs_tf.evaluation.results import format_results
from anpvs_tf.guards import DivergenceGuard
from anpvs_tf.guards import check_usable
from anpvs_tf.methods import FROM_BASE_METHODS
from anpvs_tf.replicas import is_multi_worker
from anpvs_tf.workdir import BASE_DIR
from anpvs_tf.workdir import CHECKPOINT_DIR
from anpvs_tf.workdir import COMMAND_FILE
from anpvs_tf.workdir import HISTORY_FILE
from anpvs_tf.workdir import NETWORK_FILE
from anpvs_tf.workdir import RESULTS_FILE
from anpvs_tf.workdir import holds_run
from anpvs_tf.workdir import load_trained_model
from anpvs_tf.workdir import prepare_workdir
from anpvs_tf.workdir import resolve_paths


def _base_workdir(config, workdir, log, verbose):
    """The base a gated method starts from; trains it if none was given."""
    if config.train.base_workdir is not None:
        return Path(config.train.base_workdir)
    base_dir = workdir / BASE_DIR
    log(f"Training the base model ({config.train.base_epochs} epochs, "
        f"method {config.train.base_method}) in {base_dir}")
    base = train(base_config(config), base_dir, log=log, verbose=verbose,
                 report=False, test_examples=BASE_TEST_EXAMPLES)
    if base is not None:
        log(f"Base model: {100 * base['clean_acc']:.2f} % clean, "
            f"{100 * base['pgd_acc']:.2f} % PGD-"
            f"{base['attack']['num_steps']} (first "
            f"{base['test_examples']:,} test images)")
    return base_dir


def _compiled_model(config, strategy, num_train_examples):
    """Builds and compiles the model (and its optimizers) in the strategy."""
    with strategy.scope():
        model = build_model(
            config, *DATASET_INFO[config.data.dataset],
            num_train_examples,
        )
        return compile_model(model, config, num_train_examples)


def _weights_digest(network):
    """sha256 of the network's weights: equal on workers in sync."""
    digest = hashlib.sha256()
    for weight in network.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def train(config, workdir, overwrite=False, log=print, verbose="auto",
          command=None, report=True, test_examples=None,
          evaluation_split="test", announce=None):
    """Trains (or resumes) `config` in `workdir`; returns the results dict.

    `command`, the command line that started the run, is kept in the
    workdir (command.txt, for the export's model card).

    Under multi-worker training the chief returns the results and the
    other workers None. `report`: log the results table at the end.
    `test_examples`: evaluate on only the first N of the config's test
    images (a base model's starting-point report). `evaluation_split`:
    "validation" scores the run on the held-out training images instead,
    so that a search's base model never reads the test set.
    `announce(train_examples, test_examples)` runs once the strategy
    exists and the data is loaded, before anything is created: train.py's
    header builds a network, which must wait for the strategy.
    """
    # First: multi_worker configures TensorFlow's runtime, which has to
    # happen before any op runs.
    strategy = make_strategy(config.train.strategy)
    check_global_batch(strategy, config.train.batch_size)
    config = resolve_paths(config)
    paths = WorkerPaths(strategy, workdir)
    try:
        return _train(config, Path(workdir), overwrite, log, verbose,
                      strategy, paths, command, report, test_examples,
                      evaluation_split, announce)
    finally:
        paths.cleanup()


def _train(config, workdir, overwrite, log, verbose, strategy, paths,
           command=None, report=True, test_examples=None,
           evaluation_split="test", announce=None):
    # Everything is checked before the workdir is touched, so a mistake
    # leaves nothing behind to conflict with the corrected command.
    train_images, train_labels = data.load_split(config.data, "train")
    test_images, test_labels = data.load_split(config.data, evaluation_split)
    test_images = test_images[:test_examples]
    test_labels = test_labels[:test_examples]
    if announce is not None:
        announce(len(train_labels), len(test_labels))
    if config.train.batch_size > len(train_labels):
        raise ConfigError(
            f"`train.batch_size`={config.train.batch_size} is larger than the "
            f"{len(train_labels)} training examples; lower "
            "`train.batch_size` or "
            "use more `data.train_examples`"
        )
    check_base(config)
    if paths.chief:
        prepare_workdir(config, workdir, overwrite)
        command_path = workdir / COMMAND_FILE
        if command and not command_path.exists():
            # The first command of the run; resuming repeats it.
            files.write_text(command_path, command + "\n")
    # Nobody reads the workdir before the chief has prepared it.
    agree_across_workers(strategy, int(overwrite), "`overwrite`")
    if not paths.chief and not holds_run(config, workdir):
        # Checked only now: earlier, the chief may have been half-way
        # through writing the workdir.
        raise ConfigError(
            f"this worker's settings differ from the chief's run in "
            f"'{workdir}'; start every worker with the same command"
        )
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
    checkpoint = make_checkpoint(model)
    restored = restore_latest(checkpoint, checkpoint_dir, log)
    if restored:
        log(f"Resuming from {restored} (epoch "
            f"{int(checkpoint.epoch.numpy())} of {train_config.epochs})")
    elif base_dir is not None:
        with strategy.scope():
            copy_base_weights(config, base_dir, model.network, log)
    frozen_at_step = int(checkpoint.gates_frozen_at_step.numpy())
    if frozen_at_step:
        # Frozen at the sparsity target in an epoch before the checkpoint.
        model.freeze_gates()
    initial_epoch = agree_across_workers(
        strategy, int(checkpoint.epoch.numpy()), "the epoch to resume from"
    )
    # Every worker saves (a save may read variables from all of them);
    # only the chief's checkpoints land in the workdir.
    manager = tf.train.CheckpointManager(
        checkpoint, paths(checkpoint_dir), max_to_keep=2
    )

    monitor = config.data.monitor_examples
    monitor_ds = None
    if monitor:
        monitor_ds = data.eval_dataset(
            test_images[:monitor], test_labels[:monitor],
            config.eval.batch_size,
        )
    history = HistoryLog(paths(workdir / HISTORY_FILE), initial_epoch)
    steps_per_epoch = len(train_labels) // train_config.batch_size
    progress = None
    if verbose in ("auto", 1):
        # One bar for the whole run (its ETA), instead of Keras' own.
        progress = PhaseProgress(train_config.epochs, steps_per_epoch,
                                 initial_epoch)
        verbose = 0

    managers = {id(model): manager}

    def compact_phase(compact):
        """The compact network's own checkpoint (resumed where the run
        stopped in its phase) and what it keeps."""
        compact_checkpoint = with_compact(checkpoint, compact)
        if restored and initial_epoch > train_config.gate_epochs:
            # A compact-phase checkpoint holds the compact model's own
            # state; one written by a masked fine-tune (older runs) holds
            # none, and what was derived from its gated network stands.
            compact_part(compact).restore(restored).expect_partial()
        managers[id(compact)] = tf.train.CheckpointManager(
            compact_checkpoint, paths(checkpoint_dir), max_to_keep=2)
        full, kept = (sum(int(np.prod(v.shape)) for v in m.weight_variables)
                      for m in (model, compact))
        log(f"Gates frozen; the fine-tune trains the compact network "
            f"({kept:,} of {full:,} weights)")

    def fit(trainee, first, last, *phase_callbacks):
        if first >= last:
            return
        callbacks = [
            # First: a diverged epoch is never logged or checkpointed.
            DivergenceGuard(),
            # Before the checkpoint: a kill between the two repeats the
            # epoch, whose row the resumed run then replaces.
            history,
            EpochCheckpoint(managers[id(trainee)], checkpoint.epoch,
                            checkpoint.seconds),
            keras.callbacks.TensorBoard(
                str(paths(workdir / "logs")), write_graph=False),
        ]
        if progress is not None:
            callbacks.append(progress)
        callbacks.extend(phase_callbacks)
        fit_model(
            trainee, config, train_images, train_labels,
            initial_epoch=first, epochs=last,
            validation_data=monitor_ds,
            callbacks=callbacks,
            verbose=verbose,
            distribute=lambda dataset: distribute_batches(
                strategy, dataset, train_config.batch_size),
        )

    log(f"Training {train_config.method} for {train_config.epochs} epochs "
        f"({steps_per_epoch} steps of {train_config.batch_size} over "
        f"{strategy.num_replicas_in_sync} replica(s)) in {workdir}")
    fit_in_phases(model, config, strategy, len(train_labels), fit,
                  initial_epoch=initial_epoch, on_compact=compact_phase,
                  log=log, frozen_at_step=checkpoint.gates_frozen_at_step)
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

    log(f"Evaluating on {len(test_labels)} {evaluation_split} examples "
        f"(PGD-{config.eval.attack.num_steps}, eps "
        f"{config.eval.attack.epsilon})")
    results = evaluate_model(model, test_images, test_labels, config.eval,
                             log=log)
    results.update(
        method=train_config.method,
        evaluation_split=evaluation_split,
        architecture=config.model.architecture,
        dataset=config.data.dataset,
        train_examples=len(train_labels),
        epochs=train_config.epochs,
        # Whole training time, across interruptions; per-epoch scoring of
        # the monitor slice included.
        train_seconds=float(checkpoint.seconds.numpy()),
    )
    if train_config.freeze_at_sparsity is not None:
        # 0: the target was not reached; the gates froze after gate_epochs.
        results["gates_frozen_at_step"] = int(
            checkpoint.gates_frozen_at_step.numpy())
    files.write_text(workdir / "results.md", format_results(results) + "\n")
    # Last: results.json marks the run finished.
    files.write_json(results_path, results)
    if report:
        log(format_results(results))
    return results
