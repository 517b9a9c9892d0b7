"""Flag plumbing shared by the scripts: quiet start-up, one-line errors.

Importing this module first (every script does) selects the TensorFlow
backend and imports TensorFlow with its C++ start-up banners (oneDNN,
CUDA stubs, cuInit on a CPU machine) hidden. Setting TF_CPP_MIN_LOG_LEVEL
yourself (e.g. TF_CPP_MIN_LOG_LEVEL=0) shows TensorFlow's C++ log again.
"""

import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Shown at the end of every script's --help.
LOG_HELP = ("TensorFlow's C++ start-up log is hidden; set "
            "TF_CPP_MIN_LOG_LEVEL=0 to see it.")


def _import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 sent to a temporary file.

    Its start-up messages are written by C++ before any log level is read,
    so only a redirect hides them; should the import fail, what it wrote
    is replayed, so nothing of an error is lost.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:  # the user chose a level
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


_import_tensorflow_quietly()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from anpvs_tf.config import ConfigError  # noqa: E402
from anpvs_tf.data import DataError  # noqa: E402
from anpvs_tf.files import DamagedFileError  # noqa: E402
from anpvs_tf.files import ForeignFilesError  # noqa: E402
from anpvs_tf.guards import UnusableNetworkError  # noqa: E402

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


def run_main(main):
    """Runs `main`, turning user mistakes into one line and exit code 2."""

    def wrapped(argv):
        _reject_positional(argv)
        try:
            return main(argv)
        except USAGE_ERRORS as error:
            _error(error, 2)
        except UnusableNetworkError as error:
            _error(error, 1)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume",
                  file=sys.stderr)
            sys.exit(130)

    return wrapped


def run(main):
    """app.run(main) with one-line errors and exit codes as above."""
    app.run(run_main(main), flags_parser=parse_flags)


def check_not_empty(**values):
    """ConfigError for a path flag given as an empty string."""
    for flag, value in values.items():
        if value is not None and not str(value).strip():
            raise ConfigError(
                f"--{flag} is empty; give a path, or leave the flag out "
                "for its default")
