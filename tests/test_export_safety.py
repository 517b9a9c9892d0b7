"""What an export may replace, and what it serves (issue 14).

--overwrite only ever replaces an export of ours: never the workdir, a
folder holding it, the current directory or a folder with other files.
"""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import exporter
from anpvs_tf import files
from anpvs_tf import serving
from anpvs_tf.errors import ConfigError
from anpvs_tf.workdir import RESULTS_FILE
from anpvs_tf.training import train
from tests.test_scripts import assert_one_line_error
from tests.test_scripts import run_script
from tests.tiny_runs import run_config

EXAMPLES = 32


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A real anp_vs run with its base/, as small as it goes: 64 images."""
    workdir = tmp_path_factory.mktemp("safety") / "run"
    config = run_config("lenet5_caffe_mnist_anp_vs", 1, **{
        "data.train_examples": 64, "data.test_examples": EXAMPLES,
        "data.monitor_examples": 0, "train.batch_size": 32,
    })
    keras.utils.set_random_seed(0)
    train(config, workdir, log=lambda *_: None, verbose=0)
    return workdir


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
    """An export of `workdir`, with TFLite; returns (export_dir, card)."""
    return exporter.export_workdir(
        workdir, tmp_path_factory.mktemp("exported") / "lenet",
        tflite=True, verify_examples=EXAMPLES,
    )


@pytest.fixture
def refused_before_loading(monkeypatch):
    """Makes loading the trained model fail the test: a refused export
    dir must be refused before any work."""

    def load(workdir):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(exporter, "load_trained_model", load)


def export(workdir, export_dir, **kwargs):
    return exporter.export_workdir(
        workdir, export_dir, verify_examples=EXAMPLES, **kwargs
    )


def snapshot(folder):
    """Every path under `folder`, with the bytes of each file."""
    return {
        str(path.relative_to(folder)): (
            path.read_bytes() if path.is_file() else None
        )
        for path in folder.rglob("*")
    }


def write_our_export(folder, *extra):
    """A fake previous export (our card's keys) plus `extra` files."""
    folder.mkdir()
    (folder / serving.KERAS_FILE).write_bytes(b"keras")
    files.write_json(folder / serving.CARD_FILE, {
        "anpvs_tf_version": "0.0", "files": {serving.KERAS_FILE: 5},
    })
    for name in extra:
        (folder / name).write_text("the user's\n")


@pytest.mark.parametrize("where", [
    "workdir", "parent", "grandparent", "dot in workdir",
    "dotdot from checkpoints",
])
def test_overwrite_never_replaces_the_workdir_or_a_folder_holding_it(
    workdir, refused_before_loading, monkeypatch, where
):
    export_dir = {
        "workdir": workdir,
        "parent": workdir.parent,
        "grandparent": workdir.parent.parent,
        "dot in workdir": ".",
        "dotdot from checkpoints": "..",
    }[where]
    monkeypatch.chdir(
        workdir / "checkpoints" if where.startswith("dotdot") else workdir
    )
    before = snapshot(workdir.parent)
    with pytest.raises(ConfigError, match="holds it"):
        export(workdir, export_dir, overwrite=True)
    assert snapshot(workdir.parent) == before
    assert (workdir / "checkpoints").is_dir()
    assert (workdir / "base" / "network.weights.h5").is_file()


def test_overwrite_never_replaces_the_current_directory(
    workdir, refused_before_loading, tmp_path, monkeypatch
):
    (tmp_path / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="current directory"):
        export(workdir, ".", overwrite=True)
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("make_folder", [
    lambda folder: write_our_export(folder, "notes.txt"),
    lambda folder: (folder.mkdir(), (folder / "notes.txt").write_text("x")),
    lambda folder: (
        folder.mkdir(), (folder / serving.SAVED_MODEL_DIR).mkdir(),
        (folder / serving.CARD_FILE).write_text('{"name": "not ours"}'),
    ),
    lambda folder: (
        folder.mkdir(), (folder / serving.CARD_FILE).write_text('{"anp'),
    ),
], ids=["our export plus a file", "a file", "another card", "damaged card"])
def test_overwrite_never_replaces_a_folder_that_is_not_our_export(
    workdir, refused_before_loading, tmp_path, make_folder
):
    folder = tmp_path / "out"
    make_folder(folder)
    before = snapshot(tmp_path)
    with pytest.raises(files.ForeignFilesError,
                       match="not an export.*nothing was deleted") as error:
        export(workdir, folder, overwrite=True)
    assert isinstance(error.value, ConfigError)  # one line from the CLI
    assert snapshot(tmp_path) == before


def test_a_folder_of_the_workdir_is_not_an_export(
    workdir, refused_before_loading
):
    before = snapshot(workdir)
    with pytest.raises(files.ForeignFilesError, match="config.json"):
        export(workdir, workdir / "base", overwrite=True)
    assert snapshot(workdir) == before


def test_overwrite_replaces_an_export_of_ours(workdir, tmp_path):
    out = tmp_path / "out"
    export(workdir, out)
    assert sorted(os.listdir(out)) == sorted(
        [serving.SAVED_MODEL_DIR, serving.KERAS_FILE, serving.CARD_FILE]
    )
    with pytest.raises(
        serving.ExportExistsError,
        match=r"pass `overwrite` to replace that export \(its saved_model, "
              r"model.keras, model.tflite and model card\)",
    ):
        export(workdir, out, tflite=True)
    _, card = export(workdir, out, tflite=True, overwrite=True)
    assert sorted(os.listdir(out)) == sorted(serving.EXPORT_ENTRIES)
    written = files.read_json(out / serving.CARD_FILE, "")
    assert written["files"] == card["files"]
    assert set(card["files"]) == {
        serving.SAVED_MODEL_DIR, serving.KERAS_FILE, serving.TFLITE_FILE
    }
    # Neither the staging folder nor the old export is left beside it.
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("failing", ["tflite", "card"])
def test_a_failed_export_keeps_the_previous_one_and_leaves_nothing(
    workdir, tmp_path, monkeypatch, failing
):
    out = tmp_path / "out"
    export(workdir, out)
    before = snapshot(tmp_path)

    def fail(*args):
        raise RuntimeError("disk full")

    if failing == "tflite":
        monkeypatch.setattr(serving, "write_tflite", fail)
    else:
        monkeypatch.setattr(files, "write_json", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export(workdir, out, tflite=True, overwrite=True)
    assert snapshot(tmp_path) == before


def test_an_export_keeps_a_users_partial_folder(workdir, tmp_path):
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "mine.txt").write_text("keep\n")
    export(workdir, tmp_path / "out")
    assert (tmp_path / "out.partial" / "mine.txt").read_text() == "keep\n"
    assert sorted(os.listdir(tmp_path)) == ["out", "out.partial"]


def test_an_empty_folder_is_an_export_dir_without_overwrite(
    workdir, tmp_path
):
    out = tmp_path / "out"
    out.mkdir(mode=0o750)
    out.chmod(0o750)
    export(workdir, out)
    assert serving.CARD_FILE in os.listdir(out)
    assert out.stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_an_unreadable_results_file_says_how_to_recover(
    workdir, tmp_path, damage
):
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    if damage == "missing":
        (copy / RESULTS_FILE).unlink()
        error, phrase = ConfigError, "results.json is missing"
    else:
        (copy / RESULTS_FILE).write_text('{"pgd_acc": 0.')
        error, phrase = files.DamagedFileError, "is damaged"
    with pytest.raises(error, match=phrase) as raised:
        export(copy, tmp_path / "out")
    assert "the same train.py command" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert os.listdir(tmp_path) == ["run"]


def test_the_card_says_what_each_artefact_checks(exported):
    export_dir, _ = exported
    written = files.read_json(export_dir / serving.CARD_FILE, "")
    checked = written["input"]["checked"]
    assert set(checked) == {serving.SAVED_MODEL_DIR, serving.TFLITE_FILE}
    assert "range [0, 1]" in checked[serving.SAVED_MODEL_DIR]
    assert "NaN" in checked[serving.SAVED_MODEL_DIR]
    assert "no range or NaN check" in checked[serving.TFLITE_FILE]
    assert "Assert" in checked[serving.TFLITE_FILE]
    assert written["input"]["range"] == [0.0, 1.0]  # the rest is kept


def test_saved_model_serves_an_empty_batch(exported, mnist_test_batch):
    export_dir, _ = exported
    serve = tf.saved_model.load(
        str(export_dir / serving.SAVED_MODEL_DIR)
    ).signatures[serving.SIGNATURE]
    empty = serve(images=tf.zeros((0, 28, 28, 1)))
    assert empty["logits"].shape == (0, 10)
    assert empty["probabilities"].shape == (0, 10)
    images = mnist_test_batch[0][:8]
    compact = keras.saving.load_model(export_dir / serving.KERAS_FILE)
    np.testing.assert_allclose(
        serve(images=tf.constant(images))["logits"].numpy(),
        keras.ops.convert_to_numpy(compact(images)), atol=1e-5,
    )
    # The checks still hold, for empty batches of the wrong shape too.
    with pytest.raises(tf.errors.InvalidArgumentError, match="shape"):
        serve(images=tf.zeros((0, 32, 32, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 1\]"):
        serve(images=tf.constant(images * 255.0))


def test_export_py_into_its_workdir_is_a_one_line_error(workdir):
    before = snapshot(workdir)
    result = run_script(
        "export.py", f"--workdir={workdir}", f"--export_dir={workdir}",
        "--overwrite",
    )
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, "is the workdir")
    assert snapshot(workdir) == before
