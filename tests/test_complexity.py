"""Complexity counters against figures worked out by hand.

The paper's table reports FLOPs speed-up, memory % and unit sparsity; these
tests pin every layer's contribution with the arithmetic written out, so a
change of formula or of pruning propagation shows up as a number.
"""

import json

import keras
import numpy as np
import pytest

import models  # noqa: F401
from anpvs_tf.complexity import Complexity
from anpvs_tf.complexity import complexity_report
from anpvs_tf.complexity import count_complexity
from anpvs_tf.complexity import flops_kl_weights
from anpvs_tf.complexity import unit_flops
from anpvs_tf.gates import BetaBernoulliGate
from anpvs_tf.layers import gates_of
from anpvs_tf.pruning import compact_network
from anpvs_tf.registry import build_network

# === Full LeNet-5-Caffe (28x28x1 -> 24x24x20 -> 12x12x20 -> 8x8x50 ->
# 4x4x50 -> 800 -> 500 -> 10) ===
# conv1: c_out*h*w*(2*k*k*c_in - 1 + 2) = 20*24*24*(2*25*1 + 1) = 20*576*51
LENET_CONV1_FLOPS = 587_520
# conv1 memory: k*k*c_in*(h*w + c_out) = 25*1*(576 + 20)
LENET_CONV1_MEMORY = 14_900
# pool1: k*k per output element = 4*12*12*20
LENET_POOL1_FLOPS = 11_520
# conv2: 50*8*8*(2*25*20 + 1) = 50*64*1001
LENET_CONV2_FLOPS = 3_203_200
# conv2 memory: 25*20*(64 + 50) = 500*114
LENET_CONV2_MEMORY = 57_000
# pool2: 4*4*4*50
LENET_POOL2_FLOPS = 3_200
# fc1: (2*800 - 1)*500 + 500 (bias) + 500 (ReLU) = 799_500 + 1_000
LENET_FC1_FLOPS = 800_500
# fc1 memory: 800*500 + 500
LENET_FC1_MEMORY = 400_500
# fc2 (classifier, no ReLU): (2*500 - 1)*10 + 10 = 9_990 + 10
LENET_FC2_FLOPS = 10_000
# fc2 memory: 500*10 + 10
LENET_FC2_MEMORY = 5_010
LENET_FLOPS = 4_615_940
LENET_MEMORY = 477_410
# params: conv1 25*1*20 + 20 = 520; conv2 25*20*50 + 50 = 25_050;
# fc1 800*500 + 500 = 400_500; fc2 500*10 + 10 = 5_010.
LENET_PARAMS = 431_080
LENET_GATED_UNITS = 20 + 50 + 800 + 500

# === Pruned LeNet-5-Caffe (hand-chosen keep pattern) ===
# conv1 keeps 5 of 20 channels, conv2 keeps 10 of 50, the flatten gate keeps
# the 400 features of the first 8 of the 16 spatial positions (the top two
# rows of the 4x4 map), fc1 keeps 100 of 500 hidden units.
CONV1_KEPT = np.array([0, 3, 7, 12, 19])
CONV2_KEPT = np.arange(0, 50, 5)  # 0, 5, ..., 45: 10 channels
FLATTEN_KEPT = np.arange(400)  # positions 0..7, all 50 channels each
FC1_KEPT = np.arange(1, 500, 5)  # 100 units
# Effective fc1 inputs: 8 kept positions x 10 alive conv2 channels = 80; the
# other 320 features the flatten gate keeps belong to pruned channels.
PRUNED_FC1_INPUTS = 80
# conv1: 5*24*24*(2*25*1 + 1) = 5*576*51
PRUNED_CONV1_FLOPS = 146_880
# conv1 memory: 25*1*(576 + 5); params: 25*1*5 + 5 = 130
PRUNED_CONV1_MEMORY = 14_525
# pool1: 4*12*12*5
PRUNED_POOL1_FLOPS = 2_880
# conv2: 10*8*8*(2*25*5 + 1) = 10*64*251
PRUNED_CONV2_FLOPS = 160_640
# conv2 memory: 25*5*(64 + 10) = 125*74; params: 25*5*10 + 10 = 1_260
PRUNED_CONV2_MEMORY = 9_250
# pool2: 4*4*4*10
PRUNED_POOL2_FLOPS = 640
# fc1: (2*80 - 1)*100 + 100 + 100 = 15_900 + 200
PRUNED_FC1_FLOPS = 16_100
# fc1 memory and params: 80*100 + 100
PRUNED_FC1_MEMORY = 8_100
# fc2: (2*100 - 1)*10 + 10 = 1_990 + 10
PRUNED_FC2_FLOPS = 2_000
# fc2 memory and params: 100*10 + 10
PRUNED_FC2_MEMORY = 1_010
# 146_880 + 2_880 + 160_640 + 640 + 16_100 + 2_000
PRUNED_FLOPS = 329_140
# 14_525 + 9_250 + 8_100 + 1_010
PRUNED_MEMORY = 32_885
# 130 + 1_260 + 8_100 + 1_010
PRUNED_PARAMS = 10_500
# Gate-level active units: 5 + 10 + 400 + 100 (unit sparsity counts each
# gate's own mask, so the 320 dead-channel features still count as active).
PRUNED_ACTIVE_UNITS = 515


def _keep(units, kept):
    mask = np.zeros(units, dtype=bool)
    mask[kept] = True
    return mask


def _pruned_lenet_active():
    return {
        "conv1_gate": _keep(20, CONV1_KEPT),
        "conv2_gate": _keep(50, CONV2_KEPT),
        "flatten_gate": _keep(800, FLATTEN_KEPT),
        "fc1_gate": _keep(500, FC1_KEPT),
    }


@pytest.fixture
def gated_lenet():
    return build_network("lenet5_caffe", gated=True, seed=0)


def test_per_layer_figures_sum_to_totals():
    # Guards the hand arithmetic above against typos.
    assert LENET_FLOPS == (
        LENET_CONV1_FLOPS
        + LENET_POOL1_FLOPS
        + LENET_CONV2_FLOPS
        + LENET_POOL2_FLOPS
        + LENET_FC1_FLOPS
        + LENET_FC2_FLOPS
    )
    assert LENET_MEMORY == (
        LENET_CONV1_MEMORY
        + LENET_CONV2_MEMORY
        + LENET_FC1_MEMORY
        + LENET_FC2_MEMORY
    )
    assert PRUNED_FLOPS == (
        PRUNED_CONV1_FLOPS
        + PRUNED_POOL1_FLOPS
        + PRUNED_CONV2_FLOPS
        + PRUNED_POOL2_FLOPS
        + PRUNED_FC1_FLOPS
        + PRUNED_FC2_FLOPS
    )
    assert PRUNED_MEMORY == (
        PRUNED_CONV1_MEMORY
        + PRUNED_CONV2_MEMORY
        + PRUNED_FC1_MEMORY
        + PRUNED_FC2_MEMORY
    )
    assert PRUNED_PARAMS == 130 + 1_260 + PRUNED_FC1_MEMORY + PRUNED_FC2_MEMORY
    assert PRUNED_FC1_INPUTS == len(FLATTEN_KEPT) // 50 * len(CONV2_KEPT)


def test_full_ungated_lenet():
    network = build_network("lenet5_caffe", gated=False)
    assert count_complexity(network) == Complexity(
        flops=LENET_FLOPS, memory=LENET_MEMORY, params=LENET_PARAMS
    )
    assert network.count_params() == LENET_PARAMS
    report = complexity_report(network)
    assert report["gated_units"] == 0
    assert report["active_units"] == 0
    assert report["active_units_per_gate"] == {}
    assert report["unit_sparsity"] == 0.0
    assert report["flops"] == report["flops_full"] == LENET_FLOPS
    assert report["memory"] == report["memory_full"] == LENET_MEMORY
    assert report["params"] == report["params_full"] == LENET_PARAMS
    assert report["flops_speedup"] == 1.0
    assert report["memory_pct"] == 100.0
    assert report["weight_sparsity"] == 0.0


def test_gated_lenet_at_init_is_full(gated_lenet):
    # E[pi] ~ 0.24 > 1e-3 at the paper's initialisation: nothing pruned yet.
    full = Complexity(
        flops=LENET_FLOPS, memory=LENET_MEMORY, params=LENET_PARAMS
    )
    assert count_complexity(gated_lenet) == full
    assert count_complexity(gated_lenet, active="all") == full
    report = complexity_report(gated_lenet)
    assert report["gated_units"] == LENET_GATED_UNITS
    assert report["active_units"] == LENET_GATED_UNITS
    assert report["active_units_per_gate"] == {
        "conv1_gate": 20,
        "conv2_gate": 50,
        "flatten_gate": 800,
        "fc1_gate": 500,
    }
    assert report["unit_sparsity"] == 0.0
    assert report["flops_speedup"] == 1.0
    assert report["memory_pct"] == 100.0
    assert report["params_full"] == LENET_PARAMS
    assert report["weight_sparsity"] == 0.0


def test_unit_flops_counts_what_one_unit_feeds(gated_lenet):
    # A conv1 channel: its own 24*24*51 in conv1, its 4*12*12 pool outputs
    # and 2*25 multiply-adds of each of conv2's 50*8*8 outputs.
    conv1 = 24 * 24 * 51 + 4 * 12 * 12 + 50 * 8 * 8 * 2 * 25
    # A conv2 channel: 8*8*1001 in conv2, 4*4*4 in pool2 and its 16
    # flattened features, 2 FLOPs each in each of fc1's 500 units.
    conv2 = 8 * 8 * 1001 + 4 * 4 * 4 + 16 * 2 * 500
    # A flattened feature: 2 FLOPs in each fc1 unit. An fc1 unit: its
    # 2*800 - 1 multiply-adds, bias and ReLU, and 2 FLOPs in each logit.
    assert unit_flops(gated_lenet) == {
        "conv1_gate": conv1, "conv2_gate": conv2,
        "flatten_gate": 2 * 500, "fc1_gate": 2 * 800 + 1 + 2 * 10,
    }


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0, -0.5])
def test_flops_kl_weights_follow_cost_and_average_one_per_unit(
        gated_lenet, exponent):
    weights = flops_kl_weights(gated_lenet, exponent)
    costs = unit_flops(gated_lenet)
    units = {"conv1_gate": 20, "conv2_gate": 50, "flatten_gate": 800,
             "fc1_gate": 500}
    # The total pressure of beta is unchanged: a unit-weighted mean of 1.
    mean = sum(weights[g] * n for g, n in units.items()) / sum(
        units.values())
    np.testing.assert_allclose(mean, 1.0, rtol=1e-12)
    # Ratios between gates are the cost ratios to the exponent.
    np.testing.assert_allclose(
        weights["conv1_gate"] / weights["fc1_gate"],
        (costs["conv1_gate"] / costs["fc1_gate"]) ** exponent, rtol=1e-12)
    order = [weights[g] for g in ("conv1_gate", "conv2_gate", "fc1_gate",
                                  "flatten_gate")]
    if exponent == 0.0:
        assert set(weights.values()) == {1.0}
    elif exponent > 0:  # the costly units pay the most
        assert order == sorted(order, reverse=True)
    else:  # the costly units are spared
        assert order == sorted(order)


def test_pruned_lenet_from_active_dict(gated_lenet):
    active = _pruned_lenet_active()
    assert count_complexity(gated_lenet, active=active) == Complexity(
        flops=PRUNED_FLOPS, memory=PRUNED_MEMORY, params=PRUNED_PARAMS
    )
    # "all" ignores the gates whatever they say.
    assert count_complexity(gated_lenet, active="all").flops == LENET_FLOPS
    report = complexity_report(gated_lenet, active=active)
    assert report["active_units_per_gate"] == {
        "conv1_gate": 5,
        "conv2_gate": 10,
        "flatten_gate": 400,
        "fc1_gate": 100,
    }
    assert report["active_units"] == PRUNED_ACTIVE_UNITS
    # 100*(1 - 515/1370) = 62.41 %
    assert report["unit_sparsity"] == pytest.approx(100.0 * (1.0 - 515 / 1370))
    assert report["unit_sparsity"] == pytest.approx(62.408759, abs=1e-5)
    # 4_615_940 / 329_140 = 14.02 x
    assert report["flops_speedup"] == pytest.approx(14.024245, abs=1e-5)
    # 100 * 32_885 / 477_410 = 6.89 %
    assert report["memory_pct"] == pytest.approx(6.888209, abs=1e-5)
    # 100*(1 - 10_500/431_080) = 97.56 %
    assert report["weight_sparsity"] == pytest.approx(97.564257, abs=1e-5)
    assert report["flops"] == PRUNED_FLOPS
    assert report["flops_full"] == LENET_FLOPS
    assert report["memory"] == PRUNED_MEMORY
    assert report["memory_full"] == LENET_MEMORY
    assert report["params"] == PRUNED_PARAMS
    assert report["params_full"] == LENET_PARAMS


def test_flatten_gate_pruning_a_whole_channel_removes_it_from_conv2(
    gated_lenet
):
    # Dropping every flattened feature of conv2 channel 0 leaves that
    # channel without a consumer: the compact network does not compute it,
    # so conv2 and pool2 lose it and fc1 loses 16 inputs.
    flat = np.ones(800, dtype=bool)
    flat[0::50] = False
    counts = count_complexity(gated_lenet, active={"flatten_gate": flat})
    # conv2: 49*64*1001 instead of 50*64*1001; pool2: 4*16*49 instead of
    # 4*16*50; fc1: (2*784 - 1)*500 + 1_000 instead of (2*800 - 1)*500 +
    # 1_000.
    assert counts.flops == (
        LENET_FLOPS - 64 * 1_001 - 4 * 16 - 16 * 2 * 500
    )
    # conv2 memory 25*20*(64 + 49); fc1 memory 784*500 + 500.
    assert counts.memory == LENET_MEMORY - 25 * 20 - 16 * 500
    # conv2 params 25*20*49 + 49; fc1 params 784*500 + 500.
    assert counts.params == LENET_PARAMS - (25 * 20 + 1) - 16 * 500
    # The unit sparsity still counts the flatten gate's own mask.
    assert complexity_report(
        gated_lenet, active={"flatten_gate": flat})["active_units"] == (
        LENET_GATED_UNITS - 16)
    # What is counted is what compaction builds.
    gate = gated_lenet.get_layer("flatten_gate")
    gate.concentration1_raw.assign(
        np.where(flat, 2.0, -10.0).astype("float32"))
    compact = compact_network(gated_lenet)
    assert compact.get_layer("conv2").filters == 49
    assert compact.count_params() == counts.params


def test_pruned_lenet_from_gate_variables(gated_lenet):
    # softplus(-10) ~ 4.5e-5, so E[pi] = 1/(1 + 1/a) ~ 4.5e-5 <= 1e-3.
    for gate in gates_of(gated_lenet):
        keep = _pruned_lenet_active()[gate.name]
        raw = np.where(keep, -1.0, -10.0).astype("float32")
        gate.concentration1_raw.assign(raw)
    report = complexity_report(gated_lenet)
    assert report == complexity_report(
        gated_lenet, active=_pruned_lenet_active()
    )
    assert report["flops"] == PRUNED_FLOPS
    assert report["memory"] == PRUNED_MEMORY
    assert report["params"] == PRUNED_PARAMS
    assert report["active_units"] == PRUNED_ACTIVE_UNITS
    assert count_complexity(gated_lenet) == Complexity(
        flops=PRUNED_FLOPS, memory=PRUNED_MEMORY, params=PRUNED_PARAMS
    )
    # The full counts do not depend on the gates.
    assert count_complexity(gated_lenet, active="all").params == LENET_PARAMS


def test_report_is_json_serialisable(gated_lenet):
    report = complexity_report(gated_lenet, active=_pruned_lenet_active())
    assert json.loads(json.dumps(report)) == report
    for key, value in report.items():
        if key == "active_units_per_gate":
            assert all(type(v) is int for v in value.values())
        else:
            assert type(value) in (int, float), key


def _small_bn_network(gated):
    """conv3x3x4 - gate - BN - ReLU - pool - flatten - fc6 - BN - ReLU -
    gate - fc3 on 6x6x2 inputs: the VGG pattern of BN after gated layers."""
    inputs = keras.Input(shape=(6, 6, 2), name="images")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    if gated:
        x = BetaBernoulliGate(name="conv_gate")(x)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, name="fc1")(x)
    x = keras.layers.BatchNormalization(name="fc1_bn")(x)
    x = keras.layers.ReLU(name="fc1_relu")(x)
    if gated:
        x = BetaBernoulliGate(name="fc1_gate")(x)
    logits = keras.layers.Dense(3, name="fc2")(x)
    return keras.Model(inputs, logits)


# === Small BN network (6x6x2 -> 4x4x4 -> 2x2x4 -> 16 -> 6 -> 3) ===
# params: conv 9*2*4 + 4 = 76; conv_bn 4*4 = 16; fc1 16*6 + 6 = 102;
# fc1_bn 4*6 = 24; fc2 6*3 + 3 = 21.
SMALL_PARAMS = 76 + 16 + 102 + 24 + 21  # 239
# FLOPs: conv 4*16*(2*9*2 + 1) = 64*37 = 2_368; pool 4*(2*2*4) = 64;
# fc1 (2*16 - 1)*6 + 6 + 6 = 198; fc2 (2*6 - 1)*3 + 3 = 36.
SMALL_FLOPS = 2_368 + 64 + 198 + 36  # 2_666
# memory: conv 9*2*(16 + 4) = 360; fc1 16*6 + 6 = 102; fc2 6*3 + 3 = 21.
SMALL_MEMORY = 360 + 102 + 21  # 483
# Pruned: conv keeps channels 1 and 3, the fc1 gate keeps 3 of 6 units.
# params: conv 9*2*2 + 2 = 38; conv_bn 4*2 = 8; fc1 in = 4 positions * 2
# channels = 8, 8*3 + 3 = 27; fc1_bn 4*3 = 12 (the gate after BN and ReLU
# still prunes the BN channels); fc2 3*3 + 3 = 12.
SMALL_PRUNED_PARAMS = 38 + 8 + 27 + 12 + 12  # 97
# FLOPs: conv 2*16*37 = 1_184; pool 4*(2*2*2) = 32; fc1 (2*8 - 1)*3 + 3 + 3
# = 51; fc2 (2*3 - 1)*3 + 3 = 18.
SMALL_PRUNED_FLOPS = 1_184 + 32 + 51 + 18  # 1_285
# memory: conv 9*2*(16 + 2) = 324; fc1 8*3 + 3 = 27; fc2 3*3 + 3 = 12.
SMALL_PRUNED_MEMORY = 324 + 27 + 12  # 363


def test_batch_norm_network_full():
    gated = _small_bn_network(gated=True)
    plain = _small_bn_network(gated=False)
    expected = Complexity(
        flops=SMALL_FLOPS, memory=SMALL_MEMORY, params=SMALL_PARAMS
    )
    assert plain.count_params() == SMALL_PARAMS
    assert count_complexity(plain) == expected
    assert count_complexity(gated) == expected
    report = complexity_report(gated)
    # Gate parameters are not part of the (pruned or full) network.
    assert report["params_full"] == plain.count_params()
    assert report["params_full"] < gated.count_params()
    assert report["gated_units"] == 4 + 6


def test_batch_norm_network_pruned():
    network = _small_bn_network(gated=True)
    active = {
        "conv_gate": _keep(4, [1, 3]),
        "fc1_gate": _keep(6, [0, 2, 5]),
    }
    assert count_complexity(network, active=active) == Complexity(
        flops=SMALL_PRUNED_FLOPS,
        memory=SMALL_PRUNED_MEMORY,
        params=SMALL_PRUNED_PARAMS,
    )
    report = complexity_report(network, active=active)
    assert report["active_units"] == 5
    assert report["unit_sparsity"] == pytest.approx(50.0)
    assert report["params_full"] == SMALL_PARAMS
    # 100*(1 - 97/239)
    assert report["weight_sparsity"] == pytest.approx(100.0 * (1.0 - 97 / 239))
    assert report["flops_speedup"] == pytest.approx(2_666 / 1_285)
    assert report["memory_pct"] == pytest.approx(100.0 * 363 / 483)


def test_partial_active_dict_reads_other_gates(gated_lenet):
    # Gates not named keep their own (all-active at init) state.
    active = {"fc1_gate": _keep(500, FC1_KEPT)}
    counts = count_complexity(gated_lenet, active=active)
    # fc1: (2*800 - 1)*100 + 200; fc2: (2*100 - 1)*10 + 10
    fc_flops = (2 * 800 - 1) * 100 + 200 + 2_000
    assert counts.flops == (
        LENET_FLOPS - LENET_FC1_FLOPS - LENET_FC2_FLOPS + fc_flops
    )


@pytest.mark.parametrize(
    "active, message",
    [
        ({"nope": np.ones(3, dtype=bool)}, "names no gate"),
        ({"fc1_gate": np.ones(3, dtype=bool)}, "must have shape"),
        ("some", "must be None, 'all' or a dict"),
    ],
)
def test_bad_active_raises(gated_lenet, active, message):
    with pytest.raises(ValueError, match=message):
        count_complexity(gated_lenet, active=active)


def test_residual_addition_counts_channels_alive_in_any_branch():
    inputs = keras.Input(shape=(8, 8, 1))
    branch = keras.layers.Conv2D(4, 3, padding="same", name="branch")(inputs)
    branch = BetaBernoulliGate(name="branch_gate")(branch)
    shortcut = keras.layers.Conv2D(4, 1, name="shortcut")(inputs)
    added = keras.layers.Add(name="add")([branch, shortcut])
    logits = keras.layers.Dense(2, name="fc")(
        keras.layers.Flatten()(added))
    network = keras.Model(inputs, logits)
    keep = np.array([True, False, True, True])
    size = count_complexity(network, active={"branch_gate": keep})
    # branch: 3 of 4 filters; shortcut: 4; the sum has all 4 channels.
    assert size.params == (9 * 3 + 3) + (4 + 4) + (256 * 2 + 2)
    assert size.flops == (
        3 * 64 * (2 * 9 - 1 + 2)      # branch conv
        + 4 * 64 * (2 * 1 - 1 + 2)    # shortcut conv
        + 4 * 64                      # the addition
        + (2 * 256 - 1) * 2 + 2       # classifier (no ReLU)
    )


def test_residual_sum_keeps_the_union_and_branches_their_own():
    # Both branches are gated before the sum: the sum keeps channels 0, 1
    # and 3 (kept by either), each branch conv only its own gate's two.
    inputs = keras.Input(shape=(4, 4, 1))
    branch = keras.layers.Conv2D(4, 3, padding="same", name="branch")(inputs)
    branch = BetaBernoulliGate(name="branch_gate")(branch)
    shortcut = keras.layers.Conv2D(4, 1, name="shortcut")(inputs)
    shortcut = BetaBernoulliGate(name="shortcut_gate")(shortcut)
    added = keras.layers.Add(name="add")([branch, shortcut])
    mixed = keras.layers.Conv2D(2, 1, name="mixed")(added)
    logits = keras.layers.Dense(2, name="fc")(
        keras.layers.Flatten()(mixed))
    network = keras.Model(inputs, logits)
    active = {
        "branch_gate": np.array([True, True, False, False]),
        "shortcut_gate": np.array([False, True, False, True]),
    }
    size = count_complexity(network, active=active)
    # branch 9*1*2 + 2; shortcut 1*1*2 + 2; mixed 1*3*2 + 2; fc 32*2 + 2
    assert size.params == 20 + 4 + 8 + 66
    assert size.flops == (
        2 * 16 * (2 * 9 - 1 + 2)      # branch conv
        + 2 * 16 * (2 * 1 - 1 + 2)    # shortcut conv
        + 3 * 16                      # the addition, 3 channels
        + 2 * 16 * (2 * 3 - 1 + 2)    # mixed conv on 3 channels
        + (2 * 32 - 1) * 2 + 2        # classifier (no ReLU)
    )
    # memory: 9*1*(16 + 2) + 1*(16 + 2) + 1*3*(16 + 2) + 32*2 + 2
    assert size.memory == 162 + 18 + 54 + 66
    for name, keep in active.items():
        network.get_layer(name).concentration1_raw.assign(
            np.where(keep, 2.0, -10.0).astype("float32"))
    assert compact_network(network).count_params() == size.params


def test_concatenation_is_refused():
    inputs = keras.Input(shape=(4,))
    left = keras.layers.Dense(3, name="left")(inputs)
    right = keras.layers.Dense(3, name="right")(inputs)
    network = keras.Model(
        inputs, keras.layers.Concatenate(name="concat")([left, right]))
    with pytest.raises(ValueError, match="Cannot count or compact layer "
                       "'concat'"):
        count_complexity(network)
