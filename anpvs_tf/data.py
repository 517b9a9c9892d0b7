"""Data sources (embedded MNIST, IDX .gz files, tfds) and tf.data pipelines.

Pixels are float32 in [0, 1], NHWC; labels are int64. Normalisation lives
inside the models, so every source feeds the same range.
"""

import gzip
import os

import numpy as np
import tensorflow as tf

from anpvs_tf.datasets import DATASETS
from anpvs_tf.datasets import IDX_DATASETS
from anpvs_tf.datasets import SOURCES
from anpvs_tf.errors import ConfigError
from anpvs_tf.errors import DataError

SPLITS = ("train", "test")
IDX_IMAGE_SHAPE = (28, 28)
IDX_NUM_CLASSES = 10

# Located from __file__ so it also works when pip-installed as package data.
EMBEDDED_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "embedded_data", "mnist"
)

# (images, labels) file pairs per split, in order of preference.
_IDX_FILES = {
    "train": (
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        ("train-5k-images-idx3-ubyte.gz", "train-5k-labels-idx1-ubyte.gz"),
    ),
    "test": (("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),),
}
# IDX type code 0x08 (unsigned byte) is the only one MNIST-style files use.
_IDX_UBYTE = 0x08


def read_idx(path):
    """Reads a gzip IDX file into a writable uint8 array shaped as its dims.

    The header and the payload size are checked so that a truncated or
    foreign file fails here, not as a reshape error deep in training.
    """
    path = os.fspath(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as err:
        raise DataError(f"IDX file not found: {path}") from err
    except (OSError, EOFError) as err:
        raise DataError(
            f"{path} is not a readable gzip IDX file ({err}); re-download it"
        ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path} has a bad IDX magic number (expected 0x0000 then type "
            "and rank bytes); is it an IDX file? re-download it"
        )
    type_code, rank = raw[2], raw[3]
    if type_code != _IDX_UBYTE:
        raise DataError(
            f"{path} has IDX type code 0x{type_code:02x}; only unsigned "
            "byte data (0x08) is supported"
        )
    header_size = 4 + 4 * rank
    if rank == 0 or len(raw) < header_size:
        raise DataError(
            f"{path} has a truncated IDX header (rank {rank}, "
            f"{len(raw)} bytes); re-download it"
        )
    dims = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)
    )
    expected = header_size + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header dims {dims} "
            f"need {expected}; the file is truncated or corrupt, "
            "re-download it"
        )
    # bytearray makes the result writable (frombuffer on bytes is not).
    return np.frombuffer(
        bytearray(raw), dtype=np.uint8, offset=header_size
    ).reshape(dims)


def _check_choice(value, choices, what, flag):
    if value not in choices:
        raise DataError(
            f"unknown {what} '{value}'; choose one of {', '.join(choices)} "
            f"({flag})"
        )


def _find_idx_pair(data_dir, split):
    """Returns the first complete (images, labels) path pair for `split`."""
    for images_name, labels_name in _IDX_FILES[split]:
        images_path = os.path.join(data_dir, images_name)
        labels_path = os.path.join(data_dir, labels_name)
        if os.path.isfile(images_path) and os.path.isfile(labels_path):
            return images_path, labels_path
    return None


def _load_idx(data_dir, split):
    if data_dir is None:
        raise DataError(
            "`data.source`=idx needs a folder of MNIST-style IDX files; "
            "pass `data.data_dir`=<folder with the IDX .gz files>"
        )
    data_dir = os.fspath(data_dir)
    pair = _find_idx_pair(data_dir, split)
    if pair is None:
        expected = " or ".join(
            f"{images} + {labels}" for images, labels in _IDX_FILES[split]
        )
        raise DataError(
            f"IDX files for the {split} split not found in {data_dir}: "
            f"expected {expected}; "
            "pass `data.data_dir`=<folder with the IDX .gz files>"
        )
    images_path, labels_path = pair
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != IDX_IMAGE_SHAPE:
        raise DataError(
            f"{images_path} holds images of shape {images.shape[1:]}, "
            f"expected {IDX_IMAGE_SHAPE}; point `data.data_dir` at MNIST-style "
            "files"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has "
            f"labels of shape {labels.shape}; the pair does not match, "
            "re-download both"
        )
    if len(labels) and labels.max() >= IDX_NUM_CLASSES:
        raise DataError(
            f"{labels_path} has label {labels.max()}, expected 0 to "
            f"{IDX_NUM_CLASSES - 1}; is it a labels file?"
        )
    return images[..., np.newaxis], labels


# tfds downloads prepared datasets from Google Cloud Storage first.
_TFDS_HOST = ("storage.googleapis.com", 443)


def _online(address=_TFDS_HOST, timeout=3.0):
    """Whether a TCP connection to `address` opens within `timeout` s."""
    import socket

    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError:
        return False
    return True


def _tfds_load(dataset, split, data_dir, download):
    import tensorflow_datasets as tfds
    from absl import logging

    verbosity = logging.get_verbosity()
    # tfds warns about the missing folder of a dataset not prepared yet.
    logging.set_verbosity(logging.ERROR)
    try:
        return tfds.load(dataset, split=split, as_supervised=True,
                         data_dir=data_dir, download=download)
    finally:
        logging.set_verbosity(verbosity)


def _load_tfds(dataset, split, data_dir):
    # Imported here: tensorflow_datasets is slow to import and only this
    # source needs it.
    import tensorflow_datasets as tfds

    try:
        try:
            # What is prepared already, without touching the network.
            supervised = _tfds_load(dataset, split, data_dir, download=False)
        except Exception:  # not prepared: tfds raises several types
            if not _online():
                # Offline, tfds would retry its downloads for minutes and
                # leave partial files behind; say so at once instead.
                raise DataError(
                    f"{dataset} is not prepared in "
                    f"{data_dir or '~/tensorflow_datasets'} and this machine "
                    "cannot reach the internet to download it; prepare it "
                    "where there is internet (python -c \"import "
                    "tensorflow_datasets as tfds; "
                    f"tfds.load('{dataset}')\") and pass that folder as "
                    "`data.data_dir`, or use `data.source`=embedded or idx"
                ) from None
            supervised = _tfds_load(dataset, split, data_dir, download=True)
        # Not batch_size=-1: tfds turns it into padded_batch(sys.maxsize)
        # when split sizes are unknown (e.g. under tfds.testing.mock_data),
        # which aborts the process.
        batches = list(tfds.as_numpy(supervised.batch(8192)))
    except DataError:
        raise
    except Exception as err:  # tfds raises many types when offline.
        summary = str(err).strip().splitlines()[0] if str(err) else ""
        raise DataError(
            f"tensorflow-datasets could not load {dataset} ({split}) "
            f"[{type(err).__name__}: {summary}]; it needs internet to "
            "download (or a `data.data_dir` with the prepared dataset); "
            "`data.source`=embedded or idx works offline"
        ) from err
    if not batches:
        raise DataError(f"tensorflow-datasets returned no {split} examples")
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return images, labels


def load_arrays(dataset, split, source, data_dir=None):
    """Loads a whole split as numpy (images, labels).

    Returns:
        images: float32 [N, H, W, C] in [0, 1]; labels: int64 [N].
    """
    _check_choice(dataset, DATASETS, "dataset", "`data.dataset`")
    _check_choice(split, SPLITS, "split", "split")
    _check_choice(source, SOURCES, "data source", "`data.source`")
    if source == "embedded":
        if dataset != "mnist":
            raise DataError(
                f"the embedded data is MNIST only, not {dataset}; use "
                "`data.source`=idx (with `data.data_dir`) or `data.source`=tfds"
            )
        images, labels = _load_idx(EMBEDDED_DIR, split)
    elif source == "idx":
        if dataset not in IDX_DATASETS:
            raise DataError(
                f"IDX files hold 28x28 grayscale images, so {dataset} "
                "cannot come from `data.source`=idx; use "
                "`data.source`=tfds"
            )
        images, labels = _load_idx(data_dir, split)
    else:
        images, labels = _load_tfds(dataset, split, data_dir)
    images = images.astype(np.float32) / np.float32(255.0)
    return images, labels.astype(np.int64)


def _num_examples(images, labels):
    if len(images) != len(labels):
        raise DataError(
            f"got {len(images)} images but {len(labels)} labels; pass "
            "matching arrays"
        )
    return len(images)


def take_examples(images, labels, count):
    """Returns the first `count` examples (all when `count` is None).

    Takes a prefix, not a sample: on class-sorted data (the embedded 5k
    MNIST train split) a small prefix holds only the first classes.
    """
    available = _num_examples(images, labels)
    if count is None:
        return images, labels
    if count < 1 or count > available:
        raise DataError(
            f"asked for {count} examples but the split has {available}; "
            f"use an example count from 1 to {available} (or None for all)"
        )
    return images[:count], labels[:count]


def _check_batch_size(batch_size):
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise DataError(
            f"batch size must be a positive integer, got {batch_size!r}; "
            "fix `train.batch_size`"
        )


# Standard CIFAR augmentation: zero-pad 4 pixels, random crop back, flip.
AUGMENT_PADDING = 4


def augment_image(image, seed, padding=AUGMENT_PADDING, flip=True):
    """Pad-and-crop (a random shift of up to `padding` pixels each way)
    and, with `flip`, a horizontal flip, from a stateless [2] seed.

    Digits take the shift without the flip (a mirrored 2 is no digit).
    Stateless: the same (run seed, pass, example) always gets the same
    crop and flip, so a resumed run sees what an uninterrupted one would.
    """
    height, width, channels = image.shape
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    image = tf.image.stateless_random_crop(
        padded, [height, width, channels], seed=seeds[0]
    )
    if not flip:
        return image
    return tf.image.stateless_random_flip_left_right(image, seed=seeds[1])


# Fixed pipeline sizes instead of tf.data.AUTOTUNE: a batch is a gather of
# in-memory images (microseconds), so two parallel calls and two prefetched
# batches always keep up with a train step.
PIPELINE_PARALLELISM = 2
PREFETCH_BATCHES = 2


def without_autotune(dataset):
    """The dataset with tf.data's autotuning turned off.

    With it on, about half of the training rounds on a 2-core machine ran
    at exactly half speed with one core idle, a new iterator (every Keras
    epoch) drawing a fast or a slow state; with it off, none did
    (bench/README.md, "Stalled rounds").
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def train_dataset(images, labels, batch_size, seed, initial_epoch=0,
                  augment=False, augment_padding=AUGMENT_PADDING,
                  augment_flip=True, autotune=False):
    """Endless, seeded stream of shuffled training batches.

    The stream is a concatenation of passes over the data, each a full
    uniform permutation (the 5k MNIST split is sorted by class, so anything
    smaller than a full shuffle would give one-class batches) drawn from
    stateless_shuffle seeded by (seed, pass index). Epoch k is batches
    [k * steps_per_epoch, (k + 1) * steps_per_epoch) of the stream, and a run
    started with initial_epoch=k yields exactly that suffix. Unlike
    Dataset.shuffle(seed=...), which also depends on the global seed and
    advances a seed generator shared by every iterator of the dataset, the
    stream depends only on (seed, initial_epoch), so a resumed run (new
    process) sees the batches an uninterrupted run would have seen.

    Speed: the arrays are decoded once and held in memory (the cache: no
    pass re-reads a file), only int64 indices are shuffled, images are
    gathered in parallel and batches are prefetched while the previous step
    runs.

    augment: apply `augment_image` (with `augment_padding` and
    `augment_flip`) to every training example, seeded by (seed, pass
    index, example index).

    autotune: let tf.data tune the pipeline (AUTOTUNE parallelism and
    prefetch); off by default, because it stalls training rounds (see
    `without_autotune`). Kept for bench/stalls.py, which compares both.

    Returns:
        (dataset, steps_per_epoch) with steps_per_epoch = N // batch_size;
        a partial last batch spills into the next pass instead of being
        dropped, so every example is used.
    """
    num_examples = _num_examples(images, labels)
    _check_batch_size(batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"shuffle seed must be an integer, got {seed!r}")
    if initial_epoch < 0:
        raise DataError(f"initial epoch must be >= 0, got {initial_epoch}")
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch == 0:
        raise DataError(
            f"batch size {batch_size} is larger than the {num_examples} "
            "training examples; lower `train.batch_size` or use more examples"
        )
    images = tf.convert_to_tensor(images)
    labels = tf.convert_to_tensor(labels)
    seed = tf.constant(seed, tf.int64)
    # Jump straight to the first element of epoch `initial_epoch` (cheap:
    # only index passes before it are skipped, no pixels are produced).
    start = initial_epoch * steps_per_epoch * batch_size
    first_pass, offset = divmod(start, num_examples)

    def pass_indices(pass_index):
        permutation = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64),
            seed=tf.stack([seed, pass_index]),
        )
        passes = tf.fill([num_examples], pass_index)
        return tf.data.Dataset.from_tensor_slices((permutation, passes))

    def gather(indices, passes):
        batch = tf.gather(images, indices)
        if augment:
            # One seed per example: (run seed + pass, example index).
            seeds = tf.stack([seed * 1_000_003 + passes, indices], axis=1)
            batch = tf.map_fn(
                lambda args: augment_image(
                    *args, padding=augment_padding, flip=augment_flip),
                (batch, seeds),
                fn_output_signature=batch.dtype,
            )
        return batch, tf.gather(labels, indices)

    indices = (
        tf.data.Dataset.counter(start=first_pass)
        .flat_map(pass_indices)
        .skip(offset)
    )
    if autotune:
        parallelism = prefetch = tf.data.AUTOTUNE
    else:
        parallelism, prefetch = PIPELINE_PARALLELISM, PREFETCH_BATCHES
    dataset = (
        indices.batch(batch_size, drop_remainder=True)
        .map(gather, num_parallel_calls=parallelism, deterministic=True)
        .prefetch(prefetch)
    )
    if not autotune:
        dataset = without_autotune(dataset)
    return dataset, steps_per_epoch


def eval_dataset(images, labels, batch_size):
    """Fixed-order batches of every example (the last one may be partial)."""
    _num_examples(images, labels)
    _check_batch_size(batch_size)
    return without_autotune(
        tf.data.Dataset.from_tensor_slices((images, labels))
        .cache()
        .batch(batch_size)
        .prefetch(PREFETCH_BATCHES)
    )


def load_split(data_config, split):
    """Arrays of a split: "train", "validation" or "test".

    The validation split is `validation_examples` training examples held
    out for hyper-parameter search: the first ones of a fixed random order
    of the training set (seed 0); "train" is never any of them. A training
    subset (--train_examples) is taken from the rest of that same order
    (the embedded MNIST is sorted by class, so a prefix would hold only a
    few digits). A test subset is a prefix of the fixed test order.
    """
    images, labels = load_arrays(
        data_config.dataset,
        "test" if split == "test" else "train",
        data_config.source,
        data_config.data_dir,
    )
    if split == "test":
        return take_examples(images, labels, data_config.test_examples)
    held_out = data_config.validation_examples
    if data_config.train_examples is None and not held_out:
        return images, labels
    order = np.random.RandomState(0).permutation(len(labels))
    if held_out >= len(order):
        raise ConfigError(
            f"`data.validation_examples`={held_out} leaves no training example "
            f"of the {len(order)}; hold out fewer"
        )
    if split == "validation":
        order = order[:held_out]
        return images[order], labels[order]
    order = order[held_out:]
    return take_examples(
        images[order], labels[order], data_config.train_examples
    )
