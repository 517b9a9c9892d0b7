"""What the CIFAR networks of the zoo share: input standardisation, gate
initialisation, and the paper's CIFAR recipe."""

import dataclasses

from keras import layers

from anpvs_tf.config import AttackConfig
from anpvs_tf.config import DataConfig
from anpvs_tf.config import EvalConfig
from anpvs_tf.config import ExperimentConfig
from anpvs_tf.config import LossConfig
from anpvs_tf.config import TrainConfig

# Per-channel standardisation inside the model (attacks stay in [0, 1]
# pixel space, SPEC). CIFAR-10's statistics; CIFAR-100's differ by < 0.02,
# and any fixed affine map only conditions the optimisation.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# The paper's raw gate initialisation: E[pi] ~ 0.9 on conv gates
# (a_raw = 2), ~0.24 on the dense gates (a_raw = -1).
CONV_GATE_INIT = 2.0
DENSE_GATE_INIT = -1.0
# beta (KL weight) and lambda (VS weight) per dataset (SPEC).
CIFAR_LOSS = {"cifar10": (2.0, 1e-4), "cifar100": (1.0, 0.1)}


def standardise(images):
    """(x - mean) / std per channel, as the network's first layer."""
    return layers.Rescaling(
        scale=[1.0 / s for s in CIFAR_STD],
        offset=[-m / s for m, s in zip(CIFAR_MEAN, CIFAR_STD, strict=True)],
        name="standardise",
    )(images)


def gate_inits(gate_concentration1_init):
    """(conv, dense) raw gate initialisations: the paper's, or one given
    value for every gate."""
    if gate_concentration1_init is None:
        return CONV_GATE_INIT, DENSE_GATE_INIT
    return gate_concentration1_init, gate_concentration1_init


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

