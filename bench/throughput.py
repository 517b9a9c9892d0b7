"""Training throughput of AT vs ANP-VS on LeNet-5-Caffe (PGD-20, batch 64).

Both methods are timed in one run on the embedded MNIST data, two
initialisations each, in interleaved rounds after a warm-up (tracing
excluded).

Stalls: whole rounds used to run at half speed with a core idle. The
cause was tf.data's autotuning, drawn once per iterator (every `fit`
epoch makes one); the library's pipelines now run with it off (bench/
README.md, "Stalled rounds"). Every round counts: `examples_per_sec` is
the median over all rounds, and each round's CPU idle fraction (from
/proc/stat) is recorded, with rounds idle more than --stall_idle_fraction
counted in `stalled_rounds`. Also reports ANP-VS's achieved share of the
CPU's FP32 peak: model FLOPs per training example x examples/s / peak
FLOP/s.

Results merge: a run replaces the sections it timed and keeps the others;
each `default` run is also appended to `default_runs` (its medians, stall
count and largest idle fraction), so repeated runs stay on record.

Configurations (--sections): `default` (one CPU device; the top-level `at`
and `anp_vs` keys), `mirrored_2cpu` (MirroredStrategy over 2 logical CPU
devices of the same cores, fed as train.py feeds it: each replica gets its
half of the global batch of 64) and `gpu` (one GPU, float32 and both mixed
precision policies; run only when TensorFlow sees a GPU, and its model is
recorded). The CPU is split into two logical devices for the whole run;
the default configuration uses one of them (they share the same threads).

Model FLOPs per training example, with F the forward FLOPs of the network
(SPEC's counting): each PGD step is a forward and a backward pass to the
input (2F); the update runs the clean and the adversarial pass forward and
backward to weights and inputs (2 x 3F). Total (2 x steps + 6) x F. Work
that is not needed by the loss (e.g. a second backward pass for the gates)
is not credited.

    python bench/throughput.py

Writes bench/results/throughput.json and throughput.md.
"""

import functools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from timing import cpu_peak  # noqa: E402
from timing import cpu_ticks  # noqa: E402
from timing import kernel_ceiling  # noqa: E402

flags.DEFINE_integer("rounds", 6, "Timed rounds per model (interleaved).")
flags.DEFINE_integer("seeds", 2,
                     "Models per method, each from its own initialisation.")
flags.DEFINE_integer("steps", 20, "Training steps per round.")
flags.DEFINE_float(
    "stall_idle_fraction", 0.3,
    "A round in which the CPU is idle for more than this fraction of its "
    "time is counted as stalled (see the module docstring).")
flags.DEFINE_integer("pgd_steps", 20, "PGD steps of the training attack.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_string("output", "bench/results/throughput",
                    "Output path without extension (.json and .md).")
flags.DEFINE_list(
    "sections", ["default", "mirrored_2cpu", "gpu", "ceiling"],
    "Configurations to time: default (one CPU device), mirrored_2cpu "
    "(MirroredStrategy over 2 logical CPUs), gpu (skipped without a GPU), "
    "ceiling (each conv / matmul kernel alone: the best share of peak a "
    "train step made of them could reach).")
flags.DEFINE_string(
    "profile_dir", None,
    "If set, also records a TensorFlow profile of 10 ANP-VS train steps "
    "(default section) there; view it in TensorBoard's profile plugin "
    "(pip install tensorboard-plugin-profile; tensorboard --logdir=<dir>).")
FLAGS = flags.FLAGS

METHODS = ("at", "anp_vs")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")


def make_model(method, seed, mixed_precision="none"):
    import keras

    from anpvs_tf import config as config_lib
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.assembly import build_model

    keras.utils.set_random_seed(seed)
    config = config_lib.replace(
        get_experiment(f"lenet5_caffe_mnist_{method}"),
        **{"attack.num_steps": FLAGS.pgd_steps, "train.seed": seed,
           "train.mixed_precision": mixed_precision},
    )
    model = build_model(config, (28, 28, 1), 10, 5000)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2),
                  jit_compile=False)
    return model


def split_cpu_in_two():
    """Two logical CPU devices, set before TensorFlow starts its runtime."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )


def time_methods(make, dataset, place):
    """Interleaved timed rounds of every method; the report per method.

    make(method, seed) builds a compiled model; `place` is the context
    (device or strategy scope) the models are built in.
    """
    with place():
        trainers = [(m, make(m, seed))
                    for seed in range(FLAGS.seeds) for m in METHODS]
    for _, model in trainers:  # warm-up: trace and first steps
        model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0)

    rounds = {m: [] for m in METHODS}
    for _ in range(FLAGS.rounds):
        for method, model in trainers:
            before = cpu_ticks()
            start = time.perf_counter()
            model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.steps,
                      verbose=0)
            seconds = time.perf_counter() - start
            idle, total = (b - a for a, b in zip(before, cpu_ticks()))
            rounds[method].append({
                "examples_per_sec": FLAGS.steps * FLAGS.batch_size / seconds,
                "cpu_idle_fraction": idle / max(total, 1),
            })
    report = {}
    for method, values in rounds.items():
        report[method] = {
            "examples_per_sec": statistics.median(
                r["examples_per_sec"] for r in values),
            "stalled_rounds": sum(
                r["cpu_idle_fraction"] > FLAGS.stall_idle_fraction
                for r in values),
            "max_cpu_idle_fraction": max(
                r["cpu_idle_fraction"] for r in values),
            "rounds": values,
        }
    return report, trainers[0][1]


def ceiling_lines(ceiling):
    lines = [
        "Kernel ceiling (each conv / matmul timed alone at batch "
        f"{FLAGS.batch_size}; % of FP32 peak):",
        "",
        *markdown_table(
            ("layer", "forward ms", "to input ms", "to kernel ms",
             "forward %", "to input %", "to kernel %"),
            [(row["layer"], f"{row['forward_ms']:.3f}",
              f"{row['to_input_ms']:.3f}", f"{row['to_kernel_ms']:.3f}",
              f"{100 * row['forward_share_of_peak']:.1f}",
              f"{100 * row['to_input_share_of_peak']:.1f}",
              f"{100 * row['to_kernel_share_of_peak']:.1f}")
             for row in ceiling["layers"]]),
    ]
    lines += [
        "",
        "A train step built only of these kernels, back to back: "
        f"{ceiling['examples_per_sec_upper_bound']:.0f} examples/s, "
        f"{100 * ceiling['share_of_peak_upper_bound']:.1f} % of peak "
        "(an upper bound: everything else is free in it).",
    ]
    return lines


def profile_steps(model, dataset, steps=10):
    """A TensorFlow profile of `steps` train steps, after a warm-up."""
    import tensorflow as tf

    model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0)
    tf.profiler.experimental.start(FLAGS.profile_dir)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    tf.profiler.experimental.stop()


def configurations(report):
    """(name, {method: timing}) of every configuration in the report."""
    yield "default (1 CPU device)", report
    if "mirrored_2cpu" in report:
        yield "mirrored, 2 logical CPUs", report["mirrored_2cpu"]
    for precision in PRECISIONS:
        if precision in report.get("gpu", {}):
            yield f"{report['gpu']['device']}, {precision}", (
                report["gpu"][precision])


def table_rows(report):
    return [
        (name, m, f"{timing[m]['examples_per_sec']:.1f}",
         f"{timing[m]['stalled_rounds']} of {len(timing[m]['rounds'])}",
         # Reports from before every round counted lack it.
         f"{timing[m].get('max_cpu_idle_fraction', float('nan')):.2f}")
        for name, timing in configurations(report)
        for m in METHODS
    ]


def git_commit():
    """The checkout's commit (short), '+' when its code has local changes
    (results written by benchmarks do not count)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True,
                              text=True, cwd=Path(__file__).parent).stdout
    dirty = "+" if git("status", "--porcelain", "--untracked-files=no",
                       "--", ".", ":!bench/results") else ""
    return git("rev-parse", "--short", "HEAD").strip() + dirty


def gpu_name():
    import tensorflow as tf

    gpu = tf.config.list_physical_devices("GPU")[0]
    details = tf.config.experimental.get_device_details(gpu)
    return details.get("device_name", gpu.name)


def markdown(report):
    """The markdown summary of a (merged) report."""
    return "\n".join([
        f"LeNet-5-Caffe, PGD-{report['pgd_steps']}, batch "
        f"{report['batch_size']}: "
        f"medians over {FLAGS.seeds} initialisations x {FLAGS.rounds} "
        f"interleaved rounds of {FLAGS.steps} steps per method (a round is "
        f"stalled when the CPU idles > {FLAGS.stall_idle_fraction:.0%} of "
        "it).",
        "",
        *markdown_table(
            ("configuration", "method", "examples/s (median, all rounds)",
             "stalled rounds", "largest CPU idle fraction"),
            table_rows(report)),
        "",
        "Default runs on record (median examples/s over all rounds):",
        "",
        *markdown_table(
            ("finished", "commit", "AT", "ANP-VS", "ANP-VS / AT cost",
             "stalled rounds (AT, ANP-VS)", "largest idle"),
            [(r["finished"], r["commit"],
              f"{r['at']['examples_per_sec']:.1f}",
              f"{r['anp_vs']['examples_per_sec']:.1f}",
              f"{r['anp_vs_cost_per_example_vs_at']:.3f}x",
              f"{r['at']['stalled_rounds']}, "
              f"{r['anp_vs']['stalled_rounds']}",
              f"{max(r[m]['max_cpu_idle_fraction'] for m in METHODS):.2f}")
             for r in report["default_runs"]]),
        "",
        f"ANP-VS cost per example: "
        f"{report['anp_vs_cost_per_example_vs_at']:.3f}x AT.",
        f"Peak: {report['peak']['cores']} cores x "
        f"{report['peak']['clock_ghz']:.2f} GHz x "
        f"{report['peak']['flops_per_cycle_per_core']} FLOP/cycle "
        f"({report['peak']['flops_per_cycle_reason']}) = "
        f"{report['peak']['peak_gflops']:.1f} GFLOP/s.",
        f"ANP-VS: {report['model_flops_per_training_example'] / 1e6:.1f} "
        f"MFLOP per training example ((2 x {report['pgd_steps']} + 6) x "
        f"{report['forward_flops']:,} forward FLOPs) -> "
        f"{100 * report['anp_vs_share_of_fp32_peak']:.1f} % of peak.",
        *([""] + ceiling_lines(report["kernel_ceiling"])
          if "kernel_ceiling" in report else []),
    ])


def main(argv):
    del argv
    split_cpu_in_two()
    import contextlib

    import keras
    import tensorflow as tf

    import models  # noqa: F401
    from anpvs_tf import data
    from anpvs_tf.complexity import count_complexity
    from anpvs_tf.distribution import distribute_batches

    keras.utils.set_random_seed(0)
    images, labels = data.load_arrays("mnist", "train", "embedded")
    dataset, _ = data.train_dataset(images, labels, FLAGS.batch_size, seed=0)
    on_cpu = functools.partial(tf.device, "/CPU:0")
    report, network = {}, None
    if "default" in FLAGS.sections:
        default, model = time_methods(make_model, dataset, on_cpu)
        report.update(default)
        network = model.network
        if FLAGS.profile_dir:
            with on_cpu():
                profile_steps(make_model("anp_vs", 0), dataset)
    if "mirrored_2cpu" in FLAGS.sections:
        strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
        report["mirrored_2cpu"], model = time_methods(
            make_model,
            distribute_batches(strategy, dataset, FLAGS.batch_size),
            strategy.scope,
        )
        report["mirrored_2cpu"]["replicas"] = strategy.num_replicas_in_sync
        network = network or model.network
    if "gpu" in FLAGS.sections and tf.config.list_physical_devices("GPU"):
        report["gpu"] = {"device": gpu_name()}
        for precision in PRECISIONS:
            report["gpu"][precision], model = time_methods(
                functools.partial(make_model, mixed_precision=precision),
                dataset, contextlib.nullcontext,
            )
        network = network or model.network
    peak = cpu_peak()
    if "ceiling" in FLAGS.sections:
        network = network or make_model("at", 0).network
        with on_cpu():
            report["kernel_ceiling"] = kernel_ceiling(
                network, peak, FLAGS.batch_size, FLAGS.pgd_steps)
    if network is None:
        raise app.UsageError("nothing was timed; check --sections")

    forward = count_complexity(network, active="all").flops
    flops_per_example = (2 * FLAGS.pgd_steps + 6) * forward
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.with_suffix(".json")
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(report)
    if "default" not in FLAGS.sections:
        files.write_json(path, merged)
        if "default_runs" in merged:  # the summary shows the new section
            files.write_text(output.with_suffix(".md"),
                             markdown(merged) + "\n")
        if "kernel_ceiling" in report:
            print("\n".join(ceiling_lines(report["kernel_ceiling"])))
        print(f"Added {sorted(report)} to {path}.")
        return
    anp_vs = report["anp_vs"]["examples_per_sec"]
    at = report["at"]["examples_per_sec"]
    merged.update(
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
    merged.pop("examples_per_sec_all_rounds", None)
    merged["default_runs"] = merged.get("default_runs", [])[-9:] + [{
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        **{m: {k: report[m][k] for k in ("examples_per_sec",
                                         "stalled_rounds",
                                         "max_cpu_idle_fraction")}
           for m in METHODS},
        "anp_vs_cost_per_example_vs_at": at / anp_vs,
    }]
    report = merged
    files.write_json(path, report)
    table = markdown(report)
    files.write_text(output.with_suffix(".md"), table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
