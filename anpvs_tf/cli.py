"""What the scripts share: a quiet start, one override path, one-line errors.

A script calls `start()` first, before anything imports TensorFlow: it
selects the TensorFlow backend and imports TensorFlow with its C++ start-up
banners (oneDNN, CUDA stubs, cuInit on a CPU machine) hidden. Setting
TF_CPP_MIN_LOG_LEVEL yourself (e.g. TF_CPP_MIN_LOG_LEVEL=0) shows
TensorFlow's C++ log again. It also turns on TensorFlow's oneDNN kernels,
which TensorFlow enables by itself only on CPUs with AVX-512 VNNI or newer:
on an AVX2 CPU the stock ones ran LeNet's one-channel first conv 2.3-3x
slower and the main command 1.2x slower (bench/results/onednn.md);
TF_ENABLE_ONEDNN_OPTS=0 keeps them off. Importing this module changes
nothing.

Settings reach a config one way: the zoo entry's recipe, then the common
flags (thin aliases of config keys, CONFIG_FLAGS), then every
--override=section.field=value, all through config.replace.
"""

import os
import re
import sys
import tempfile

from absl import app
from absl import flags

from anpvs_tf import config as config_lib
from anpvs_tf.errors import ConfigError
from anpvs_tf.errors import DamagedFileError
from anpvs_tf.errors import DataError
from anpvs_tf.errors import ForeignFilesError
from anpvs_tf.errors import UnusableNetworkError

# Shown at the end of every script's --help.
LOG_HELP = ("TensorFlow's C++ start-up log is hidden; set "
            "TF_CPP_MIN_LOG_LEVEL=0 to see it.")


def start():
    """Selects the TensorFlow backend, turns oneDNN on (unless the user
    set TF_ENABLE_ONEDNN_OPTS) and imports TensorFlow quietly.

    Its start-up messages are written by C++ before any log level is read,
    so only a redirect of file descriptor 2 hides them; should the import
    fail, what it wrote is replayed, so nothing of an error is lost. The
    INFO lines of TensorFlow's Python side (every file a SavedModel or
    checkpoint save writes) are turned off too: warnings still show.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "tensorflow" not in sys.modules:
        _import_tensorflow()
    import tensorflow as tf
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("WARNING")
    tf.get_logger().addFilter(_drop_retracing_notes)


def _drop_retracing_notes(record):
    """Drops TensorFlow's "N out of the last N calls ... triggered
    tf.function retracing" warning: it counts every new attack the
    evaluation traces once (one function per kind of attack, by design),
    not a retrace of the same one."""
    return "triggered tf.function retracing" not in record.getMessage()


def _import_tensorflow():
    # A level other than the quietest is the user's choice: the start-up
    # banners show. "3" is also what a quiet parent (bench/quickstart.py
    # running train.py) hands its children, whose banners are written
    # whatever the level, so they stay hidden there too.
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        import tensorflow  # noqa: F401
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# === Config flags ===
# The common flags, each an alias of one config key: the one flag -> config
# map of every script (a script defines the ones it offers).
CONFIG_FLAGS = {
    "dataset": "data.dataset",
    "data_source": "data.source",
    "data_dir": "data.data_dir",
    "train_examples": "data.train_examples",
    "test_examples": "data.test_examples",
    "monitor_examples": "data.monitor_examples",
    "validation_examples": "data.validation_examples",
    "augment": "data.augment",
    "gate_init": "model.gate_concentration1_init",
    "epsilon": "attack.epsilon",
    "pgd_steps": "attack.num_steps",
    "pgd_step_size": "attack.step_size",
    "beta": "loss.kl_weight",
    "kl_normalizer": "loss.kl_normalizer",
    "vs_weight": "loss.vs_weight",
    "trades_beta": "loss.trades_weight",
    "method": "train.method",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "weight_lr": "train.weight_learning_rate",
    "gate_lr": "train.gate_learning_rate",
    "gate_epochs": "train.gate_epochs",
    "freeze_at_sparsity": "train.freeze_at_sparsity",
    "compact_fine_tune": "train.compact_fine_tune",
    "seed": "train.seed",
    "strategy": "train.strategy",
    "mixed_precision": "train.mixed_precision",
    "base_workdir": "train.base_workdir",
    "base_epochs": "train.base_epochs",
    "base_method": "train.base_method",
    "eval_pgd_steps": "eval.attack.num_steps",
    "val_pgd_steps": "eval.attack.num_steps",
    "eval_batch_size": "eval.batch_size",
}
# Alias values that stand for None (a flag cannot be given None).
_NONE_VALUES = {"kl_normalizer": 0}


def define_override_flag():
    flags.DEFINE_multi_string(
        "override", [],
        "Set any config key, repeatable: --override=section.field=value, "
        "e.g. --override=train.decay_fractions=0.5,0.7 or "
        "--override=loss.kl_normalizer=none. The keys are those of "
        "config.json; an override wins over the flag of the same key.")


def config_overrides(flag_values=flags.FLAGS, aliases=CONFIG_FLAGS):
    """{config key: value} of the alias flags a script defines and the
    --override flags. An alias counts when it was given, or when the
    script gives it a default of its own (not None)."""
    overrides = {}
    for name, key in aliases.items():
        if name not in flag_values:
            continue
        flag = flag_values[name]
        if not flag.present and flag.default is None:
            continue
        value = flag.value
        if name in _NONE_VALUES and value == _NONE_VALUES[name]:
            value = None
        overrides[key] = value
    if overrides.get("data.data_dir") and not _given(
            flag_values, "data_source"):
        overrides["data.source"] = "idx"  # an IDX folder implies its source
    if "override" in flag_values:
        for text in flag_values.override:
            key, value = config_lib.parse_override(text)
            overrides[key] = value
    return overrides


def _given(flag_values, name):
    return name in flag_values and flag_values[name].present


def apply_flags(config, flag_values=flags.FLAGS, aliases=CONFIG_FLAGS):
    """The config with the script's flags applied (ConfigError if any value
    is invalid)."""
    return config_lib.replace(config,
                              **config_overrides(flag_values, aliases))


def flag_message(message, flag_values=flags.FLAGS, aliases=CONFIG_FLAGS):
    """A library message with its `config keys` shown as this script's
    flags: `train.epochs` -> --epochs; a key without a flag stays a key
    (settable with --override)."""

    def flag_for(match):
        name = match.group(1)
        if name in flag_values and name not in aliases:
            return f"--{name}"  # an argument of the script (--workdir)
        for flag, key in aliases.items():
            if key == name and flag in flag_values:
                return f"--{flag}"
        return name

    return re.sub(r"`([a-z_][a-z0-9_.]*)`", flag_for, str(message))


# Exit codes: a user mistake (bad flag, refused workdir, damaged file) is 2,
# like a flag that does not parse; a run that failed on its own (it
# diverged) is 1; Ctrl-C is 130.
USAGE_ERRORS = (ConfigError, DataError, DamagedFileError, ForeignFilesError)


def _error(message, code):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def parse_flags(argv):
    """absl's flag parsing, with a bad flag reported in one line, exit 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _error(f"{error} (see --help)", 2)


def _reject_positional(argv):
    extra = argv[1:]
    if extra:
        hint = ""
        if len(extra) == 1 and not extra[0].startswith("-"):
            hint = f"; did you mean --workdir={extra[0]}?"
        _error(f"unexpected argument '{extra[0]}': every setting is a flag "
               f"such as --name=value{hint}", 2)


def run_main(main, aliases=CONFIG_FLAGS):
    """Runs `main`, turning user mistakes into one line and exit code 2;
    `aliases`: the config flags the script offers (names messages use)."""

    def wrapped(argv):
        _reject_positional(argv)
        try:
            return main(argv)
        except USAGE_ERRORS as error:
            _error(flag_message(error, aliases=aliases), 2)
        except UnusableNetworkError as error:
            _error(flag_message(error, aliases=aliases), 1)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume",
                  file=sys.stderr)
            sys.exit(130)

    return wrapped


def run(main, aliases=CONFIG_FLAGS):
    """app.run(main) with one-line errors and exit codes as above."""
    app.run(run_main(main, aliases), flags_parser=parse_flags)


def check_not_empty(**values):
    """ConfigError for a path flag given as an empty string."""
    for flag, value in values.items():
        if value is not None and not str(value).strip():
            raise ConfigError(
                f"`{flag}` is empty; give a path, or leave it out for its "
                "default")
