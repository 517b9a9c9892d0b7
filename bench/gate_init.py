"""How the gate initialisation shrinks a trained network (SPEC pitfall 3).

Copies a trained standard LeNet-5-Caffe into the gated network with several
initial raw concentrations a_raw (b = 1) and scores it at step 0 on the
official 10k MNIST test set, with the inference gates (E[pi]) and with the
sampled masks the first training steps see. The paper's a_raw = -1
gives E[pi] = 0.24 on every gated layer.

    python bench/gate_init.py --base_workdir=bench/runs/mnist_budget/standard

Writes bench/results/gate_init.json and gate_init.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string("base_workdir", "bench/runs/mnist_budget/standard",
                    "A trained standard LeNet-5-Caffe workdir.")
flags.DEFINE_list("gate_inits", ["-1", "1", "3", "5", "10"],
                  "Raw initial values of the first concentration.")
flags.DEFINE_string("output", "bench/results/gate_init",
                    "Output path without extension (.json and .md).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras
    import numpy as np

    import models  # noqa: F401
    from anpvs_tf import data
    from anpvs_tf.registry import build_network
    from anpvs_tf.workdir import load_trained_model

    _, base = load_trained_model(FLAGS.base_workdir)
    images, labels = data.load_arrays("mnist", "test", "embedded")

    def accuracy(network, training=False):
        # training=True: the sampled masks that the first steps train with.
        predictions = np.concatenate([
            np.argmax(network(images[i:i + 1000], training=training)
                      ["logits"], -1)
            for i in range(0, len(images), 1000)
        ])
        return float(np.mean(predictions == labels))

    rows = [{"gate_init": "none (standard model)", "keep_probability": 1.0,
             "clean_acc": accuracy(base.network),
             "clean_acc_sampled_masks": accuracy(base.network)}]
    for value in map(float, FLAGS.gate_inits):
        keras.utils.set_random_seed(0)
        gated = build_network("lenet5_caffe", gated=True,
                              gate_concentration1_init=value, seed=0)
        for layer in base.network.layers:
            if layer.weights:
                gated.get_layer(layer.name).set_weights(layer.get_weights())
        keep = float(gated.get_layer("conv1_gate").keep_probability()[0])
        rows.append({"gate_init": value, "keep_probability": keep,
                     "clean_acc": accuracy(gated),
                     "clean_acc_sampled_masks": accuracy(gated, True)})

    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"base_workdir": FLAGS.base_workdir,
              "test_examples": int(len(labels)), "rows": rows}
    files.write_json(output.with_suffix(".json"), report)
    lines = [
        "Trained standard LeNet-5-Caffe copied into the gated network, "
        f"step 0, {len(labels)} MNIST test images, inference mode.",
        "",
        *markdown_table(
            ("a_raw at init", "E[pi] per gated layer",
             "clean % (inference gates)", "clean % (sampled training masks)"),
            [(r["gate_init"], f"{r['keep_probability']:.3f}",
              f"{100 * r['clean_acc']:.2f}",
              f"{100 * r['clean_acc_sampled_masks']:.2f}") for r in rows]),
    ]
    table = "\n".join(lines) + "\n"
    files.write_text(output.with_suffix(".md"), table)
    print(table)


if __name__ == "__main__":
    app.run(main)
