"""Every architecture has its parameter count pinned; every zoo entry
builds, trains one step and evaluates one step (on a tiny variant)."""

import keras
import numpy as np
import pytest

from anpvs_tf import config as config_lib
from anpvs_tf.datasets import DATASET_INFO
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.layers import gates_of
from anpvs_tf.optimizers import make_optimizers
from anpvs_tf.registry import get_experiment
from anpvs_tf.registry import build_network
from anpvs_tf.registry import list_experiments
from anpvs_tf.registry import list_models
from anpvs_tf.assembly import build_model

# Gated units: LeNet 20 + 50 + 800 (4x4x50 flattened) + 500; VGG-16 the
# 4224 conv channels + 512 flattened + 512 hidden; ResNet-18 the stem 64,
# 2x2 convs x (64 + 128 + 256 + 512), the shortcuts 128 + 256 + 512 and
# the 512 pooled features. Tiny: LeNet 4 + 8 + 128 (4x4x8) + 16; VGG
# 4+4+8+8+8+16+16 + 16 + 16; ResNet 8 + 2x8 + (16 + 2x16) + 16.
GATED_UNITS = {
    "lenet5_caffe": 1370, "vgg16": 5248, "resnet18": 5312,
    "lenet5_caffe_tiny": 156, "vgg16_tiny": 96, "resnet18_tiny": 88,
}
# Parameters of the ungated networks with 10 classes, by hand (conv:
# k*k*in*out + out; dense: in*out + out; batch-norm: 4 per channel,
# moving statistics included; the ResNet's convs have no bias). A gated
# network adds 2 parameters (its two Beta concentrations) per gated unit.
PLAIN_PARAMS = {
    # conv1 25*1*20+20 = 520, conv2 25*20*50+50 = 25,050,
    # fc1 800*500+500 = 400,500, fc2 500*10+10 = 5,010.
    "lenet5_caffe": 431_080,
    # conv1 9*3*64+64 = 1,792; conv2 9*64*64+64 = 36,928;
    # conv3 9*64*128+128 = 73,856; conv4 9*128*128+128 = 147,584;
    # conv5 9*128*256+256 = 295,168; conv6-7 2 x 590,080;
    # conv8 9*256*512+512 = 1,180,160; conv9-13 5 x 2,359,808
    # (14,714,688 in all); conv batch-norms 4*4224 = 16,896;
    # fc1 512*512+512 = 262,656; fc1_bn 2,048; fc2 5,130.
    "vgg16": 15_001_418,
    # stem 9*3*64 = 1,728; stage 1: 2 x (256 + 36,864 + 256 + 36,864)
    # = 148,480; stage 2: bn 256, shortcut 64*128 = 8,192, convs 73,728
    # + 147,456, bn 512, then 512 + 147,456 + 512 + 147,456: 526,080;
    # stage 3 likewise 2,100,736; stage 4 8,395,776; final_bn 2,048;
    # classifier 512*10+10 = 5,130.
    "resnet18": 11_179_978,
    # conv1 25*1*4+4 = 104, conv2 25*4*8+8 = 808, fc1 128*16+16 = 2,064,
    # fc2 16*10+10 = 170.
    "lenet5_caffe_tiny": 3_146,
    # convs 112 + 148 + 296 + 584 + 584 + 1,168 + 2,320 = 5,212;
    # their batch-norms 4*64 = 256; fc1 16*16+16 = 272; fc1_bn 64;
    # fc2 170.
    "vgg16_tiny": 5_974,
    # stem 9*3*8 = 216; stage 1: 32 + 576 + 32 + 576 = 1,216; stage 2:
    # bn 32, shortcut 8*16 = 128, convs 9*8*16 = 1,152 and 9*16*16 =
    # 2,304, bn 64: 3,680; final_bn 64; classifier 16*10+10 = 170.
    "resnet18_tiny": 5_346,
}
INPUT_SHAPES = {"lenet5_caffe": (28, 28, 1), "vgg16": (32, 32, 3),
                "resnet18": (32, 32, 3)}


def tiny_batch(dataset, size=4):
    input_shape, num_classes = DATASET_INFO[dataset]
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(size, *input_shape)).astype("float32")
    labels = rng.randint(0, num_classes, size=size).astype("int64")
    return images, labels


# Named presets: zoo entry -> the recipe it is a variant of.
PRESETS = {"lenet5_caffe_mnist_anp_vs_budget": "lenet5_caffe_mnist_anp_vs",
           # Its method is anp_vs_trades: ANP-VS on TRADES' loss.
           "lenet5_caffe_mnist_anp_vs_budget_robust":
               "lenet5_caffe_mnist_anp_vs",
           "lenet5_caffe_fashion_mnist_anp_vs_budget":
               "lenet5_caffe_fashion_mnist_anp_vs"}


def test_every_entry_is_a_valid_recipe_with_its_name():
    entries = list_experiments()
    assert len(entries) >= 15
    for entry in entries:
        config = get_experiment(entry)
        # Built, hence validated; and its JSON form reads back the same.
        assert config_lib.from_dict(config.to_dict()) == config
        architecture, dataset = config.model.architecture, config.data.dataset
        name = f"{architecture}_{dataset}_{config.train.method}"
        # A named preset of a recipe adds a suffix (e.g. _budget).
        assert entry == name or entry in PRESETS, entry
    for preset, recipe in PRESETS.items():
        assert preset.startswith(recipe + "_") and recipe in entries


def test_every_architecture_has_a_pinned_parameter_count():
    assert sorted(PLAIN_PARAMS) == list_models()


@pytest.mark.parametrize("architecture", sorted(PLAIN_PARAMS))
def test_parameter_counts_are_pinned(architecture):
    """Full-size and tiny networks, gated and ungated, have the
    parameter counts worked out by hand above."""
    input_shape = INPUT_SHAPES[architecture.removesuffix("_tiny")]
    for gated in (False, True):
        network = build_network(architecture, gated=gated, seed=0,
                                input_shape=input_shape)
        units = sum(gate.units for gate in gates_of(network))
        assert units == (GATED_UNITS[architecture] if gated else 0)
        assert network.count_params() == (
            PLAIN_PARAMS[architecture] + 2 * units)


@pytest.mark.parametrize("entry", list_experiments())
def test_entry_trains_and_evaluates_one_step(entry):
    config = get_experiment(entry)
    # One PGD step: the attack's cost is not what this test is about; the
    # recipe's architecture at tiny size, for the same reason (its full
    # size is pinned by test_parameter_counts_are_pinned).
    config = config_lib.replace(config, **{
        "attack.num_steps": 1, "eval.attack.num_steps": 1,
        "model.architecture": f"{config.model.architecture}_tiny",
    })
    images, labels = tiny_batch(config.data.dataset)
    input_shape, num_classes = DATASET_INFO[config.data.dataset]
    keras.utils.set_random_seed(0)
    model = build_model(config, input_shape, num_classes, 50000)
    gated_units = sum(gate.units for gate in gates_of(model.network))
    expected = GATED_UNITS[config.model.architecture]
    assert gated_units == (
        expected if config.train.method in GATED_METHODS else 0)
    # Eager: tracing and optimising the graph would cost most of the time.
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


def test_the_budget_recipe_is_what_its_search_chose():
    """lenet5_caffe_mnist_anp_vs_budget = the search's start + the chosen
    trial (bench/results/budget_search.json) + the seed study's
    refinement, so the README's main command runs what was validated; its
    _robust variant the same with the trial marked robust. Each is also
    exactly what its seed study ran (the chosen trial with the report's
    overrides)."""
    import json
    from pathlib import Path

    from models.lenet5_caffe import BASE_KEEPS_RATE
    from models.lenet5_caffe import BUDGET_SEEDS_REFINEMENT
    from models.lenet5_caffe import BUDGET_SEEDS_REPORT
    from models.lenet5_caffe import BUDGET_SEEDS_ROBUST_REPORT

    root = Path(__file__).resolve().parents[1]
    search = json.loads(
        (root / "bench" / "results" / "budget_search.json").read_text())
    assert search["rule_met"], "the recipe breaks its search's rule"
    start = search["start"]

    def config(trial, extra):
        chosen = search["anp_vs_trials"][trial]["overrides"]
        return config_lib.replace(get_experiment(start["entry"]), **{
            **start["overrides"], **chosen, **extra})

    for recipe, trial, refinement, report in (
            (search["recipe"], search["anp_vs_chosen"],
             BUDGET_SEEDS_REFINEMENT, BUDGET_SEEDS_REPORT),
            (search["robust_recipe"], search["robust_chosen"],
             BASE_KEEPS_RATE, BUDGET_SEEDS_ROBUST_REPORT)):
        assert get_experiment(recipe) == config(trial, refinement), recipe
        seeds = json.loads((root / f"{report}.json").read_text())
        assert seeds["trials"]["anp_vs"].startswith(search["anp_vs_chosen"])
        assert get_experiment(recipe) == config(
            search["anp_vs_chosen"], seeds["anp_vs_overrides"]), report


def test_the_fashion_budget_recipe_is_what_its_search_chose():
    """lenet5_caffe_fashion_mnist_anp_vs_budget = its search's start (the
    MNIST budget recipe at eps 0.1, FASHION_BUDGET_START) + the chosen
    trial (bench/results/fashion_budget_search.json)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    search = json.loads((root / "bench" / "results"
                         / "fashion_budget_search.json").read_text())
    chosen = search["anp_vs_trials"][search["anp_vs_chosen"]]["overrides"]
    recipe = get_experiment(search["recipe"])
    assert recipe == config_lib.replace(
        get_experiment(search["start"]["entry"]),
        **{**search["start"]["overrides"], **chosen})
    assert recipe.data.dataset == "fashion_mnist"
    assert recipe.attack.epsilon == 0.1
