"""Pre-activation ResNet-18 for CIFAR, gated per output channel.

The backbone most adversarial-training work on CIFAR reports (Madry-style
AT, TRADES, "Overfitting in adversarially robust deep learning"): four
stages of two basic blocks, 64-128-256-512 channels. It is not in the
ANP-VS paper; its recipes reuse the paper's CIFAR hyper-parameters.
"""

import functools

import keras
from keras import layers

from anpvs_tf.methods import METHODS
from anpvs_tf.layers import GatePlacer
from anpvs_tf.layers import network_outputs
from anpvs_tf.registry import register_experiment
from anpvs_tf.registry import register_model

from .cifar import CIFAR_LOSS
from .cifar import cifar_recipe
from .cifar import gate_inits
from .cifar import standardise

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
# Two stages of one block: an identity and a strided projection shortcut,
# as in the full network, with ~5k parameters, for tests that only need
# "a ResNet" (like timm's test_* models).
TINY = {"stage_channels": (8, 16), "blocks_per_stage": 1}


def _conv(x, channels, kernel, stride, name):
    return layers.Conv2D(channels, kernel, strides=stride, padding="same",
                         use_bias=False, name=name)(x)


@register_model("resnet18")
def resnet18(
    num_classes=10,
    input_shape=(32, 32, 3),
    gated=True,
    gate_concentration1_init=None,
    gate_concentration0_init=0.5413,
    seed=None,
    stage_channels=STAGE_CHANNELS,
    blocks_per_stage=BLOCKS_PER_STAGE,
):
    """PreAct ResNet-18: BN-ReLU before each conv, identity shortcuts.

    A gate sits on every convolution's output channels (the shortcut's 1x1
    convolutions included), before the batch-norm or the addition that
    follows, and one on the 512 pooled features before the classifier:
    4,800 conv gates + 512. Conv gates start nearly open (a_raw = 2, as the
    paper's VGG conv gates), the dense one at -1. `stage_channels` (the
    stem has the first stage's width; every later stage halves the
    resolution) and `blocks_per_stage` resize it; the defaults are
    ResNet-18.
    """
    conv_gate_init, dense_gate_init = gate_inits(gate_concentration1_init)
    gate = GatePlacer(gated, conv_gate_init, gate_concentration0_init, seed)
    inputs = keras.Input(shape=input_shape, name="images")
    x = standardise(inputs)
    x = gate(_conv(x, stage_channels[0], 3, 1, "stem"), "stem_gate")
    features = {}
    for stage, channels in enumerate(stage_channels, start=1):
        for block in range(1, blocks_per_stage + 1):
            name = f"stage{stage}_block{block}"
            stride = 2 if block == 1 and stage > 1 else 1
            out = layers.BatchNormalization(name=f"{name}_bn1")(x)
            out = layers.ReLU(name=f"{name}_relu1")(out)
            if stride != 1 or x.shape[-1] != channels:
                shortcut = _conv(out, channels, 1, stride,
                                 f"{name}_shortcut")
                shortcut = gate(shortcut, f"{name}_shortcut_gate")
            else:
                shortcut = x
            out = _conv(out, channels, 3, stride, f"{name}_conv1")
            out = gate(out, f"{name}_conv1_gate")
            out = layers.BatchNormalization(name=f"{name}_bn2")(out)
            out = features[f"{name}_relu2"] = layers.ReLU(
                name=f"{name}_relu2")(out)
            out = _conv(out, channels, 3, 1, f"{name}_conv2")
            out = gate(out, f"{name}_conv2_gate")
            x = features[name] = layers.Add(name=f"{name}_add")(
                [out, shortcut])
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = features["pool"] = gate(x, "pool_gate", dense_gate_init)
    logits = layers.Dense(num_classes, name="classifier")(x)
    name = "resnet18_gated" if gated else "resnet18"
    return keras.Model(inputs, network_outputs(logits, features), name=name)


register_model("resnet18_tiny")(functools.partial(resnet18, **TINY))


for _dataset in CIFAR_LOSS:  # the paper's VGG values of beta and lambda
    for _method in METHODS:
        register_experiment(f"resnet18_{_dataset}_{_method}")(
            lambda d=_dataset, m=_method: cifar_recipe("resnet18", d, m)
        )
