"""Training throughput of AT vs ANP-VS on LeNet-5-Caffe (PGD-20, batch 64).

Both methods are timed in one run on the embedded MNIST data, in interleaved
rounds after a warm-up (tracing excluded); the median examples/s of the
rounds is reported. Also reports ANP-VS's achieved share of the CPU's FP32
peak: model FLOPs per training example x examples/s / peak FLOP/s.

Model FLOPs per training example, with F the forward FLOPs of the network
(SPEC's counting): each PGD step is a forward and a backward pass to the
input (2F); the update runs the clean and the adversarial pass forward and
backward to weights and inputs (2 x 3F). Total (2 x steps + 6) x F. Work
that is not needed by the loss (e.g. a second backward pass for the gates)
is not credited.

    python bench/throughput.py

Writes bench/results/throughput.json and throughput.md.
"""

import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402,F401  (sets the Keras backend first)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer("rounds", 5, "Timed rounds per method (interleaved).")
flags.DEFINE_integer("steps", 30, "Training steps per round.")
flags.DEFINE_integer("pgd_steps", 20, "PGD steps of the training attack.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_string("output", "bench/results/throughput",
                    "Output path without extension (.json and .md).")
FLAGS = flags.FLAGS

METHODS = ("at", "anp_vs")


def cpu_peak():
    """FP32 peak FLOP/s = cores x clock x FLOPs per cycle, with the inputs."""
    import os

    text = Path("/proc/cpuinfo").read_text()
    flags_line = re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()
    mhz = float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M).group(1))
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1)
    cores = len(os.sched_getaffinity(0))
    # FMA units x fp32 lanes x 2 (multiply + add). Server cores with
    # AVX-512 have two 512-bit FMA units; AVX2 cores two 256-bit ones.
    if "avx512f" in flags_line:
        per_cycle, why = 2 * 16 * 2, "AVX-512: 2 FMA units x 16 fp32 x 2"
    elif "avx2" in flags_line and "fma" in flags_line:
        per_cycle, why = 2 * 8 * 2, "AVX2: 2 FMA units x 8 fp32 x 2"
    else:
        per_cycle, why = 4 * 2, "SSE: 4 fp32 x 2 (no FMA)"
    peak = cores * mhz * 1e6 * per_cycle
    return {
        "cpu": model,
        "cores": cores,
        "clock_ghz": mhz / 1000,
        "flops_per_cycle_per_core": per_cycle,
        "flops_per_cycle_reason": why,
        "peak_gflops": peak / 1e9,
    }


def make_model(method):
    import keras

    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.training import build_model

    config = config_lib.replace(
        get_experiment(f"lenet5_caffe_mnist_{method}"),
        **{"attack.num_steps": FLAGS.pgd_steps},
    )
    model = build_model(config, (28, 28, 1), 10, 5000)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2),
                  jit_compile=False)
    return model


def main(argv):
    del argv
    import keras

    import models  # noqa: F401
    from anpvs_tf import data
    from anpvs_tf.complexity import count_complexity

    keras.utils.set_random_seed(0)
    images, labels = data.load_arrays("mnist", "train", "embedded")
    dataset, _ = data.train_dataset(images, labels, FLAGS.batch_size, seed=0)
    trainers = {m: make_model(m) for m in METHODS}
    for model in trainers.values():  # warm-up: trace and first steps
        model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0)

    rates = {m: [] for m in METHODS}
    for _ in range(FLAGS.rounds):
        for method, model in trainers.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.steps,
                      verbose=0)
            seconds = time.perf_counter() - start
            rates[method].append(FLAGS.steps * FLAGS.batch_size / seconds)

    forward = count_complexity(trainers["anp_vs"].network, active="all").flops
    flops_per_example = (2 * FLAGS.pgd_steps + 6) * forward
    peak = cpu_peak()
    report = {
        method: {
            "examples_per_sec": statistics.median(values),
            "rounds": values,
        }
        for method, values in rates.items()
    }
    anp_vs = report["anp_vs"]["examples_per_sec"]
    at = report["at"]["examples_per_sec"]
    report.update(
        pgd_steps=FLAGS.pgd_steps,
        batch_size=FLAGS.batch_size,
        anp_vs_cost_per_example_vs_at=at / anp_vs,
        forward_flops=forward,
        model_flops_per_training_example=flops_per_example,
        peak=peak,
        anp_vs_share_of_fp32_peak=(
            flops_per_example * anp_vs / (peak["peak_gflops"] * 1e9)
        ),
    )
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2))
    table = "\n".join([
        f"LeNet-5-Caffe, PGD-{FLAGS.pgd_steps}, batch {FLAGS.batch_size}, "
        f"median of {FLAGS.rounds} interleaved rounds of {FLAGS.steps} "
        "steps.",
        "",
        "| method | examples/s |",
        "|---|---|",
        f"| at | {at:.1f} |",
        f"| anp_vs | {anp_vs:.1f} |",
        "",
        f"ANP-VS cost per example: {at / anp_vs:.3f}x AT.",
        f"Peak: {peak['cores']} cores x {peak['clock_ghz']:.2f} GHz x "
        f"{peak['flops_per_cycle_per_core']} FLOP/cycle "
        f"({peak['flops_per_cycle_reason']}) = "
        f"{peak['peak_gflops']:.1f} GFLOP/s.",
        f"ANP-VS: {flops_per_example / 1e6:.1f} MFLOP per training example "
        f"((2 x {FLAGS.pgd_steps} + 6) x {forward:,} forward FLOPs) -> "
        f"{100 * report['anp_vs_share_of_fp32_peak']:.1f} % of peak.",
    ])
    output.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
