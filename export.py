"""Exports a trained workdir as a physically pruned model for serving.

    python export.py --workdir=runs/quickstart
    python export.py --workdir=runs/quickstart --tflite --export_dir=out/lenet

Removes the pruned units of the gated network (a plain Keras model with the
same function, checked on test images), then writes into --export_dir:
    saved_model/      SavedModel; signature `serving_default`: float32
                      `images` [batch, H, W, C] in [0, 1] -> `logits`,
                      `probabilities`
    model.keras       the compact Keras model
    model.tflite      with --tflite (checks shape and dtype only: TFLite
                      has no Assert kernel for the range and NaN checks)
    model_card.json   architecture, data, method, eps, size, accuracy, ...
--export_dir may be a new path or an empty folder. An existing export is
only replaced with --overwrite, which deletes just those four artefacts;
the workdir, a folder holding it, the current directory or a folder with
other files in it are never replaced (a one-line error, nothing deleted).
A network with non-finite weights, or one whose gates pruned a whole layer,
is refused (exit code 1). TensorFlow's C++ start-up log is hidden; set
TF_CPP_MIN_LOG_LEVEL=0 to see it.
"""

from anpvs_tf import cli

cli.start()  # before anything imports TensorFlow

import json  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import models  # noqa: E402,F401  (registers the zoo)
from anpvs_tf.exporter import export_workdir  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("workdir", None,
                        "A workdir written by train.py.", required=True)
    flags.DEFINE_string("export_dir", None,
                        "Where to write the export (default: "
                        "<workdir>/export).")
    flags.DEFINE_bool("overwrite", False,
                      "Replace an existing export in --export_dir (its "
                      "saved_model, model.keras, model.tflite and model "
                      "card; never any other file).")
    flags.DEFINE_bool("tflite", False,
                      "Also write model.tflite (same predictions).")
    flags.DEFINE_integer(
        "verify_examples", 1000,
        "Test images on which the compact model's logits are checked "
        "against the gated model's (max difference 1e-4).", lower_bound=1)


def main(argv):
    del argv
    # TensorFlow logs every file of a SavedModel write at INFO level.
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("WARNING")

    cli.check_not_empty(workdir=FLAGS.workdir, export_dir=FLAGS.export_dir)
    export_dir, card = export_workdir(
        FLAGS.workdir,
        FLAGS.export_dir,
        tflite=FLAGS.tflite,
        overwrite=FLAGS.overwrite,
        verify_examples=FLAGS.verify_examples,
    )
    summary = {
        key: card[key]
        for key in ("params", "params_full", "flops_speedup",
                    "unit_sparsity", "clean_acc")
    }
    summary["pgd_acc"] = card["robustness"]["pgd_acc"]
    summary["max_abs_logit_difference"] = (
        card["equivalence"]["max_abs_logit_difference"])
    print(json.dumps(summary, indent=2))
    print(f"exported to {export_dir}: "
          + ", ".join(f"{name} ({size:,} bytes)"
                      for name, size in card["files"].items()))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
