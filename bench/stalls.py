"""Stalled training rounds: tf.data autotuning on vs off, side by side.

Times AT and ANP-VS (LeNet-5-Caffe, PGD-20, batch 64, embedded MNIST) in
interleaved rounds of Keras `fit`, each round a new epoch iterator, once
over the training pipeline with tf.data's autotuning (AUTOTUNE map
parallelism and prefetch, the library's pipeline before 2026-12-01) and
once over the library's pipeline now (autotuning off, fixed sizes). Each
round records examples/s and the CPU's idle fraction (/proc/stat); a round
with the CPU idle more than --stall_idle_fraction of it is stalled.

    python bench/stalls.py

Writes bench/results/stalls.json and stalls.md.
"""

import statistics
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
# The same models, steps and stall threshold as bench/throughput.py.
from throughput import METHODS  # noqa: E402
from timing import cpu_ticks  # noqa: E402
from throughput import make_model  # noqa: E402

FLAGS = flags.FLAGS
FLAGS.set_default("output", "bench/results/stalls")
FLAGS.set_default("rounds", 10)
PIPELINES = ("autotune", "fixed")


def timed_round(model, dataset):
    before = cpu_ticks()
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.steps, verbose=0,
              shuffle=False)
    seconds = time.perf_counter() - start
    idle, total = (b - a for a, b in zip(before, cpu_ticks()))
    return {"examples_per_sec": FLAGS.steps * FLAGS.batch_size / seconds,
            "cpu_idle_fraction": idle / max(total, 1)}


def summary(rounds):
    stalled = [r for r in rounds
               if r["cpu_idle_fraction"] > FLAGS.stall_idle_fraction]
    return {
        "examples_per_sec_all_rounds": statistics.median(
            r["examples_per_sec"] for r in rounds),
        "stalled_rounds": len(stalled),
        "max_cpu_idle_fraction": max(r["cpu_idle_fraction"] for r in rounds),
        "rounds": rounds,
    }


def main(argv):
    del argv
    from anpvs_tf import data

    images, labels = data.load_arrays("mnist", "train", "embedded")
    datasets = {
        pipeline: data.train_dataset(images, labels, FLAGS.batch_size,
                                     seed=0,
                                     autotune=pipeline == "autotune")[0]
        for pipeline in PIPELINES
    }
    models = {method: make_model(method, seed=0) for method in METHODS}
    for model in models.values():  # warm-up: trace and first steps
        model.fit(datasets["fixed"], epochs=1, steps_per_epoch=5, verbose=0,
                  shuffle=False)
    rounds = {(m, p): [] for m in METHODS for p in PIPELINES}
    for _ in range(FLAGS.rounds):
        for method, model in models.items():
            for pipeline, dataset in datasets.items():
                rounds[method, pipeline].append(timed_round(model, dataset))
    report = {
        "setup": (f"LeNet-5-Caffe, PGD-{FLAGS.pgd_steps}, batch "
                  f"{FLAGS.batch_size}, {FLAGS.rounds} interleaved rounds "
                  f"of {FLAGS.steps} steps per method and pipeline; stalled: "
                  f"CPU idle > {FLAGS.stall_idle_fraction:.0%}"),
        "results": {f"{m}/{p}": summary(r) for (m, p), r in rounds.items()},
    }
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(output.with_suffix(".json"), report)
    rows = [
        (*key.split("/"), f"{entry['examples_per_sec_all_rounds']:.1f}",
         f"{entry['stalled_rounds']} of {FLAGS.rounds}",
         f"{entry['max_cpu_idle_fraction']:.2f}")
        for key, entry in report["results"].items()
    ]
    lines = [report["setup"] + ".", "", *markdown_table(
        ("method", "pipeline", "examples/s (median, all rounds)",
         "stalled rounds", "max CPU idle"), rows)]
    table = "\n".join(lines) + "\n"
    files.write_text(output.with_suffix(".md"), table)
    print(table)


if __name__ == "__main__":
    app.run(main)
