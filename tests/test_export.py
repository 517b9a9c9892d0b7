"""export.py and anpvs_tf.serving: SavedModel, TFLite and model card."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import serving
from anpvs_tf.exporter import ExportVerificationError
from anpvs_tf.exporter import verify_equivalence
from anpvs_tf.pruning import compact_network
from anpvs_tf.registry import build_network
from anpvs_tf.workdir import load_trained_model
from anpvs_tf.training import train
from tests.test_pruning import prune_at_random
from tests.test_scripts import assert_one_line_error
from tests.test_scripts import run_script
from tests.tiny_runs import run_config

TRAIN_COMMAND = "python train.py --epochs=1 --workdir=runs/tiny"


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    """A real (tiny) anp_vs run: 256 images, 1 epoch, 2-step PGD."""
    workdir = tmp_path_factory.mktemp("run") / "anp_vs"
    config = run_config("lenet5_caffe_mnist_anp_vs", 1, **{
        "data.train_examples": 256, "data.test_examples": 200,
        "data.monitor_examples": 0, "train.batch_size": 64,
    })
    keras.utils.set_random_seed(0)
    train(config, workdir, log=lambda *_: None, verbose=0,
          command=TRAIN_COMMAND)
    return workdir


@pytest.fixture(scope="module")
def export_dir(trained_workdir):
    result = run_script(
        "export.py", f"--workdir={trained_workdir}", "--tflite",
        "--verify_examples=200",
    )
    assert result.returncode == 0, result.stderr
    return trained_workdir / "export"


def test_export_writes_every_artefact_and_an_honest_card(
    trained_workdir, export_dir
):
    card = json.loads((export_dir / serving.CARD_FILE).read_text())
    _, model = load_trained_model(trained_workdir)
    compact = compact_network(model.network)
    results = json.loads((trained_workdir / "results.json").read_text())

    assert card["params"] == compact.count_params()
    assert card["params"] == results["params"]  # no dead channels here
    assert card["clean_acc"] == pytest.approx(results["clean_acc"])
    assert card["robustness"]["pgd_acc"] == results["pgd_acc"]
    assert card["equivalence"]["max_abs_logit_difference"] <= 1e-4
    assert (card["method"], card["dataset"], card["epsilon"]) == (
        "anp_vs", "mnist", 0.3)
    assert card["test_examples"] == 200
    assert card["train_command"] == TRAIN_COMMAND
    for name in (serving.SAVED_MODEL_DIR, serving.KERAS_FILE,
                 serving.TFLITE_FILE):
        assert card["files"][name] == serving.directory_bytes(
            export_dir / name)
    loaded = keras.saving.load_model(export_dir / serving.KERAS_FILE)
    assert loaded.count_params() == card["params"]


def test_saved_model_serves_without_the_package(export_dir, tmp_path,
                                                mnist_test_batch):
    images = mnist_test_batch[0]
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["anpvs_tf"] = None  # any import of it now fails
        sys.modules["models"] = None
        import numpy as np
        import tensorflow as tf
        serve = tf.saved_model.load({str(export_dir / "saved_model")!r}
                                    ).signatures["serving_default"]
        images = np.load("images.npy")
        outputs = serve(images=tf.constant(images))
        np.save("logits.npy", outputs["logits"].numpy())
        np.save("probabilities.npy", outputs["probabilities"].numpy())
        try:
            import anpvs_tf  # noqa: F401
        except ImportError:
            print("package not importable")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "package not importable" in result.stdout
    compact = keras.saving.load_model(export_dir / serving.KERAS_FILE)
    expected = keras.ops.convert_to_numpy(compact(images))
    np.testing.assert_allclose(
        np.load(tmp_path / "logits.npy"), expected, atol=1e-5
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "probabilities.npy"),
        keras.ops.convert_to_numpy(keras.ops.softmax(expected)),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda x: np.zeros((2, 32, 32, 3), np.float32),
         "images must have shape \\[batch, 28, 28, 1\\]"),
        (lambda x: x[:, :, :, 0], "images must have shape"),
        (lambda x: x.astype(np.float64),
         "expected to be a float tensor but is a double"),
        (lambda x: x * 255.0, "images must be float32 pixels in \\[0, 1\\]"),
        (lambda x: x - 0.5, "divide uint8 images by 255"),
        (lambda x: np.where(x == x.max(), np.float32(np.nan), x),
         "images must be float32 pixels in \\[0, 1\\]"),
    ],
)
def test_signature_rejects_bad_images_naming_the_problem(
    export_dir, mnist_test_batch, make_bad, message
):
    serve = tf.saved_model.load(
        str(export_dir / serving.SAVED_MODEL_DIR)
    ).signatures[serving.SIGNATURE]
    good = mnist_test_batch[0][:2]
    serve(images=tf.constant(good))  # the good batch is served
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(images=tf.constant(make_bad(good)))


def test_tflite_predicts_like_the_saved_model(export_dir, mnist_test_batch):
    images = mnist_test_batch[0]
    serve = tf.saved_model.load(
        str(export_dir / serving.SAVED_MODEL_DIR)
    ).signatures[serving.SIGNATURE]
    expected = serve(images=tf.constant(images))
    actual = serving.tflite_predict(export_dir / serving.TFLITE_FILE, images)
    np.testing.assert_allclose(
        actual["logits"], expected["logits"].numpy(), atol=1e-4
    )
    np.testing.assert_array_equal(
        actual["probabilities"].argmax(-1),
        expected["probabilities"].numpy().argmax(-1),
    )


def test_existing_export_is_never_overwritten_unasked(
    trained_workdir, export_dir
):
    card_path = export_dir / serving.CARD_FILE
    before = card_path.read_bytes()
    result = run_script("export.py", f"--workdir={trained_workdir}")
    assert_one_line_error(result, "already exists", "--overwrite")
    assert card_path.read_bytes() == before


def test_export_of_a_missing_workdir_is_a_one_line_error(tmp_path):
    result = run_script("export.py", f"--workdir={tmp_path / 'nothing'}")
    assert_one_line_error(result, "no trained run", "nothing")


def test_verification_catches_a_model_with_another_function(
    mnist_test_batch
):
    network = build_network("lenet5_caffe", seed=0)
    prune_at_random(network, np.random.RandomState(0))
    compact = compact_network(network)
    verify_equivalence(network, compact, mnist_test_batch[0])
    fc2 = compact.get_layer("fc2")
    fc2.bias.assign(fc2.bias + 1e-3)
    with pytest.raises(ExportVerificationError, match="differ"):
        verify_equivalence(network, compact, mnist_test_batch[0])
