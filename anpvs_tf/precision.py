"""Mixed precision: which layers compute in 16 bits, and loss scaling.

The convolutions and dense layers take the policy; the Beta-Bernoulli
gates always compute in float32 (their Kumaraswamy draws and logits need
the range: SPEC pitfall 1), and ANPVSModel casts the logits and features
to float32 before any loss, so the losses, the KL and the gradients'
accumulation stay float32.
"""

import contextlib

import keras


@contextlib.contextmanager
def dtype_policy(name):
    """Layers built inside take policy `name` ("none": float32).

    Keras reads the global policy when a layer is constructed; it is put
    back on exit so that building one mixed model changes nothing else in
    the process.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        "float32" if name in (None, "none") else name
    )
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def needs_loss_scaling(model):
    """float16 gradients underflow without it; bfloat16 has float32's
    exponent range and needs none."""
    return model.dtype_policy.name == "mixed_float16"


def loss_scaled(optimizer):
    """`optimizer` wrapped in Keras's dynamic loss scaling (once)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
