"""Tests for anpvs_tf.data: IDX parsing, sources and tf.data pipelines."""

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import data

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _write_idx(path, array, magic=None):
    """Writes `array` (uint8) as a gzip IDX file; `magic` overrides 4 bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = magic if magic is not None else bytes([0, 0, 8, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + dims + array.tobytes())


def _write_idx_pair(folder, prefix, num_examples, offset=0):
    images = (np.arange(num_examples * 28 * 28) + offset) % 256
    images = images.reshape(num_examples, 28, 28)
    labels = np.arange(num_examples) % 10
    _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def _indexed_examples(num_examples):
    """Images whose every pixel encodes the example index, to check pairing."""
    images = np.broadcast_to(
        np.arange(num_examples, dtype=np.float32)[:, None, None, None],
        (num_examples, 2, 2, 1),
    ).copy()
    return images, np.arange(num_examples, dtype=np.int64)


def _labels(dataset, num_batches):
    return np.stack([y.numpy() for _, y in dataset.take(num_batches)])


# === Embedded MNIST ===


def test_embedded_dir_is_inside_the_package():
    package_dir = Path(data.__file__).resolve().parent
    assert Path(data.EMBEDDED_DIR).resolve().parent.parent == package_dir
    assert (Path(data.EMBEDDED_DIR) / "t10k-images-idx3-ubyte.gz").is_file()


def test_embedded_train_is_the_sorted_5k_subset():
    images, labels = data.load_arrays("mnist", "train", "embedded")
    assert images.shape == (5000, 28, 28, 1)
    assert images.dtype == np.float32
    assert labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
    # Stored sorted by class: the reason train_dataset shuffles fully.
    assert np.all(np.diff(labels) >= 0)


def test_embedded_test_is_the_official_10k():
    images, labels = data.load_arrays("mnist", "test", "embedded")
    assert images.shape == (10000, 28, 28, 1)
    assert labels.shape == (10000,)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(labels)) == set(range(10))


# === read_idx ===


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    result = data.read_idx(tmp_path / "a.gz")
    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.uint8
    assert result.flags.writeable


def test_read_idx_rejects_truncated_payload(tmp_path):
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as f:
        # Header says 3x2x2 = 12 bytes of data, only 10 follow.
        f.write(
            bytes([0, 0, 8, 3])
            + b"".join(d.to_bytes(4, "big") for d in (3, 2, 2))
            + bytes(10)
        )
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        data.read_idx(path)


def test_read_idx_rejects_truncated_gzip_stream(tmp_path):
    good = tmp_path / "good.gz"
    _write_idx(good, np.zeros((50, 28, 28)))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(data.DataError, match="not a readable gzip"):
        data.read_idx(cut)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad.gz"
    _write_idx(path, np.zeros((2, 2)), magic=bytes([1, 2, 8, 2]))
    with pytest.raises(data.DataError, match="magic"):
        data.read_idx(path)


def test_read_idx_rejects_non_ubyte_type(tmp_path):
    path = tmp_path / "int32.gz"
    _write_idx(path, np.zeros((2, 2)), magic=bytes([0, 0, 0x0C, 2]))
    with pytest.raises(data.DataError, match="type code 0x0c"):
        data.read_idx(path)


def test_read_idx_rejects_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="not found"):
        data.read_idx(tmp_path / "nope.gz")


# === IDX source ===


def test_idx_source_prefers_full_train_files(tmp_path):
    _write_idx_pair(tmp_path, "train-5k", 5)
    _write_idx_pair(tmp_path, "train", 7)
    images, labels = data.load_arrays("mnist", "train", "idx", tmp_path)
    assert images.shape == (7, 28, 28, 1)
    assert labels.dtype == np.int64


def test_idx_source_falls_back_to_5k_files(tmp_path):
    _write_idx_pair(tmp_path, "train-5k", 5, offset=3)
    images, _ = data.load_arrays("fashion_mnist", "train", "idx", tmp_path)
    assert images.shape == (5, 28, 28, 1)
    assert images[0, 0, 0, 0] == pytest.approx(3 / 255)


def test_idx_source_rejects_count_mismatch(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(data.DataError, match="4 images"):
        data.load_arrays("mnist", "test", "idx", tmp_path)


def test_idx_source_on_real_fashion_mnist():
    folder = SHARED_DATA / "fashion-mnist"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    train_images, train_labels = data.load_arrays(
        "fashion_mnist", "train", "idx", folder
    )
    test_images, _ = data.load_arrays("fashion_mnist", "test", "idx", folder)
    assert train_images.shape == (60000, 28, 28, 1)
    assert test_images.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(train_labels), [6000] * 10)


# === Errors ===


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="cifar10", source="embedded"), "`data.source`=idx"),
        (dict(dataset="cifar10", source="idx"), "`data.source`=tfds"),
        (dict(dataset="mnist", source="idx"), "`data.data_dir`="),
        (dict(dataset="imagenet", source="tfds"), "mnist, fashion_mnist"),
        (dict(dataset="mnist", source="web"), "embedded, idx, tfds"),
        (dict(dataset="mnist", source="embedded", split="val"), "train, test"),
    ],
)
def test_load_arrays_errors(kwargs, message):
    kwargs = {"split": "train", **kwargs}
    with pytest.raises(data.DataError, match=message):
        data.load_arrays(**kwargs)


def test_idx_source_reports_missing_files(tmp_path):
    with pytest.raises(data.DataError) as error:
        data.load_arrays("mnist", "train", "idx", tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    assert "train-5k-images-idx3-ubyte.gz" in message
    assert "`data.data_dir`=" in message
    assert "\n" not in message


def test_take_examples():
    images, labels = _indexed_examples(10)
    assert data.take_examples(images, labels, None)[0] is images
    head_images, head_labels = data.take_examples(images, labels, 4)
    np.testing.assert_array_equal(head_labels, [0, 1, 2, 3])
    assert head_images.shape == (4, 2, 2, 1)
    with pytest.raises(data.DataError, match="has 10"):
        data.take_examples(images, labels, 11)


# === train_dataset ===


def test_train_dataset_epoch_is_a_permutation_of_paired_examples():
    images, labels = _indexed_examples(64)
    dataset, steps = data.train_dataset(images, labels, 8, seed=1)
    assert steps == 8
    batches = list(dataset.take(steps))
    x = np.concatenate([b[0].numpy() for b in batches])
    y = np.concatenate([b[1].numpy() for b in batches])
    assert all(b[0].shape == (8, 2, 2, 1) for b in batches)
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.sort(y), np.arange(64))
    np.testing.assert_array_equal(x[:, 0, 0, 0], y)
    assert not np.array_equal(y, np.arange(64))


def test_train_dataset_epochs_differ_and_seeds_matter():
    images, labels = _indexed_examples(64)
    dataset, steps = data.train_dataset(images, labels, 8, seed=1)
    stream = _labels(dataset, 2 * steps).reshape(2, -1)
    np.testing.assert_array_equal(np.sort(stream[1]), np.arange(64))
    assert not np.array_equal(stream[0], stream[1])
    other, _ = data.train_dataset(images, labels, 8, seed=2)
    assert not np.array_equal(_labels(other, steps).ravel(), stream[0])


@pytest.mark.parametrize("initial_epoch", [1, 2, 5])
def test_train_dataset_resume_matches_uninterrupted_stream(initial_epoch):
    # 50 % 8 != 0: epochs do not align with passes over the data.
    images, labels = _indexed_examples(50)
    full, steps = data.train_dataset(images, labels, 8, seed=3)
    resumed, resumed_steps = data.train_dataset(
        images, labels, 8, seed=3, initial_epoch=initial_epoch
    )
    assert steps == resumed_steps == 6
    expected = _labels(full, (initial_epoch + 2) * steps)[
        initial_epoch * steps :
    ]
    np.testing.assert_array_equal(_labels(resumed, 2 * steps), expected)


def test_train_dataset_ignores_global_seed_and_iterator_count():
    images, labels = _indexed_examples(40)
    tf.random.set_seed(123)
    dataset, steps = data.train_dataset(images, labels, 4, seed=5)
    first = _labels(dataset, 3 * steps)
    # A second iterator over the same object restarts the same stream.
    np.testing.assert_array_equal(_labels(dataset, 3 * steps), first)
    tf.random.set_seed(456)
    again, _ = data.train_dataset(images, labels, 4, seed=5)
    np.testing.assert_array_equal(_labels(again, 3 * steps), first)


_STREAM_SCRIPT = """
import hashlib
import numpy as np
from anpvs_tf import data
labels = np.arange(30, dtype=np.int64)
images = np.zeros((30, 1, 1, 1), np.float32)
dataset, _ = data.train_dataset(images, labels, 4, seed=9, initial_epoch=2)
stream = np.stack([y.numpy() for _, y in dataset.take(20)])
print(hashlib.md5(stream.tobytes()).hexdigest())
"""


def test_train_dataset_is_identical_in_a_new_process():
    labels = np.arange(30, dtype=np.int64)
    images = np.zeros((30, 1, 1, 1), np.float32)
    dataset, _ = data.train_dataset(images, labels, 4, seed=9, initial_epoch=2)
    expected = hashlib.md5(_labels(dataset, 20).tobytes()).hexdigest()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run(
        [sys.executable, "-c", _STREAM_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip().splitlines()[-1] == expected


def test_train_dataset_rejects_batch_larger_than_data():
    images, labels = _indexed_examples(10)
    with pytest.raises(data.DataError, match="batch size 16 .* 10 training"):
        data.train_dataset(images, labels, 16, seed=0)
    with pytest.raises(data.DataError, match="`train.batch_size`"):
        data.train_dataset(images, labels, 0, seed=0)


# === eval_dataset ===


def test_eval_dataset_keeps_every_example_in_order():
    images, labels = _indexed_examples(10)
    batches = list(data.eval_dataset(images, labels, 4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    y = np.concatenate([y.numpy() for _, y in batches])
    x = np.concatenate([x.numpy() for x, _ in batches])
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x, images)


# === tfds source ===


@pytest.mark.parametrize(
    "dataset, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))]
)
def test_tfds_source_with_mock_data(dataset, shape, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        images, labels = data.load_arrays(dataset, "test", "tfds", tmp_path)
    assert images.shape == (6, *shape)
    assert images.dtype == np.float32
    assert labels.dtype == np.int64 and labels.shape == (6,)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert images.max() > 0.0


def test_tfds_failures_become_data_errors(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    def offline_load(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds, "load", offline_load)
    # The connection probe succeeds; the download itself then fails.
    monkeypatch.setattr(data, "_online", lambda: True)
    with pytest.raises(data.DataError) as error:
        data.load_arrays("cifar100", "train", "tfds", tmp_path)
    message = str(error.value)
    assert "internet" in message and "no route to host" in message
    assert "`data.source`=embedded or idx" in message


def test_cifar_pipeline_augments_training_images_only():
    """CIFAR through tfds (mocked: no download): [0, 1] floats of the right
    shape; the training stream is padded, cropped and flipped, evaluation
    batches are the images themselves."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=16):
        images, labels = data.load_arrays("cifar10", "train", "tfds")
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.min() >= 0 and labels.max() < 10

    evaluated = np.concatenate(
        [x.numpy() for x, _ in data.eval_dataset(images, labels, 8)])
    np.testing.assert_array_equal(evaluated, images)

    def first_pass(augment, seed=0):
        stream, steps = data.train_dataset(
            images, labels, 8, seed=seed, augment=augment)
        return [(x.numpy(), y.numpy()) for x, y in stream.take(steps)]

    plain, augmented = first_pass(False), first_pass(True)
    for (x, y), (x_aug, y_aug) in zip(plain, augmented, strict=True):
        np.testing.assert_array_equal(y, y_aug)  # same order, same labels
        assert x_aug.shape == x.shape and x_aug.dtype == np.float32
        assert x_aug.min() >= 0.0 and x_aug.max() <= 1.0
    changed = [
        not np.array_equal(a, b)
        for (x, _), (x_aug, _) in zip(plain, augmented, strict=True)
        for a, b in zip(x, x_aug, strict=True)
    ]
    assert sum(changed) >= 12  # nearly every image is moved or flipped
    # Seeded: the same crops and flips again, others with another seed.
    for (x, _), (again, _) in zip(augmented, first_pass(True), strict=True):
        np.testing.assert_array_equal(x, again)
    assert not np.array_equal(augmented[0][0], first_pass(True, seed=1)[0][0])


def test_augmented_stream_resumes_exactly():
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(12, 32, 32, 3)).astype("float32")
    labels = rng.randint(0, 10, 12)
    full, steps = data.train_dataset(images, labels, 4, seed=7, augment=True)
    resumed, _ = data.train_dataset(
        images, labels, 4, seed=7, initial_epoch=2, augment=True)
    expected = [x.numpy() for x, _ in full.skip(2 * steps).take(steps)]
    actual = [x.numpy() for x, _ in resumed.take(steps)]
    np.testing.assert_array_equal(np.stack(actual), np.stack(expected))


def test_digit_augmentation_only_shifts_within_its_padding():
    """Digits get shifts of up to 2 pixels and no flip: every augmented
    image is its original moved by (dy, dx) in [-2, 2]^2 with zeros
    shifted in, the labels keep their order, and most images move."""
    rng = np.random.RandomState(0)
    images = np.zeros((16, 12, 12, 1), "float32")
    images[:, 3:9, 3:9] = rng.uniform(0.1, 1.0, size=(16, 6, 6, 1))
    labels = np.arange(16) % 10
    stream, steps = data.train_dataset(
        images, labels, 8, seed=3, augment=True, augment_padding=2,
        augment_flip=False)
    shifts = []
    for x, y in stream.take(steps):
        for image, label in zip(x.numpy(), y.numpy(), strict=True):
            index = np.flatnonzero(labels == label)
            matches = [
                (dy, dx)
                for i in index for dy in range(-2, 3) for dx in range(-2, 3)
                if np.array_equal(image, np.roll(images[i], (dy, dx), (0, 1)))
            ]
            assert matches, "an augmented image is no shift of its original"
            shifts.append(matches[0])
    assert len(shifts) == 16
    assert sum(shift != (0, 0) for shift in shifts) >= 10

