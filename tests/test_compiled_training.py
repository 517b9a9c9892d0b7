"""Speed hygiene: one trace of the train step, mixed precision in float32
where it matters, an input pipeline that prefetches."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import config as config_lib
from anpvs_tf import data
from anpvs_tf import training
from anpvs_tf.model import ANPVSModel
from anpvs_tf.registry import get_experiment
from anpvs_tf.assembly import build_model
from anpvs_tf.training import train
from tests.tiny_runs import run_config


def count_calls(monkeypatch, name):
    """Counts the Python executions of ANPVSModel.<name>: once per trace
    (per replica) when compiled, since the traced graph is what reruns."""
    calls = []
    real = getattr(ANPVSModel, name)

    def counted(self, batch):
        calls.append(1)
        return real(self, batch)

    monkeypatch.setattr(ANPVSModel, name, counted)
    return calls


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_train_step_is_traced_once_over_several_epochs(
    strategy, tmp_path, monkeypatch, two_cpu_strategy
):
    """Three epochs with per-epoch monitoring: the adversarial train step
    (PGD inside) is traced once, on every replica, and never again."""
    monkeypatch.setattr(
        training, "make_strategy",
        lambda name: two_cpu_strategy if name == "mirrored"
        else tf.distribute.get_strategy(),
    )
    traces = count_calls(monkeypatch, "train_step")
    config = run_config("lenet5_caffe_mnist_at", 3,
                        **{"train.strategy": strategy})
    train(config, tmp_path / "run", verbose=0)
    replicas = 2 if strategy == "mirrored" else 1
    assert len(traces) == replicas


def mixed_model(policy, method="anp_vs"):
    config = config_lib.replace(
        get_experiment(f"lenet5_caffe_mnist_{method}"),
        **{"train.mixed_precision": policy, "attack.num_steps": 2},
    )
    model = build_model(config, (28, 28, 1), 10, 5000)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2),
                  jit_compile=False)
    return model


def one_step(model, batch):
    images, labels = batch
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(
        len(labels)
    )
    return {k: v[-1] for k, v in model.fit(dataset, verbose=0)
            .history.items()}


def test_bfloat16_keeps_gates_kl_and_losses_in_float32(mnist_test_batch):
    model = mixed_model("mixed_bfloat16")
    # Building a mixed model leaves the process's policy as it was.
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.network.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.network.get_layer("fc1").compute_dtype == "bfloat16"
    for gate in model.gates:
        assert gate.compute_dtype == "float32"
        assert gate.kl_divergence().dtype == tf.float32
    for variable in model.network.weights:
        assert variable.dtype == "float32"  # master weights stay float32
    x, y = (tf.constant(t[:16]) for t in mnist_test_batch)
    _, _, terms, logits = model._loss_terms(x, y, model.craft(
        x, y, model.attack))
    for value in (*terms.values(), *logits.values()):
        assert value.dtype == tf.float32
    logs = one_step(model, (x, y))
    assert all(np.isfinite(v) for v in logs.values())
    assert model.optimizer.iterations.numpy() == 1


def test_float16_scales_both_losses(mnist_test_batch):
    """float16 gradients underflow without loss scaling: both optimizers
    are wrapped, and a step still moves the weights and the gates."""
    model = mixed_model("mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.gate_optimizer,
                      keras.optimizers.LossScaleOptimizer)
    gates_before = [v.numpy() for v in model.gate_variables]
    logs = one_step(model, [t[:16] for t in mnist_test_batch])
    assert all(np.isfinite(v) for v in logs.values())
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(gates_before, model.gate_variables))


def test_training_stream_is_a_seeded_permutation_per_epoch():
    """Every pass holds each example once, in an order fixed by the seed
    and the epoch, so a resumed run sees the batches an unbroken one does."""
    images = np.zeros((64, 28, 28, 1), np.float32)
    labels = np.arange(64, dtype=np.int64)

    def epochs(seed, initial_epoch=0, count=2):
        dataset, steps = data.train_dataset(
            images, labels, 16, seed=seed, initial_epoch=initial_epoch)
        batches = [b.numpy() for _, b in dataset.take(steps * count)]
        return [np.concatenate(batches[k * steps:(k + 1) * steps])
                for k in range(count)]

    first, second = epochs(seed=0)
    for order in (first, second):
        assert sorted(order) == list(range(64))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, labels)  # shuffled
    again = epochs(seed=0)
    np.testing.assert_array_equal(again[0], first)
    resumed = epochs(seed=0, initial_epoch=1, count=1)[0]
    np.testing.assert_array_equal(resumed, second)
    assert not np.array_equal(epochs(seed=1, count=1)[0], first)
    # Fixed sizes: tf.data's autotuning stalls training rounds
    # (bench/stalls.py).
    dataset, _ = data.train_dataset(images, labels, 16, seed=0)
    assert dataset.options().autotune.enabled is False
