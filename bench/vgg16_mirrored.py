"""A VGG-16 ANP-VS training epoch under MirroredStrategy on 2 CPU devices.

The CPU is split into two logical devices and `train.py`'s code path runs
the vgg16_cifar10_anp_vs recipe (PGD-10 at eps 8/255, two optimizers,
5248 gates, CIFAR augmentation) with --strategy=mirrored: one epoch of the
standard base model, one epoch of ANP-VS, then the evaluation. The data are
CIFAR-shaped images from `tfds.testing.mock_data` (random pixels: there is
no internet here to download CIFAR-10), so the numbers show that the step
runs, not what it learns.

    python bench/vgg16_mirrored.py

Writes bench/results/vgg16_mirrored.json.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer("examples", 128, "CIFAR-shaped training images.")
flags.DEFINE_integer("batch_size", 32, "Global batch (16 per device).")
flags.DEFINE_integer("eval_pgd_steps", 10, "PGD steps of the evaluation.")
flags.DEFINE_string("output", "bench/results/vgg16_mirrored",
                    "Output path without extension.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import tensorflow as tf
    from absl import logging

    # TensorFlow logs every collective at INFO under MirroredStrategy.
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("WARNING")

    # Before TensorFlow initialises: two logical CPU devices.
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tensorflow_datasets as tfds

    import models  # noqa: F401  (registers the zoo)
    from anpvs_tf import config as config_lib
    from anpvs_tf.distribution import make_strategy
    from anpvs_tf.registry import get_experiment
    from anpvs_tf.training import train

    config = config_lib.replace(
        get_experiment("vgg16_cifar10_anp_vs"),
        **{
            "train.epochs": 1,
            "train.base_epochs": 1,
            "train.batch_size": FLAGS.batch_size,
            "train.strategy": "mirrored",
            "data.monitor_examples": 0,
            "data.test_examples": FLAGS.examples,
            "eval.attack.num_steps": FLAGS.eval_pgd_steps,
            "eval.batch_size": FLAGS.batch_size,
        },
    )
    lines = []
    with tempfile.TemporaryDirectory() as scratch, \
            tfds.testing.mock_data(num_examples=FLAGS.examples):
        start = time.perf_counter()
        results = train(config, Path(scratch) / "run", log=lines.append,
                        verbose=0)
        seconds = time.perf_counter() - start
        history = (Path(scratch) / "run" / "history.csv").read_text()
    strategy = make_strategy("mirrored")  # the one train() used
    report = {
        "recipe": "vgg16_cifar10_anp_vs",
        "strategy": "MirroredStrategy",
        "devices": [d.name for d in tf.config.list_logical_devices("CPU")],
        "replicas": strategy.num_replicas_in_sync,
        "data": f"{FLAGS.examples} CIFAR-shaped images from "
                "tfds.testing.mock_data (random pixels)",
        "global_batch": FLAGS.batch_size,
        "train_pgd_steps": config.attack.num_steps,
        "gated_units": results["gated_units"],
        "epoch_history_csv": history,
        "final_eval": {k: results[k] for k in (
            "clean_acc", "pgd_acc", "unit_sparsity", "flops_speedup")},
        "wall_seconds_base_and_anp_vs_epoch_and_eval": seconds,
        "log": lines,
    }
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(output.with_suffix(".json"), report)
    print(json.dumps({k: v for k, v in report.items() if k != "log"},
                     indent=2))


if __name__ == "__main__":
    app.run(cli.run_main(main))
