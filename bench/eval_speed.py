"""Evaluation speed: PGD-40 over the 10k MNIST test images, LeNet-5-Caffe.

Times the attack path of evaluate.py (robustness.RobustnessEvaluator.craft:
one traced tf.while_loop per batch of 500, eps 0.3, step 0.01, random
start) on the AT model of bench/mnist_budget.py (an untrained LeNet-5-Caffe
if that run is missing: the cost does not depend on the weights). One
warm-up pass traces the function; then --repeats timed passes over all
10,000 images; the median is reported. The machine's load average is
recorded, since other processes may share its cores.

    python bench/eval_speed.py

Writes bench/results/eval_speed.json ({"examples_per_sec", "steps",
"examples"}) and eval_speed.md (every repeat, cores, load).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app
from absl import flags

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

flags.DEFINE_string("workdir", "bench/runs/mnist_budget/at",
                    "Trained LeNet-5-Caffe workdir to attack.")
flags.DEFINE_integer("repeats", 3, "Timed passes over the test set.")
flags.DEFINE_integer("batch_size", 500, "Evaluation batch size.")
flags.DEFINE_string("output", "bench/results/eval_speed",
                    "Output path without extension.")
FLAGS = flags.FLAGS

STEPS = 40


def network_under_test():
    from anpvs_tf.registry import build_network
    from anpvs_tf.workdir import load_trained_model

    if (Path(FLAGS.workdir) / "network.weights.h5").exists():
        return FLAGS.workdir, load_trained_model(FLAGS.workdir)[1].network
    return "untrained", build_network("lenet5_caffe", gated=False, seed=0)


def main(argv):
    del argv
    import models  # noqa: F401
    from anpvs_tf.config import AttackConfig
    from anpvs_tf.config import DataConfig
    from anpvs_tf.evaluation.classifier import Classifier
    from anpvs_tf.evaluation.engine import RobustnessEvaluator
    from anpvs_tf.data import load_split

    images, labels = load_split(DataConfig(), "test")
    name, network = network_under_test()
    evaluator = RobustnessEvaluator(Classifier(network), FLAGS.batch_size)
    attack = AttackConfig(epsilon=0.3, num_steps=STEPS, step_size=0.01)
    evaluator.craft(attack, images[: FLAGS.batch_size],
                    labels[: FLAGS.batch_size])  # trace
    load_before = os.getloadavg()
    rates = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        evaluator.craft(attack, images, labels)
        rates.append(len(labels) / (time.perf_counter() - start))
    load_after = os.getloadavg()
    result = {"examples_per_sec": statistics.median(rates), "steps": STEPS,
              "examples": len(labels)}
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(output.with_suffix(".json"), result)
    cores = len(os.sched_getaffinity(0))
    table = "\n".join([
        (f"PGD-{STEPS} (eps 0.3, step 0.01, random start) over "
        f"{len(labels):,} MNIST test images, LeNet-5-Caffe ({name}), batch "
        f"{FLAGS.batch_size}, {cores} CPU cores."),
        "",
        *markdown_table(
            ("examples/s (median)", "repeats (examples/s)"),
            [(f"{result['examples_per_sec']:.1f}",
              ", ".join(f"{r:.1f}" for r in rates))]),
        "",
        (f"1-minute load average: {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (other processes share the cores)."),
    ]) + "\n"
    files.write_text(output.with_suffix(".md"), table)
    print(table)


if __name__ == "__main__":
    app.run(main)
