"""Flag plumbing shared by train.py and evaluate.py."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from anpvs_tf.config import ConfigError  # noqa: E402
from anpvs_tf.data import DataError  # noqa: E402


def run_main(main):
    """Runs `main`, turning user mistakes into one line and exit code 2."""

    def wrapped(argv):
        try:
            return main(argv)
        except (ConfigError, DataError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume",
                  file=sys.stderr)
            sys.exit(130)

    return wrapped
