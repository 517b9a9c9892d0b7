"""A training workdir: its layout, the run it holds, and its checks.

Layout:
    config.json             the resolved experiment config (compared on resume)
    checkpoints/            tf.train checkpoints, one per epoch (resume)
    logs/                   TensorBoard
    history.csv             per-epoch metrics
    network.weights.h5      the trained network (written once training ends)
    command.txt             the command line that started the run
    results.json, results.md  the final evaluation on the test set
    base/                   the base model a gated method starts from, when
                            none was given
    export/                 the compact SavedModel (serve.export)
    summary.json, summary.md, training_curve.png
                            what the run delivers (delivery.py)

Nothing here deletes a file that this project did not write: a folder
holding anything else is refused, whatever config.json it holds.
"""

import json
from pathlib import Path

from anpvs_tf import config as config_lib
from anpvs_tf import files
from anpvs_tf.assembly import build_model
from anpvs_tf.datasets import DATASET_INFO
from anpvs_tf.errors import ConfigError
from anpvs_tf.guards import check_usable
from anpvs_tf.serving import EXPORT_ENTRIES

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
COMMAND_FILE = "command.txt"
NETWORK_FILE = "network.weights.h5"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
BASE_DIR = "base"
EXPORT_DIR = "export"
SUMMARY_FILE = "summary.json"
SUMMARY_TABLE = "summary.md"
CURVE_FILE = "training_curve.png"
# Everything train.py (and evaluate.py / export.py with their default
# outputs) writes into a workdir, as a files.foreign_entries layout:
# `overwrite` deletes these and nothing else, and refuses a workdir that
# holds anything more, here or in base/, export/ or a black-box source.
WORKDIR_ENTRIES = dict.fromkeys({
    CONFIG_FILE, CHECKPOINT_DIR, "logs", HISTORY_FILE, NETWORK_FILE,
    COMMAND_FILE, RESULTS_FILE, "results.md", "evaluation.json",
    "evaluation.md", "evaluation_accuracy_vs_eps.png",
    "evaluation_vulnerability.png", SUMMARY_FILE, SUMMARY_TABLE,
    CURVE_FILE,
})
WORKDIR_ENTRIES.update({
    BASE_DIR: WORKDIR_ENTRIES,  # a workdir in its own right
    EXPORT_DIR: dict.fromkeys(EXPORT_ENTRIES),
    "blackbox_sources": {"*": WORKDIR_ENTRIES},  # one workdir per source
})


def read_config(workdir):
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(
            f"no trained run in '{workdir}' ({CONFIG_FILE} is missing); "
            "pass the `workdir` that train.py wrote"
        )
    stored = files.read_json(path, DAMAGED_CONFIG)
    if not _is_our_config(stored):
        raise ConfigError(
            f"'{path}' is not a config train.py wrote; pass the `workdir` "
            "of a train.py run"
        )
    return config_lib.from_dict(stored)


DAMAGED_CONFIG = (
    "train.py wrote it atomically, so it was changed afterwards: restore "
    "it, or train again in a new `workdir`"
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
    input_shape, num_classes = DATASET_INFO[config.data.dataset]
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
    stored = files.read_json(path, DAMAGED_CONFIG)
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


OVERWRITE_DELETES = (
    "`overwrite` to delete that run (its checkpoints, network, logs, "
    "results, base model and default evaluation and export)"
)


def check_workdir(config, workdir, overwrite):
    """Whether to clear `workdir` before the run; ConfigError if it holds
    something this run must not touch. Reads only, deletes nothing."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"`workdir` '{workdir}' is a file, not a folder; choose another "
            "`workdir`"
        )
    if not workdir.exists() or not any(workdir.iterdir()):
        return False
    foreign = files.foreign_entries(workdir, WORKDIR_ENTRIES)
    path = workdir / CONFIG_FILE
    stored = files.read_json(path, DAMAGED_CONFIG) if path.exists() else None
    if foreign or not _is_our_config(stored):
        what = (f"files train.py did not write ({', '.join(foreign[:3])})"
                if foreign else "no train.py run")
        raise ConfigError(
            f"'{workdir}' is not empty and holds {what}; nothing was "
            "changed: choose a new or empty `workdir`"
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
            f"({changed}); choose another `workdir`, or pass "
            f"{OVERWRITE_DELETES}"
        )
    if overwrite and (workdir / BASE_DIR).exists():
        # base/ is deleted too: it must be ours all the way down.
        check_workdir(config, workdir / BASE_DIR, overwrite=True)
    return overwrite


def prepare_workdir(config, workdir, overwrite):
    """Creates the workdir, or checks that it holds the same run.

    With `overwrite`, deletes only what train.py writes (WORKDIR_ENTRIES)
    and refuses a workdir holding anything else. Under multi-worker
    training only the chief calls this; the other workers call
    check_workdir once the chief is done (a worker that looked earlier
    could catch the chief half-way through writing and refuse the run).
    """
    clear = check_workdir(config, workdir, overwrite)
    if clear:
        files.remove_owned(workdir, WORKDIR_ENTRIES, "a train.py workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_text(workdir / CONFIG_FILE, config.to_json())
