"""TensorFlow's oneDNN kernels off against on, on this machine.

TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512
VNNI or newer; on an AVX2 CPU its stock conv runs each 5x5 one-channel
conv as many small GEMMs. anpvs_tf.cli.start() now turns oneDNN on
(TF_ENABLE_ONEDNN_OPTS=1 unless the user set it). The variable is read
when TensorFlow is imported, so each setting runs in its own process:

- kernels: LeNet-5-Caffe's conv1 (20 filters, and the 4-5 a compact
  network keeps) and conv2 at batch 256, `--kernel_rounds` processes per
  setting, alternating off / on;
- the main command (README) once per setting, off first: its wall time,
  training and evaluation time, and the compact export's serving
  speed-up, which train.py measures in the same process.

    python bench/onednn.py [--main_command=false]

Writes bench/results/onednn.{json,md}.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402
from main_command import MAIN_COMMAND  # noqa: E402
from main_command import run  # noqa: E402
from main_command import training_seconds  # noqa: E402

flags.DEFINE_integer("kernel_rounds", 3,
                     "Processes per setting for the kernel timings.")
flags.DEFINE_bool("main_command", True,
                  "Also run the README's main command once per setting.")
flags.DEFINE_string("output", "bench/results/onednn",
                    "Output path without extension.")
FLAGS = flags.FLAGS



SETTINGS = ("0", "1")  # TF_ENABLE_ONEDNN_OPTS: off, on
# (name, input shape, kernel shape) of the convolutions timed.
CONVS = (("conv1, 20 filters", (256, 28, 28, 1), (5, 5, 1, 20)),
         ("conv1, 5 filters", (256, 28, 28, 1), (5, 5, 1, 5)),
         ("conv2, 50 filters", (256, 12, 12, 20), (5, 5, 20, 50)))

# Run in a fresh process per setting: prints {conv name: median ms}.
KERNEL_PROBE = """
import json, sys
sys.path.insert(0, {bench!r})
from anpvs_tf import cli
cli.start()
import numpy as np, tensorflow as tf
from timing import median_call_seconds
rng = np.random.default_rng(0)
out = {{}}
for name, x_shape, k_shape in {convs!r}:
    x = tf.constant(rng.random(x_shape, dtype=np.float32))
    k = tf.constant(rng.standard_normal(k_shape, dtype=np.float32))
    conv = tf.function(lambda x=x, k=k: tf.nn.conv2d(x, k, 1, "VALID"))
    out[name] = 1000 * median_call_seconds(lambda: conv().numpy(),
                                           repeats=5, seconds=0.5)
print(json.dumps(out))
"""


def environment(setting):
    return {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}


def kernel_times(setting):
    code = KERNEL_PROBE.format(bench=str(ROOT / "bench"), convs=CONVS)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                            env=environment(setting), check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main_command(setting, scratch):
    workdir = Path(scratch) / f"onednn_{setting}"
    wall, summary = run(MAIN_COMMAND, workdir, env=environment(setting),
                        quiet=True)
    results = summary["results"]
    return {
        "wall_seconds": wall,
        "train_seconds": training_seconds(summary, workdir),
        "eval_seconds": (results["eval_seconds"]
                         + results["strong"]["seconds"]),
        "serving_speedup_b256": summary["serving"]["speedup"],
        "compact_examples_per_sec":
            summary["serving"]["compact_examples_per_sec"],
        "unpruned_examples_per_sec":
            summary["serving"]["unpruned_examples_per_sec"],
        "worst_case_acc": results["strong"]["worst_case_acc"],
        "clean_acc": results["clean_acc"],
    }


def main(argv):
    del argv
    load_before = os.getloadavg()
    kernels = {setting: [] for setting in SETTINGS}
    for _ in range(FLAGS.kernel_rounds):
        for setting in SETTINGS:
            kernels[setting].append(kernel_times(setting))
    medians = {setting: {name: statistics.median(r[name] for r in rounds)
                         for name, *_ in CONVS}
               for setting, rounds in kernels.items()}
    report = {"cpu": platform.processor() or platform.machine(),
              "avx512": "avx512f" in Path("/proc/cpuinfo").read_text(),
              "kernel_rounds": kernels, "kernel_median_ms": medians}
    if FLAGS.main_command:
        with tempfile.TemporaryDirectory() as scratch:
            report["main_command"] = {
                setting: main_command(setting, scratch)
                for setting in SETTINGS}
    report.update(load_before=load_before, load_after=os.getloadavg(),
                  command=MAIN_COMMAND)
    files.write_json(f"{FLAGS.output}.json", report)

    lines = ["TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's default on a CPU without "
             "AVX-512 VNNI) against =1 (what anpvs_tf.cli.start() sets), "
             f"{os.cpu_count()} CPU cores, AVX-512: "
             f"{'yes' if report['avx512'] else 'no'}; 1-minute load "
             f"average before / after: {load_before[0]:.2f} / "
             f"{report['load_after'][0]:.2f}.", "",
             f"Conv kernels at batch 256 (median ms over "
             f"{FLAGS.kernel_rounds} processes per setting, alternating):",
             ""]
    lines += markdown_table(
        ["conv", "oneDNN off ms", "oneDNN on ms", "off / on"],
        [[name, f"{medians['0'][name]:.2f}", f"{medians['1'][name]:.2f}",
          f"{medians['0'][name] / medians['1'][name]:.2f}x"]
         for name, *_ in CONVS])
    if FLAGS.main_command:
        runs = report["main_command"]
        lines += ["", f"`{MAIN_COMMAND}`, once per setting (off first):",
                  ""]
        rows = [("wall time s", "wall_seconds", "{:.0f}"),
                ("training s (base included)", "train_seconds", "{:.0f}"),
                ("evaluation s", "eval_seconds", "{:.0f}"),
                ("serving speed-up, compact vs unpruned (batch 256)",
                 "serving_speedup_b256", "{:.2f}x"),
                ("compact SavedModel images/s", "compact_examples_per_sec",
                 "{:,.0f}"),
                ("unpruned SavedModel images/s",
                 "unpruned_examples_per_sec", "{:,.0f}")]
        lines += markdown_table(
            ["", "oneDNN off", "oneDNN on", "off / on"],
            [[label, fmt.format(runs["0"][key]), fmt.format(runs["1"][key]),
              f"{runs['0'][key] / runs['1'][key]:.2f}"]
             for label, key, fmt in rows])
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
