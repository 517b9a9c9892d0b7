"""Every zoo entry builds, trains one step and evaluates one step."""

import keras
import numpy as np
import pytest

from anpvs_tf import config as config_lib
from anpvs_tf.datasets import DATASET_INFO
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.layers import gates_of
from anpvs_tf.optimizers import make_optimizers
from anpvs_tf.registry import get_experiment
from anpvs_tf.registry import list_experiments
from anpvs_tf.assembly import build_model

GATED_UNITS = {"lenet5_caffe": 1370, "vgg16": 5248, "resnet18": 5312}


def tiny_batch(dataset, size=4):
    input_shape, num_classes = DATASET_INFO[dataset]
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(size, *input_shape)).astype("float32")
    labels = rng.randint(0, num_classes, size=size).astype("int64")
    return images, labels


def test_every_entry_is_a_valid_recipe_with_its_name():
    entries = list_experiments()
    assert len(entries) >= 15
    for entry in entries:
        config = get_experiment(entry)
        # Built, hence validated; and its JSON form reads back the same.
        assert config_lib.from_dict(config.to_dict()) == config
        architecture, dataset = config.model.architecture, config.data.dataset
        assert entry == f"{architecture}_{dataset}_{config.train.method}"


@pytest.mark.parametrize("entry", list_experiments())
def test_entry_trains_and_evaluates_one_step(entry):
    config = get_experiment(entry)
    # One PGD step: the attack's cost is not what this test is about.
    config = config_lib.replace(config, **{
        "attack.num_steps": 1, "eval.attack.num_steps": 1,
    })
    images, labels = tiny_batch(config.data.dataset)
    input_shape, num_classes = DATASET_INFO[config.data.dataset]
    keras.utils.set_random_seed(0)
    model = build_model(config, input_shape, num_classes, 50000)
    gated_units = sum(gate.units for gate in gates_of(model.network))
    expected = GATED_UNITS[config.model.architecture]
    assert gated_units == (
        expected if config.train.method in GATED_METHODS else 0)
    # Eager: tracing and optimising VGG's graph would cost most of the time.
    model.compile(*make_optimizers(config.train, 10), jit_compile=False,
                  run_eagerly=True)
    before = [w.copy() for w in model.network.get_weights()]
    logs = model.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"])
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(before, model.network.get_weights(), strict=True)
    ]
    assert all(changed[:2])  # the first kernel and bias (or gate) moved
    logs = model.test_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["adv_ce_loss"]) and np.isfinite(logs["vs_loss"])
    logits = model.predict(images, verbose=0)
    assert logits.shape == (len(labels), num_classes)
