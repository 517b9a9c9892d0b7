"""VGG-16 for CIFAR, gated as in ANP-VS, and its CIFAR-10/100 recipes."""

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

# Output channels of the 13 convolutions; "M" is a 2x2 max-pooling.
VGG16_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                  512, 512, 512, "M", 512, 512, 512, "M")
# A VGG with the same kinds of layers (both dropout rates, five poolings
# down to 1x1 at 32 px) and ~6k parameters, for tests that only need
# "a VGG" (like timm's test_* models).
TINY = {
    "channels": (4, 4, "M", 8, 8, "M", 8, "M", 16, "M", 16, "M"),
    "hidden_units": 16,
}


def _conv_dropout(index, channels):
    """The common CIFAR VGG's dropout after conv `index` (0-based), or 0.

    0.3 after the first convolution, 0.4 after every later one that is not
    followed by max-pooling.
    """
    if channels[index + 1] == "M":
        return 0.0
    return 0.3 if index == 0 else 0.4


@register_model("vgg16")
def vgg16(
    num_classes=10,
    input_shape=(32, 32, 3),
    gated=True,
    gate_concentration1_init=None,
    gate_concentration0_init=0.5413,
    seed=None,
    channels=VGG16_CHANNELS,
    hidden_units=512,
):
    """13 conv3x3 SAME + BN + ReLU, dense 512 + BN + ReLU, dense classes.

    Gates (5248 units): each conv output, before its batch-norm; the 512
    flattened features (input of dense-512); the 512 hidden units (input of
    the classifier) (SPEC). `gate_concentration1_init`, when given, replaces
    the paper's per-layer initialisation on every gate. The base (ungated)
    network uses dropout 0.3/0.4/0.5 like the common CIFAR VGG; the gated
    one has none (SPEC). `channels` (conv widths and "M" poolings) and
    `hidden_units` resize it; the defaults are VGG-16.
    """
    conv_gate_init, dense_gate_init = gate_inits(gate_concentration1_init)
    gate = GatePlacer(gated, dense_gate_init, gate_concentration0_init, seed)

    def dropout(x, rate, name):
        return layers.Dropout(rate, seed=seed, name=name)(x) \
            if rate and not gated else x

    inputs = keras.Input(shape=input_shape, name="images")
    x = standardise(inputs)
    features = {}
    conv = pool = 0
    for index, width in enumerate(channels):
        if width == "M":
            pool += 1
            x = layers.MaxPooling2D(2, name=f"pool{pool}")(x)
            continue
        conv += 1
        x = layers.Conv2D(width, 3, padding="same", name=f"conv{conv}")(x)
        x = gate(x, f"conv{conv}_gate", conv_gate_init)
        x = layers.BatchNormalization(name=f"conv{conv}_bn")(x)
        features[f"conv{conv}"] = x = layers.ReLU(name=f"conv{conv}_relu")(x)
        x = dropout(x, _conv_dropout(index, channels),
                    f"conv{conv}_dropout")
    x = layers.Flatten(name="flatten")(x)
    features["flatten"] = x = gate(x, "flatten_gate")
    x = dropout(x, 0.5, "flatten_dropout")
    x = layers.Dense(hidden_units, name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    x = layers.ReLU(name="fc1_relu")(x)
    features["fc1"] = x = gate(x, "fc1_gate")
    x = dropout(x, 0.5, "fc1_dropout")
    logits = layers.Dense(num_classes, name="fc2")(x)
    name = "vgg16_gated" if gated else "vgg16"
    return keras.Model(inputs, network_outputs(logits, features), name=name)


register_model("vgg16_tiny")(functools.partial(vgg16, **TINY))


for _dataset in CIFAR_LOSS:
    for _method in METHODS:
        register_experiment(f"vgg16_{_dataset}_{_method}")(
            lambda d=_dataset, m=_method: cifar_recipe("vgg16", d, m)
        )
