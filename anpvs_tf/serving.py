"""Serving artefacts of a plain classifier: SavedModel, TFLite, model card.

The SavedModel's `serving_default` signature takes float32 images
[batch, H, W, C] in [0, 1] (the attacks' pixel space; any normalisation is
inside the model) and returns named `logits` and `probabilities`. Shape and
dtype are enforced by the signature; the range is checked in the graph, so
a client that forgets to divide uint8 pixels by 255 gets an error instead of
confident nonsense.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from anpvs_tf.config import ConfigError

SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
CARD_FILE = "model_card.json"
SIGNATURE = "serving_default"


class ExportExistsError(ConfigError):
    """An export directory exists and overwriting it was not asked for (a
    user mistake, reported in one line like a bad flag)."""


def image_spec(model):
    """TensorSpec of the serving input: any batch of the model's images."""
    return tf.TensorSpec(
        (None, *model.inputs[0].shape[1:]), tf.float32, name="images"
    )


def _outputs(model, images):
    logits = model(images, training=False)
    return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


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
        # After the shape check: reductions of a wrong shape are fine, but
        # the message must name the first problem. One min and one max
        # serve both the check and the message (they propagate NaN, which
        # then fails the check).
        low, high = tf.reduce_min(images), tf.reduce_max(images)
        checks.append(
            tf.debugging.Assert(
                (low >= 0.0) & (high <= 1.0),
                [
                    ("images must be float32 pixels in [0, 1] (divide "
                     "uint8 images by 255); got min"),
                    low,
                    "max",
                    high,
                ],
            )
        )
    with tf.control_dependencies(checks):
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

    TFLite has no Assert kernel: the range check is dropped; shape and
    dtype stay fixed by the interpreter's input tensor.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_path), signature_keys=[SIGNATURE]
    )
    Path(path).write_bytes(converter.convert())


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


def check_export_dir(export_dir, overwrite):
    """Refuses to replace an existing export unless asked to."""
    if Path(export_dir).exists() and not overwrite:
        raise ExportExistsError(
            f"'{export_dir}' already exists; pass --overwrite to replace it "
            "or choose another --export_dir"
        )


def export(model, export_dir, card, tflite=False, overwrite=False):
    """Writes the SavedModel, the .keras file, the card and maybe TFLite.

    Nothing is written over an existing `export_dir` unless `overwrite`;
    the artefacts are first written to a sibling temporary directory, so an
    interrupted export never leaves half an export behind.

    Returns the card, completed with the artefacts' sizes.
    """
    export_dir = Path(export_dir)
    check_export_dir(export_dir, overwrite)
    staging = export_dir.with_name(export_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_saved_model(model, staging / SAVED_MODEL_DIR)
    model.save(staging / KERAS_FILE)
    files = [SAVED_MODEL_DIR, KERAS_FILE]
    if tflite:
        write_tflite(staging / SAVED_MODEL_DIR, staging / TFLITE_FILE)
        files.append(TFLITE_FILE)
    card = dict(card)
    card["files"] = {name: directory_bytes(staging / name) for name in files}
    (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    if export_dir.exists():
        shutil.rmtree(export_dir)
    staging.rename(export_dir)
    return card
