"""VGG-16 for CIFAR, gated as in ANP-VS, and its CIFAR-10/100 recipes."""

import dataclasses

import keras
from keras import layers

from anpvs_tf.config import METHODS
from anpvs_tf.config import AttackConfig
from anpvs_tf.config import DataConfig
from anpvs_tf.config import EvalConfig
from anpvs_tf.config import ExperimentConfig
from anpvs_tf.config import LossConfig
from anpvs_tf.config import TrainConfig
from anpvs_tf.layers import GatePlacer
from anpvs_tf.layers import network_outputs
from anpvs_tf.registry import register_experiment
from anpvs_tf.registry import register_model

# Output channels of the 13 convolutions; "M" is a 2x2 max-pooling.
VGG16_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                  512, 512, 512, "M", 512, 512, 512, "M")
# Per-channel standardisation inside the model (attacks stay in [0, 1]
# pixel space, SPEC). CIFAR-10's statistics; CIFAR-100's differ by < 0.02,
# and any fixed affine map only conditions the optimisation.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# The paper's raw gate initialisation: E[pi] ~ 0.9 on conv gates
# (a_raw = 2), ~0.24 on the two dense gates (a_raw = -1).
CONV_GATE_INIT = 2.0
DENSE_GATE_INIT = -1.0
# beta (KL weight) and lambda (VS weight) per dataset (SPEC).
CIFAR_LOSS = {"cifar10": (2.0, 1e-4), "cifar100": (1.0, 0.1)}


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
):
    """13 conv3x3 SAME + BN + ReLU, dense 512 + BN + ReLU, dense classes.

    Gates (5248 units): each conv output, before its batch-norm; the 512
    flattened features (input of dense-512); the 512 hidden units (input of
    the classifier) (SPEC). `gate_concentration1_init`, when given, replaces
    the paper's per-layer initialisation on every gate. The base (ungated)
    network uses dropout 0.3/0.4/0.5 like the common CIFAR VGG; the gated
    one has none (SPEC).
    """
    gate = GatePlacer(
        gated,
        DENSE_GATE_INIT if gate_concentration1_init is None
        else gate_concentration1_init,
        gate_concentration0_init,
        seed,
    )
    conv_gate_init = (
        CONV_GATE_INIT if gate_concentration1_init is None
        else gate_concentration1_init
    )

    def dropout(x, rate, name):
        return layers.Dropout(rate, seed=seed, name=name)(x) \
            if rate and not gated else x

    inputs = keras.Input(shape=input_shape, name="images")
    x = layers.Rescaling(
        scale=[1.0 / s for s in CIFAR_STD],
        offset=[-m / s for m, s in zip(CIFAR_MEAN, CIFAR_STD, strict=True)],
        name="standardise",
    )(inputs)
    features = {}
    conv = pool = 0
    for index, channels in enumerate(VGG16_CHANNELS):
        if channels == "M":
            pool += 1
            x = layers.MaxPooling2D(2, name=f"pool{pool}")(x)
            continue
        conv += 1
        x = layers.Conv2D(channels, 3, padding="same", name=f"conv{conv}")(x)
        x = gate(x, f"conv{conv}_gate", conv_gate_init)
        x = layers.BatchNormalization(name=f"conv{conv}_bn")(x)
        features[f"conv{conv}"] = x = layers.ReLU(name=f"conv{conv}_relu")(x)
        x = dropout(x, _conv_dropout(index, VGG16_CHANNELS),
                    f"conv{conv}_dropout")
    x = layers.Flatten(name="flatten")(x)
    features["flatten"] = x = gate(x, "flatten_gate")
    x = dropout(x, 0.5, "flatten_dropout")
    x = layers.Dense(512, name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    x = layers.ReLU(name="fc1_relu")(x)
    features["fc1"] = x = gate(x, "fc1_gate")
    x = dropout(x, 0.5, "fc1_dropout")
    logits = layers.Dense(num_classes, name="fc2")(x)
    name = "vgg16_gated" if gated else "vgg16"
    return keras.Model(inputs, network_outputs(logits, features), name=name)


def cifar_recipe(architecture, dataset, method):
    """The paper's CIFAR hyper-parameters (SPEC) for `architecture`.

    eps 8/255 with step 0.007 and 10 PGD steps for training; the KL is
    divided by the 50,000 training images; learning rates decay x0.1 at 50%
    and 80% of training (VGG). Epochs: 200, as for MNIST (the SPEC gives no
    CIFAR figure). Training images are padded, cropped and flipped.
    """
    attack = AttackConfig(epsilon=8 / 255, step_size=0.007, num_steps=10)
    kl_weight, vs_weight = CIFAR_LOSS[dataset]
    return ExperimentConfig(
        data=DataConfig(dataset=dataset, source="tfds", augment=True),
        model=dataclasses.replace(
            ExperimentConfig().model, architecture=architecture
        ),
        attack=attack,
        loss=LossConfig(
            kl_weight=kl_weight, kl_normalizer=50000, vs_weight=vs_weight
        ),
        train=TrainConfig(
            method=method, epochs=200, batch_size=64,
            decay_fractions=(0.5, 0.8),
        ),
        eval=EvalConfig(
            attack=dataclasses.replace(attack, num_steps=40), batch_size=200
        ),
    )


for _dataset in CIFAR_LOSS:
    for _method in METHODS:
        register_experiment(f"vgg16_{_dataset}_{_method}")(
            lambda d=_dataset, m=_method: cifar_recipe("vgg16", d, m)
        )
