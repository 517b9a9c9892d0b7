"""Exact alternatives to LeNet's first conv block, timed against the stock one.

The compact LeNet's first block, maxpool2(relu(conv5x5(x) + b)) on a
one-channel 28x28 image, costs nearly as much with 5 filters as with 20
(bench/inference.py). This script times, in one process on real MNIST test
images at one batch size, every exact rewrite of that block we know of in
stock TensorFlow ops (each checked against the stock block to 1e-4 first):

- stock:     Conv2D + bias + ReLU + MaxPool (what the export serves);
- rows:      the 5 shifted image rows as 5 input channels of a 1x5 conv;
- phases:    space-to-depth (2x2) and a 3x3 conv whose 4 x filters outputs
             are the 4 pooling phases, then their max;
- patches:   an explicit 5x5 patch matrix times the kernel;
- toeplitz:  the pooled block as one dense matmul with a Toeplitz matrix
             (784 pixels x 4 phases x 144 positions x filters), then max;
- sparse:    the same matrix as a SparseTensor (4 % non-zero);
- depthwise: the batch as channels of a depthwise conv (kernel tiled);
- xla_batch, xla_channels: XLA-compiled sums of 25 shifted images, the
             batch or the filters innermost.

Weights are random (speed does not depend on their values). Medians of
interleaved rounds.

    python bench/first_conv_forms.py [--filters=5] [--batch_size=256]

Writes bench/results/first_conv_forms.json and .md.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer("filters", 5, "Filters of the first conv (the compact "
                     "model of bench/inference.py keeps 5 of 20).")
flags.DEFINE_integer("batch_size", 256, "Images per call.")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
flags.DEFINE_integer("calls", 50, "Calls per form per round.")
flags.DEFINE_string("output", "bench/results/first_conv_forms",
                    "Output path without extension (.json and .md).")
FLAGS = flags.FLAGS

SIZE, KERNEL, CONV, POOLED = 28, 5, 24, 12
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def forms(kernel, bias):
    """{name: tf.function(images) -> [batch, 12, 12, filters]}."""
    import numpy as np
    import tensorflow as tf

    filters = kernel.shape[-1]
    k = tf.constant(kernel)
    b = tf.constant(bias)

    def stock(x):
        y = tf.nn.relu(tf.nn.conv2d(x, k, 1, "VALID") + b)
        return tf.nn.max_pool2d(y, 2, 2, "VALID")

    # rows: channel di holds the image shifted up by di rows.
    rows_kernel = tf.constant(
        np.transpose(kernel[:, :, 0, :], (1, 0, 2))[None])

    def rows(x):
        shifted = tf.concat([x[:, d:d + CONV] for d in range(KERNEL)], -1)
        y = tf.nn.relu(tf.nn.conv2d(shifted, rows_kernel, 1, "VALID") + b)
        return tf.nn.max_pool2d(y, 2, 2, "VALID")

    # phases: a 6x6 stride-2 kernel per pooling phase, as a 3x3 kernel on
    # the space-to-depth image.
    six = np.zeros((6, 6, 4 * filters), np.float32)
    for p, (pi, pj) in enumerate(PHASES):
        six[pi:pi + KERNEL, pj:pj + KERNEL, p * filters:(p + 1) * filters] = (
            kernel[:, :, 0, :])
    phase_kernel = tf.constant(six.reshape(3, 2, 3, 2, -1).transpose(
        0, 2, 1, 3, 4).reshape(3, 3, 4, 4 * filters))

    def phases(x):
        z = tf.nn.conv2d(tf.nn.space_to_depth(x, 2), phase_kernel, 1, "VALID")
        z = tf.reshape(z, [-1, POOLED, POOLED, 4, filters])
        return tf.nn.relu(tf.reduce_max(z, axis=3) + b)

    def patches(x):
        p = tf.image.extract_patches(x, [1, KERNEL, KERNEL, 1], [1] * 4,
                                     [1] * 4, "VALID")
        y = tf.nn.relu(tf.tensordot(p, tf.reshape(k, [-1, filters]), 1) + b)
        return tf.nn.max_pool2d(y, 2, 2, "VALID")

    # Toeplitz rows: (phase, i, j, filter); columns: pixels.
    index, values = [], []
    for p, (pi, pj) in enumerate(PHASES):
        for i in range(POOLED):
            for j in range(POOLED):
                for f in range(filters):
                    row = ((p * POOLED + i) * POOLED + j) * filters + f
                    for di in range(KERNEL):
                        for dj in range(KERNEL):
                            column = ((2 * i + pi + di) * SIZE
                                      + 2 * j + pj + dj)
                            index.append((row, column))
                            values.append(kernel[di, dj, 0, f])
    shape = [4 * POOLED * POOLED * filters, SIZE * SIZE]
    sparse = tf.sparse.reorder(tf.SparseTensor(
        np.array(index, np.int64), np.array(values, np.float32), shape))
    dense = tf.sparse.to_dense(sparse)
    bias_rows = tf.constant(np.tile(bias, POOLED * POOLED))

    def pooled_rows(z, n):
        """[n, 4 * positions] phase outputs -> pooled NHWC block."""
        z = tf.reduce_max(tf.reshape(z, [n, 4, -1]), axis=1)
        return tf.reshape(tf.nn.relu(z + bias_rows),
                          [n, POOLED, POOLED, filters])

    def toeplitz(x):
        n = tf.shape(x)[0]
        z = tf.matmul(tf.reshape(x, [n, -1]), dense, transpose_b=True)
        return pooled_rows(z, n)

    def sparse_toeplitz(x):
        n = tf.shape(x)[0]
        z = tf.sparse.sparse_dense_matmul(
            sparse, tf.transpose(tf.reshape(x, [n, -1])))
        return pooled_rows(tf.transpose(z), n)

    def depthwise(x):
        n = tf.shape(x)[0]
        images = tf.reshape(tf.transpose(tf.reshape(x, [n, -1])),
                            [1, SIZE, SIZE, n])
        y = tf.nn.depthwise_conv2d(images, tf.tile(k, [1, 1, n, 1]),
                                   [1] * 4, "VALID")
        y = tf.nn.max_pool2d(tf.nn.relu(y + tf.tile(b, [n])), 2, 2, "VALID")
        return tf.transpose(tf.reshape(y, [POOLED, POOLED, n, filters]),
                            [2, 0, 1, 3])

    def shifted_sums(x, batch_innermost):
        if batch_innermost:  # [h, w, filters, batch]
            t = tf.transpose(tf.reshape(x, [-1, SIZE, SIZE]), [1, 2, 0])
            window = lambda di, dj: t[di:di + CONV, dj:dj + CONV, None, :]
            weight = lambda di, dj: tf.reshape(k[di, dj, 0], [filters, 1])
            shape, axes = [POOLED, 2, POOLED, 2, filters, -1], [1, 3]
            bias_shape = [filters, 1]
        else:  # [batch, h, w, filters]
            window = lambda di, dj: x[:, di:di + CONV, dj:dj + CONV, :]
            weight = lambda di, dj: k[di, dj, 0]
            shape, axes = [-1, POOLED, 2, POOLED, 2, filters], [2, 4]
            bias_shape = [filters]
        total = tf.add_n([window(di, dj) * weight(di, dj)
                          for di in range(KERNEL) for dj in range(KERNEL)])
        y = tf.nn.relu(total + tf.reshape(b, bias_shape))
        y = tf.reduce_max(tf.reshape(y, shape), axis=axes)
        return tf.transpose(y, [3, 0, 1, 2]) if batch_innermost else y

    plain = {
        "stock": stock, "rows": rows, "phases": phases, "patches": patches,
        "toeplitz": toeplitz, "sparse": sparse_toeplitz,
        "depthwise": depthwise,
    }
    compiled = {
        "xla_batch": lambda x: shifted_sums(x, True),
        "xla_channels": lambda x: shifted_sums(x, False),
    }
    return {
        **{name: tf.function(fn) for name, fn in plain.items()},
        **{name: tf.function(fn, jit_compile=True)
           for name, fn in compiled.items()},
    }


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from anpvs_tf import data

    images, _ = data.load_arrays("mnist", "test", "embedded")
    x = tf.constant(images[:FLAGS.batch_size])
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(KERNEL, KERNEL, 1, FLAGS.filters)).astype(
        np.float32)
    bias = rng.normal(size=FLAGS.filters).astype(np.float32)
    fns = forms(kernel, bias)
    expected = fns["stock"](x).numpy()
    for name, fn in fns.items():
        np.testing.assert_allclose(fn(x).numpy(), expected, atol=1e-4,
                                   err_msg=f"form {name} is not exact")
    rounds = {name: [] for name in fns}
    for _ in range(FLAGS.rounds):
        for name, fn in fns.items():
            calls = []
            for _ in range(FLAGS.calls):
                start = time.perf_counter()
                fn(x).numpy()
                calls.append(time.perf_counter() - start)
            rounds[name].append(1e3 * statistics.median(calls))
    median = {name: statistics.median(ms) for name, ms in rounds.items()}
    report = {
        "filters": FLAGS.filters,
        "batch_size": FLAGS.batch_size,
        "median_ms": median,
        "round_medians_ms": rounds,
        "relative_to_stock": {name: ms / median["stock"]
                              for name, ms in median.items()},
        "command": "python bench/first_conv_forms.py " + " ".join(
            sys.argv[1:]),
    }
    lines = [
        f"First conv block ({FLAGS.filters} filters) + ReLU + max-pool, "
        f"batch {FLAGS.batch_size}, real MNIST test images, median ms of "
        f"{FLAGS.rounds} rounds x {FLAGS.calls} calls.",
        "",
        *markdown_table(
            ("form", "median ms", "x stock"),
            [(name, f"{ms:.3f}", f"{ms / median['stock']:.2f}")
             for name, ms in median.items()]),
    ]
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(output.with_suffix(".json"), report)
    files.write_text(output.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(cli.run_main(main))
