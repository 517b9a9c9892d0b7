"""The errors a user can cause, at the bottom of the import graph.

Each is printed by the scripts as one line (what is wrong and how to fix
it), never as a traceback. Library messages name settings by their config
key in backquotes (`train.epochs`); the scripts show the flag instead.
"""


class ConfigError(ValueError):
    """A configuration mistake."""


class DataError(ValueError):
    """A data problem: a missing, foreign or unreachable dataset."""


class DamagedFileError(ValueError):
    """A file this project wrote can no longer be read (one line: what and
    how to recover)."""


class ForeignFilesError(ValueError):
    """A folder to replace holds files this project did not write."""


class UnusableNetworkError(RuntimeError):
    """A network diverged or collapsed; it must not be reported."""
