"""Serving speed of compact VGG-16 and ResNet-18 exports at CIFAR size.

For each architecture, in one process: the plain (ungated, unpruned)
network and the compact export (`compact_network`) of its gated variant
with random masks pruning exactly a given fraction of the units of every
gate: the paper's CIFAR-10 VGG-16 unit sparsity (76.5 %) and 50 %. The
batch-norms get random statistics and affine weights, so pruned channels
carry non-zero constants as in a trained network (border kernels and all).
Each compact model is checked against its gated network first.

All SavedModels of an architecture are timed on the same synthetic batch
of 256 CIFAR-sized images (32x32x3; speed does not depend on the pixels)
in interleaved rounds (plain, then each compact model, every round) after
a warm-up; the median of the round medians is reported, next to the FLOPs
reduction the channel analysis reports (complexity_report).

    python bench/compact_speed.py

Writes bench/results/compact_speed.json and compact_speed.md.
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from inference import measure  # noqa: E402
from inference import write_report  # noqa: E402

flags.DEFINE_list("architectures", ["vgg16", "resnet18"],
                  "Zoo architectures to measure.")
flags.DEFINE_list("fractions", ["0.765", "0.5"],
                  "Fractions of every gate's units pruned.")
flags.DEFINE_integer("batch_size", 256, "Images per call.")
flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds.")
flags.DEFINE_float("round_seconds", 1.0,
                   "Approximate time per model per round (at least three "
                   "calls).")
flags.DEFINE_integer("seed", 0, "Seed of the masks, statistics and images.")
flags.DEFINE_string("output", "bench/results/compact_speed",
                    "Output path without extension (.json and .md).")
FLAGS = flags.FLAGS

PRUNED_RAW = -10.0  # E[pi] < 1e-3: pruned
KEPT_RAW = 2.0  # E[pi] ~ 0.9, the paper's conv initialisation
CHECK_EXAMPLES = 8


def randomise(network, fraction, rng):
    """Prunes exactly round(fraction * units) of every gate at random and
    gives every batch-norm random statistics and affine weights."""
    import keras
    import numpy as np

    from anpvs_tf.layers import gates_of

    for gate in gates_of(network):
        drop = rng.permutation(gate.units) < round(fraction * gate.units)
        gate.concentration1_raw.assign(
            np.where(drop, PRUNED_RAW, KEPT_RAW).astype("float32"))
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            width = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.5, width))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, width))
            layer.gamma.assign(rng.uniform(0.5, 2.0, width))
            layer.beta.assign(rng.uniform(-0.5, 1.0, width))


def served_entry(model, path, flops):
    import tensorflow as tf

    from anpvs_tf import serving

    serving.write_saved_model(model, path)
    return {
        "serve": tf.saved_model.load(str(path)).signatures[
            serving.SIGNATURE],
        "params": int(model.count_params()),
        "flops": flops,
        "savedmodel_bytes": serving.directory_bytes(path),
    }


def bench_architecture(architecture, images, scratch, rng):
    import keras
    import numpy as np

    from anpvs_tf import serving
    from anpvs_tf.complexity import complexity_report
    from anpvs_tf.complexity import count_complexity
    from anpvs_tf.pruning import compact_network
    from anpvs_tf.registry import build_network

    plain = build_network(architecture, gated=False, seed=FLAGS.seed)
    served = {"plain": served_entry(
        serving.logits_model(plain), Path(scratch) / "plain",
        count_complexity(plain).flops)}
    analysis = {}
    for fraction in map(float, FLAGS.fractions):
        name = f"compact_{100 * fraction:g}"
        gated = build_network(architecture, seed=FLAGS.seed)
        randomise(gated, fraction, rng)
        compact = compact_network(gated)
        report = complexity_report(gated)
        check = images[:CHECK_EXAMPLES]
        expected = keras.ops.convert_to_numpy(
            gated(check, training=False)["logits"])
        actual = keras.ops.convert_to_numpy(compact(check))
        analysis[name] = {
            "unit_sparsity": report["unit_sparsity"],
            "flops_reduction": report["flops_speedup"],
            "params_predicted": report["params"],
            "max_abs_logit_difference": float(
                np.abs(actual - expected).max()),
            "logit_range": float(np.ptp(expected)),
        }
        served[name] = served_entry(
            compact, Path(scratch) / name, report["flops"])
        if served[name]["params"] != report["params"]:
            raise AssertionError(f"{name}: params differ from the analysis")
    results = measure(served, images, FLAGS.batch_size, FLAGS.rounds,
                      FLAGS.round_seconds)
    for name, figures in analysis.items():
        figures["speedup"] = (
            results[name]["examples_per_sec"]
            / results["plain"]["examples_per_sec"])
        figures["speedup_share_of_flops_reduction"] = (
            figures["speedup"] / figures["flops_reduction"])
        results[name].update(figures)
    return results


def markdown(report):
    setup = report["setup"]
    lines = [
        f"Batch {setup['batch_size']}, synthetic 32x32x3 images, "
        f"{setup['cpu_cores']} CPU cores, median of {setup['rounds']} "
        "interleaved rounds. Load average (1 min) before / after: "
        f"{setup['load_before'][0]:.2f} / {setup['load_after'][0]:.2f} "
        "(the benchmark's own load included).",
        "",
        "| network | unit sparsity % | params | FLOPs reduction | "
        "examples/s | speed-up | share of FLOPs reduction | max logit diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for architecture, results in report["architectures"].items():
        for name, m in results.items():
            if name == "plain":
                lines.append(
                    f"| {architecture} plain | 0 | {m['params']:,} | 1.00x | "
                    f"{m['examples_per_sec']:,.0f} | 1.00x | - | - |")
                continue
            lines.append(
                f"| {architecture} {name.replace('_', ' ')} % | "
                f"{m['unit_sparsity']:.1f} | {m['params']:,} | "
                f"{m['flops_reduction']:.2f}x | "
                f"{m['examples_per_sec']:,.0f} | {m['speedup']:.2f}x | "
                f"{m['speedup_share_of_flops_reduction']:.2f} | "
                f"{m['max_abs_logit_difference']:.1e} |")
    return "\n".join(lines)


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    import models  # noqa: F401  (registers the zoo)

    rng = np.random.RandomState(FLAGS.seed)
    images = rng.uniform(size=(FLAGS.batch_size, 32, 32, 3)).astype(
        "float32")
    load_before = os.getloadavg()
    report = {"architectures": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for architecture in FLAGS.architectures:
            folder = Path(scratch) / architecture
            folder.mkdir()
            report["architectures"][architecture] = bench_architecture(
                architecture, images, folder, rng)
    report["setup"] = {
        "cpu_cores": len(os.sched_getaffinity(0)),
        "tensorflow": tf.__version__,
        "batch_size": FLAGS.batch_size,
        "rounds": FLAGS.rounds,
        "round_seconds": FLAGS.round_seconds,
        "fractions": [float(f) for f in FLAGS.fractions],
        "images": "synthetic uniform 32x32x3 (speed does not depend on "
                  "the pixels)",
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "command": "python bench/compact_speed.py " + " ".join(sys.argv[1:]),
    }
    write_report(FLAGS.output, report, markdown(report))


if __name__ == "__main__":
    app.run(cli.run_main(main))
