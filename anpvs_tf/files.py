"""Files the project writes: atomic writes, damaged-file errors, ownership.

Every file is written to a temporary sibling and renamed over its target
(`os.replace` is atomic on POSIX), so a kill mid-write leaves the old file
or the new one, never half of one. A file that is damaged anyway (a disk
that lost writes, a hand edit) is reported in one line that says how to
recover, not as a raw JSONDecodeError.

Folders are only ever deleted by `remove_owned`, which removes the entries
this project writes and refuses when anything else lies beside them.

Depends on nothing but the standard library, so every layer may use it.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from anpvs_tf.errors import DamagedFileError
from anpvs_tf.errors import ForeignFilesError


def _temporary_sibling(path, suffix=""):
    """A new, unique temporary file next to `path` (same filesystem, so the
    rename is atomic); returns its path."""
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(handle)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path to write; renamed onto `path` on success,
    removed on failure. `suffix` keeps an extension a writer insists on
    (Keras wants ".weights.h5")."""
    path = Path(path)
    temporary = _temporary_sibling(path, suffix)
    try:
        yield temporary
        # mkstemp creates 0600; give the file the mode a plain write
        # would (the old file's, else what the umask allows).
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def current_umask():
    """The process's umask, read without changing it where Linux allows
    (os.umask can only be read by setting it, which races with threads
    creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _mode_for(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def write_bytes(path, data):
    """Writes `data` to `path` atomically (fsynced before the rename)."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path, recover):
    """The JSON value in `path`; DamagedFileError naming `recover` (what
    the user should do) when it does not parse."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(
            f"'{path}' is damaged ({type(error).__name__}: {error}); "
            f"{recover}"
        ) from None


def foreign_entries(folder, owned):
    """Paths under `folder` (relative, sorted) that this project did not
    write, our temporary files aside.

    `owned` is the folder's layout: a collection of the names we write,
    or a dict name -> the layout of that subfolder (None: its contents are
    written by a library, e.g. TensorFlow's checkpoints, and not looked
    into); the name "*" stands for any name. Symlinks are entries, never
    followed.
    """
    folder = Path(folder)
    if not isinstance(owned, dict):
        owned = dict.fromkeys(owned)
    found = []
    for entry in sorted(folder.iterdir()):
        if _is_temporary(entry.name):
            continue
        if entry.name not in owned and "*" not in owned:
            found.append(entry.name)
            continue
        inner = owned.get(entry.name, owned.get("*"))
        if inner is not None and entry.is_dir() and not entry.is_symlink():
            found += [f"{entry.name}/{name}"
                      for name in foreign_entries(entry, inner)]
    return found


def _is_temporary(name):
    return name.startswith(".") and ".tmp" in name


def remove_owned(folder, owned, what):
    """Deletes what `folder` holds, keeping `folder` itself, if all of it
    follows the layout `owned` (see `foreign_entries`).

    Refuses (ForeignFilesError, nothing deleted) if anything else lies in
    `folder` or in an owned subfolder: only what this project wrote is
    ever deleted. `what` names the folder's kind in the message, e.g. "a
    train.py workdir".
    """
    folder = Path(folder)
    foreign = foreign_entries(folder, owned)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ForeignFilesError(
            f"'{folder}' holds files that are not {what}'s ({shown}); "
            "nothing was deleted: move them away or choose another folder"
        )
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def same_path(a, b):
    """Whether two paths name the same place (symlinks, '..' and relative
    spellings resolved)."""
    return Path(a).resolve() == Path(b).resolve()


def is_inside(path, folder):
    """Whether `path` is `folder` or lies under it, once both resolve."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents
