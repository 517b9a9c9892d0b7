"""TRADES: the regulariser, the training loss and the attack."""

import math

import keras
import numpy as np
import pytest

from anpvs_tf.model import ANPVSModel
from anpvs_tf.registry import build_network
from anpvs_tf.trades import trades_attack
from anpvs_tf.trades import trades_kl


def softmax(logits):
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


def test_trades_kl_matches_a_hand_computed_case():
    clean = [[1.0, 0.0], [0.0, 2.0]]
    adversarial = [[0.0, 0.0], [1.0, 1.0]]
    # q = (1/2, 1/2) in both rows, and p = (s, 1 - s) with s the logistic
    # of the logit gap: 1 in the first row, -2 in the second. Then
    # KL(p || q) = s log(2 s) + (1 - s) log(2 (1 - s)).
    def kl_to_uniform(gap):
        s = 1.0 / (1.0 + math.exp(-gap))
        return s * math.log(2 * s) + (1 - s) * math.log(2 * (1 - s))

    expected = (kl_to_uniform(1.0) + kl_to_uniform(-2.0)) / 2  # batch mean
    actual = float(trades_kl(np.array(clean, "float32"),
                             np.array(adversarial, "float32")))
    assert actual == pytest.approx(expected, rel=1e-5)
    # No divergence from itself.
    assert float(trades_kl(np.array(clean, "float32"),
                           np.array(clean, "float32"))) == pytest.approx(
        0.0, abs=1e-6)


def test_trades_training_loss_is_ce_plus_beta_kl(random_batch):
    images, labels = random_batch
    network = build_network("lenet5_caffe", gated=False, seed=0)
    model = ANPVSModel(network, method="trades", trades_weight=6.0,
                       l2_weight=0.0)
    # Logits of a few units (an untrained LeNet's are ~0.01), and an x_adv
    # far from x: a KL well above float32 noise.
    classifier = network.get_layer("fc2")
    classifier.kernel.assign(classifier.kernel * 100.0)
    x_adv = 1.0 - images
    loss, _, terms, _ = model._loss_terms(images, labels, x_adv)

    clean = keras.ops.convert_to_numpy(network(images)["logits"])
    adv = keras.ops.convert_to_numpy(network(x_adv)["logits"])
    log_p = clean - np.log(np.exp(clean).sum(-1, keepdims=True))
    log_q = adv - np.log(np.exp(adv).sum(-1, keepdims=True))
    ce = -log_p[np.arange(len(labels)), labels].mean()
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1).mean()
    assert float(terms["trades_loss"]) == pytest.approx(kl, rel=1e-4)
    assert float(loss) == pytest.approx(ce + 6.0 * kl, rel=1e-4)
    assert kl > 0.1  # the case is not trivial


def test_trades_attack_stays_in_the_ball_and_raises_the_kl(mnist_test_batch):
    images, _ = mnist_test_batch
    network = build_network("lenet5_caffe", gated=False, seed=0)

    def logits_fn(x):
        return network(x, training=False)["logits"]

    epsilon = 0.1
    x_adv = keras.ops.convert_to_numpy(trades_attack(
        logits_fn, images, epsilon=epsilon, step_size=0.02, num_steps=10,
        seed_generator=keras.random.SeedGenerator(0)))
    assert np.abs(x_adv - images).max() <= epsilon + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    clean = logits_fn(images)
    start = np.clip(images + 0.001, 0.0, 1.0)
    assert float(trades_kl(clean, logits_fn(x_adv))) > 10 * float(
        trades_kl(clean, logits_fn(start)))
