"""A trained workdir -> compact, verified, documented serving export."""

import datetime
from pathlib import Path

import keras
import numpy as np

import anpvs_tf
from anpvs_tf import data
from anpvs_tf import files
from anpvs_tf import serving
from anpvs_tf.complexity import complexity_report
from anpvs_tf.complexity import count_complexity
from anpvs_tf.errors import ConfigError
from anpvs_tf.pruning import compact_network
from anpvs_tf.workdir import COMMAND_FILE
from anpvs_tf.workdir import RESULTS_FILE
from anpvs_tf.workdir import load_trained_model

# The compact network must reproduce the gated one to this (issue 3).
EQUIVALENCE_TOLERANCE = 1e-4


class ExportVerificationError(RuntimeError):
    """The compact model does not compute the gated model's function."""


def read_results(workdir):
    """The workdir's results.json, which the card's robustness comes from.

    Without it (a run stopped between saving the network and evaluating
    it) or when damaged, the same train.py command writes it again: it
    evaluates the trained network and does not train again.
    """
    path = Path(workdir) / RESULTS_FILE
    if not path.exists():
        raise ConfigError(
            f"'{workdir}' holds no evaluation of its training ({RESULTS_FILE}"
            " is missing); run the same train.py command to finish it"
        )
    return files.read_json(
        path,
        recover="delete it and run the same train.py command: it "
                "re-evaluates the trained network without training again",
    )


def _predict(function, images, batch_size=500):
    return np.concatenate([
        keras.ops.convert_to_numpy(function(images[i:i + batch_size]))
        for i in range(0, len(images), batch_size)
    ])


def verify_equivalence(network, compact, images):
    """Max |logit difference| between gated (inference) and compact."""
    gated = _predict(
        lambda x: network(x, training=False)["logits"], images
    )
    difference = float(np.abs(_predict(compact, images) - gated).max())
    if not difference <= EQUIVALENCE_TOLERANCE:
        raise ExportVerificationError(
            f"the compact model's logits differ from the gated model's by "
            f"{difference:.3g} (> {EQUIVALENCE_TOLERANCE}); this is a bug, "
            "please report it with the workdir"
        )
    return difference


def model_card(workdir, config, network, compact, images, labels,
               verify_examples, trained=None):
    """What a user of the export needs to know, as a JSON-able dict.

    `trained`: the workdir's results (read from it if None).
    """
    workdir = Path(workdir)
    if trained is None:
        trained = read_results(workdir)
    difference = verify_equivalence(
        network, compact, images[:verify_examples]
    )
    predictions = _predict(compact, images).argmax(axis=-1)
    gated = complexity_report(network)
    size = count_complexity(compact)
    command_path = workdir / COMMAND_FILE
    return {
        "name": compact.name,
        "architecture": config.model.architecture,
        "dataset": config.data.dataset,
        "method": config.train.method,
        "epsilon": config.attack.epsilon,
        "input": {
            "name": "images",
            "shape": [None, *compact.inputs[0].shape[1:]],
            "dtype": "float32",
            "range": [0.0, 1.0],
        },
        "outputs": ["logits", "probabilities"],
        "params": int(compact.count_params()),
        "params_full": gated["params_full"],
        "flops": size.flops,
        "flops_full": gated["flops_full"],
        "flops_speedup": gated["flops_full"] / size.flops,
        "unit_sparsity": gated["unit_sparsity"],
        "weight_sparsity": 100.0 * (
            1.0 - compact.count_params() / gated["params_full"]
        ),
        "active_units": gated["active_units"],
        "gated_units": gated["gated_units"],
        "active_units_per_gate": gated["active_units_per_gate"],
        "clean_acc": float(np.mean(predictions == labels)),
        "test_examples": len(labels),
        "robustness": {
            "source": f"{RESULTS_FILE} of the workdir: the gated model in "
                      "inference mode, whose function the compact model "
                      "computes (see equivalence)",
            "attack": trained["attack"],
            "pgd_acc": trained["pgd_acc"],
            "clean_acc": trained["clean_acc"],
            "vulnerability": trained["vulnerability"],
            "test_examples": trained["test_examples"],
        },
        "equivalence": {
            "max_abs_logit_difference": difference,
            "tolerance": EQUIVALENCE_TOLERANCE,
            "examples": int(min(verify_examples, len(labels))),
        },
        "anpvs_tf_version": anpvs_tf.__version__,
        "train_command": (
            command_path.read_text().strip() if command_path.exists()
            else None
        ),
        "workdir": str(workdir),
        "config": config.to_dict(),
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        ),
    }


def export_workdir(workdir, export_dir=None, tflite=False, overwrite=False,
                   verify_examples=1000):
    """Compacts the trained network of `workdir` and exports it.

    Returns (export_dir, card).
    """
    workdir = Path(workdir)
    export_dir = Path(export_dir or workdir / "export")
    # Before any work: the user learns it at once.
    serving.check_export_dir(export_dir, overwrite, workdir)
    config, model = load_trained_model(workdir)
    trained = read_results(workdir)
    network = model.network
    compact = compact_network(network)
    images, labels = data.load_split(config.data, "test")
    card = model_card(
        workdir, config, network, compact, images, labels, verify_examples,
        trained,
    )
    card = serving.export(
        compact, export_dir, card, tflite=tflite, overwrite=overwrite,
        workdir=workdir,
    )
    return export_dir, card
