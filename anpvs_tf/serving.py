"""Serving artefacts of a plain classifier: SavedModel, TFLite, model card.

The SavedModel's `serving_default` signature takes float32 images
[batch, H, W, C] in [0, 1] (the attacks' pixel space; any normalisation is
inside the model) and returns named `logits` and `probabilities`. Dtype is
enforced by the signature; shape, range and NaN are checked in the graph,
so a client that forgets to divide uint8 pixels by 255 gets an error
instead of confident nonsense. An empty batch gives empty outputs.

The .tflite file has none of these checks but shape and dtype (fixed by the
interpreter's input tensor): TFLite has no Assert kernel. The model card
says so (card["input"]["checked"]).

An export directory holds only the artefacts below. `export` replaces an
existing one only if it is an export of ours (a parsable model card, no
other files) and `overwrite` is set; it never replaces the workdir, a
folder holding it or the current directory, nor a folder with files of
anything else; an empty folder is used as is.
"""

import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from anpvs_tf import files
from anpvs_tf.errors import ConfigError

SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
CARD_FILE = "model_card.json"
SIGNATURE = "serving_default"
# Everything an export directory may hold; `overwrite` deletes just these.
EXPORT_ENTRIES = (SAVED_MODEL_DIR, KERAS_FILE, TFLITE_FILE, CARD_FILE)
# Keys every model card of ours has: how an export is recognised.
CARD_KEYS = ("anpvs_tf_version", "files")
# What each artefact checks of its input (card["input"]["checked"]).
CHECKED = {
    SAVED_MODEL_DIR: "dtype, shape, range [0, 1] and NaN (an error names "
                     "the problem)",
    TFLITE_FILE: "dtype and shape only: no range or NaN check (TFLite has "
                 "no Assert kernel), so divide uint8 pixels by 255 yourself",
}


class ExportDirError(ConfigError):
    """An export directory that must not be written (a user mistake,
    reported in one line like a bad flag)."""


class ExportExistsError(ExportDirError):
    """An export directory exists and overwriting it was not asked for."""


class ForeignExportDirError(ExportDirError, files.ForeignFilesError):
    """An export directory holds files that no export of ours wrote."""


def logits_model(network):
    """The network as images -> logits (zoo networks also return their
    features, which serving does not need)."""
    if isinstance(network.output, dict):
        return keras.Model(network.inputs[0], network.output["logits"])
    return network


def image_spec(model):
    """TensorSpec of the serving input: any batch of the model's images."""
    return tf.TensorSpec(
        (None, *model.inputs[0].shape[1:]), tf.float32, name="images"
    )


def _outputs(model, images):
    logits = model(images, training=False)
    return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


def _empty_outputs(model):
    """Outputs of an empty batch (the model's kernels reject one)."""
    logits = tf.zeros(
        (0, *model.outputs[0].shape[1:]), model.outputs[0].dtype
    )
    return {"logits": logits, "probabilities": logits}


def _checked_outputs(model, images):
    expected = model.inputs[0].shape[1:]
    shape = tf.shape(images)
    # As strings, so a wrong rank compares unequal instead of failing.
    right_shape = tf.equal(
        tf.strings.reduce_join(tf.strings.as_string(shape[1:]),
                               separator=","),
        ",".join(map(str, expected)),
    )
    checks = [
        tf.debugging.Assert(
            right_shape,
            [
                (f"images must have shape [batch, "
                 f"{', '.join(map(str, expected))}]; got shape"),
                shape,
            ],
        ),
    ]
    with tf.control_dependencies(checks):
        # After the shape check: the message must name the first problem.
        return tf.cond(
            shape[0] > 0,
            lambda: _range_checked_outputs(model, images),
            lambda: _empty_outputs(model),
        )


def _range_checked_outputs(model, images):
    """Outputs of a non-empty batch of the right shape, range checked."""
    # One min and one max serve both the check and the message (they
    # propagate NaN, which then fails the check).
    low, high = tf.reduce_min(images), tf.reduce_max(images)
    check = tf.debugging.Assert(
        (low >= 0.0) & (high <= 1.0),
        [
            ("images must be float32 pixels in [0, 1] (divide uint8 "
             "images by 255); got min"),
            low,
            "max",
            high,
        ],
    )
    with tf.control_dependencies([check]):
        return _outputs(model, tf.identity(images))


def _serving_module(model):
    """A tf.Module holding each weight once and the checked signature.

    (keras.export.ExportArchive tracks every weight twice, as the Keras
    variable and as its TensorFlow value, which doubles the file.)
    """
    module = tf.Module()
    module.weights = [variable.value for variable in model.variables]
    module.serve = tf.function(
        lambda images: _checked_outputs(model, images),
        input_signature=[image_spec(model)],
    )
    return module


def write_saved_model(model, path):
    """A SavedModel with the checked `serving_default` signature."""
    module = _serving_module(model)
    tf.saved_model.save(
        module, str(path), signatures={SIGNATURE: module.serve}
    )


def write_tflite(saved_model_path, path):
    """A TFLite flatbuffer of the SavedModel's serving signature.

    TFLite has no Assert kernel: the shape, range and NaN checks are
    dropped; shape and dtype stay fixed by the interpreter's input tensor
    (CHECKED["tflite"], in the model card).
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_path), signature_keys=[SIGNATURE]
    )
    files.write_bytes(path, converter.convert())


def tflite_predict(path, images):
    """Runs a .tflite file on a batch; returns {"logits", "probabilities"}."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(SIGNATURE)
    return runner(images=np.asarray(images, np.float32))


def directory_bytes(path):
    """Total size of the files under `path` (or of the file itself)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _is_our_card(path):
    """Whether `path` is a model card that `export` wrote."""
    try:
        card = files.read_json(path, recover="")
    except (OSError, files.DamagedFileError):
        return False
    return (
        isinstance(card, dict)
        and all(key in card for key in CARD_KEYS)
        and isinstance(card["files"], dict)
        and set(card["files"]) <= set(EXPORT_ENTRIES)
    )


def check_export_dir(export_dir, overwrite, workdir=None):
    """Refuses an export directory that an export must not replace.

    Allowed: a new path, an empty folder, and with `overwrite` an export
    of ours (EXPORT_ENTRIES only, with our model card). Never the workdir
    or a folder that holds it, nor the current directory or one holding
    it, nor a folder with anything else in it: nothing but a previous
    export is ever deleted.
    """
    path = Path(export_dir)
    if workdir is not None and files.is_inside(workdir, path):
        raise ExportDirError(
            f"`export_dir` '{export_dir}' is the workdir or a folder that "
            "holds it, which an export would replace; choose another "
            "`export_dir` (default: <workdir>/export)"
        )
    if files.is_inside(Path.cwd(), path):
        raise ExportDirError(
            f"`export_dir` '{export_dir}' is the current directory or a "
            "folder that holds it, which an export would replace; choose "
            "another `export_dir`"
        )
    if not path.exists():
        return
    if not path.is_dir():
        raise ExportDirError(
            f"`export_dir` '{export_dir}' is a file, not a folder; choose "
            "another `export_dir`"
        )
    if not files.foreign_entries(path, ()):
        return  # empty: nothing to replace
    foreign = files.foreign_entries(path, EXPORT_ENTRIES)
    if foreign or not _is_our_card(path / CARD_FILE):
        if foreign:
            shown = ", ".join(foreign[:3])
            shown += ", ..." if len(foreign) > 3 else ""
            held = f"files that no export wrote ({shown})"
        else:
            held = f"no {CARD_FILE} that export.py wrote"
        raise ForeignExportDirError(
            f"`export_dir` '{export_dir}' is not an export: it holds "
            f"{held}; nothing was deleted: choose a new or empty "
            "`export_dir`"
        )
    if not overwrite:
        raise ExportExistsError(
            f"'{export_dir}' already exists; pass `overwrite` to replace "
            "that export (its saved_model, model.keras, model.tflite and "
            "model card) or choose another `export_dir`"
        )


def _new_folder_mode():
    """The mode `mkdir` would give a new folder (mkdtemp gives 0o700)."""
    return 0o777 & ~files.current_umask()


def _replace(staging, target):
    """Moves the finished `staging` folder to `target`, replacing the
    export or empty folder there: the old one is moved aside first, so a
    failure leaves it in place, and deleted last."""
    if not target.exists():
        staging.rename(target)
        return
    aside = Path(tempfile.mkdtemp(
        prefix=f".{target.name}.", suffix=".tmp-old", dir=target.parent
    ))
    previous = aside / target.name
    target.rename(previous)
    try:
        staging.rename(target)
    except BaseException:
        previous.rename(target)
        aside.rmdir()
        raise
    files.remove_owned(previous, EXPORT_ENTRIES, "an export")
    previous.rmdir()
    aside.rmdir()


def export(model, export_dir, card, tflite=False, overwrite=False,
           workdir=None):
    """Writes the SavedModel, the .keras file, the card and maybe TFLite.

    `export_dir` must pass `check_export_dir` (an existing export is only
    replaced with `overwrite`; `workdir` is never replaced). The artefacts
    are first written to a new temporary folder beside it, renamed into
    place when complete, so an interrupted export never leaves half an
    export behind; on failure only that temporary folder is removed.

    Returns the card, completed with the input checks and the artefacts'
    sizes.
    """
    check_export_dir(export_dir, overwrite, workdir)
    target = Path(export_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(
        prefix=f".{target.name}.", suffix=".tmp-export", dir=target.parent
    ))
    try:
        if target.is_dir():
            shutil.copymode(target, staging)
        else:
            staging.chmod(_new_folder_mode())
        write_saved_model(model, staging / SAVED_MODEL_DIR)
        model.save(staging / KERAS_FILE)
        names = [SAVED_MODEL_DIR, KERAS_FILE]
        if tflite:
            write_tflite(staging / SAVED_MODEL_DIR, staging / TFLITE_FILE)
            names.append(TFLITE_FILE)
        card = dict(card)
        card["input"] = {
            **card.get("input", {}),
            "checked": {name: CHECKED[name] for name in CHECKED
                        if name in names},
        }
        card["files"] = {
            name: directory_bytes(staging / name) for name in names
        }
        files.write_json(staging / CARD_FILE, card)
        # Again: anything put there meanwhile is not ours to delete.
        check_export_dir(export_dir, overwrite, workdir)
        _replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return card
