"""TensorFlow's Conv2DBackpropInput vs StemConv2D's XLA matmul + col2im.

Times the gradient of a convolution with respect to its input, both ways,
interleaved in one run at batch 64, for the first two convolutions of
LeNet-5-Caffe and of VGG-16: the measurement behind anpvs_tf/stem_conv.py's
rule (use it for at most 4 input channels).

    python bench/stem_gradient.py

Writes bench/results/stem_gradient.json and stem_gradient.md.
"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402,F401  (sets the Keras backend first)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds.")
flags.DEFINE_float("round_seconds", 0.3, "Time per way per round.")
flags.DEFINE_string("output", "bench/results/stem_gradient",
                    "Output path without extension (.json and .md).")
FLAGS = flags.FLAGS

CALLS = 5  # distinct inputs per timed function: spreads the call overhead
# name: (height = width, input channels, filters, kernel, padding)
CASES = {
    "lenet_conv1": (28, 1, 20, 5, "VALID"),
    "lenet_conv2": (12, 20, 50, 5, "VALID"),
    "vgg16_conv1": (32, 3, 64, 3, "SAME"),
    "vgg16_conv2": (32, 64, 64, 3, "SAME"),
}


def sample_ms(fn):
    """Milliseconds per kernel call over one timing window."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < FLAGS.round_seconds:
        fn()
        count += 1
    return 1e3 * (time.perf_counter() - start) / count / CALLS


def time_case(size, channels, filters, kernel_size, padding):
    import numpy as np
    import tensorflow as tf

    from anpvs_tf.stem_conv import _input_gradient
    from anpvs_tf.stem_conv import _same_padding

    rng = np.random.default_rng(0)
    batch = FLAGS.batch_size
    out = size - kernel_size + 1 if padding == "VALID" else size
    grads = [tf.constant(rng.standard_normal(
        (batch, out, out, filters)).astype("float32")) for _ in range(CALLS)]
    kernel = tf.constant(rng.standard_normal(
        (kernel_size, kernel_size, channels, filters)).astype("float32"))
    pad = _same_padding(kernel_size) if padding == "SAME" else 0
    ways = {
        "tensorflow": tf.function(lambda: [
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=[batch, size, size, channels], filter=kernel,
                out_backprop=g, strides=[1, 1, 1, 1], padding=padding)
            for g in grads]),
        "xla_col2im": tf.function(lambda: [
            _input_gradient(g, kernel, pad, pad, size, size)
            for g in grads]),
    }
    difference = max(
        float(np.abs(a.numpy() - b.numpy()).max())
        for a, b in zip(ways["tensorflow"](), ways["xla_col2im"]())
    )
    samples = {name: [] for name in ways}
    for _ in range(FLAGS.rounds):  # interleave the two ways
        for name, fn in ways.items():
            samples[name].append(sample_ms(fn))
    return {
        **{f"{name}_ms": statistics.median(v) for name, v in samples.items()},
        "max_abs_difference": difference,
    }


def main(argv):
    del argv
    results = {name: {"input_channels": case[1],
                      **time_case(*case)}
               for name, case in CASES.items()}
    for row in results.values():
        row["speedup"] = row["tensorflow_ms"] / row["xla_col2im_ms"]
    lines = [
        f"Gradient of a convolution w.r.t. its input, batch "
        f"{FLAGS.batch_size}, median ms:",
        "",
        "| layer | input channels | TensorFlow | XLA col2im | speed-up "
        "| max abs difference |",
        "|---|---|---|---|---|---|",
    ] + [
        f"| {name} | {r['input_channels']} | {r['tensorflow_ms']:.3f} | "
        f"{r['xla_col2im_ms']:.3f} | {r['speedup']:.2f}x | "
        f"{r['max_abs_difference']:.1e} |"
        for name, r in results.items()
    ]
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2))
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(cli.run_main(main))
