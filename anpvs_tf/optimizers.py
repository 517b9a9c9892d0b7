"""The two Adam optimizers of ANP-VS and their step-decay schedule."""

import keras


def step_decay(learning_rate, total_steps, decay_fractions):
    """x0.1 at each fraction of training (paper: 50% and 70%); no
    fractions: a constant learning rate."""
    if not decay_fractions:
        return learning_rate
    boundaries = [max(1, int(f * total_steps)) for f in decay_fractions]
    values = [learning_rate * 0.1**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries, values
    )


def make_optimizers(train_config, total_steps):
    """Returns (weight_optimizer, gate_optimizer) for `total_steps` steps."""

    def adam(learning_rate, name):
        schedule = step_decay(
            learning_rate, total_steps, train_config.decay_fractions
        )
        return keras.optimizers.Adam(schedule, name=name)

    return (
        adam(train_config.weight_learning_rate, "weight_optimizer"),
        adam(train_config.gate_learning_rate, "gate_optimizer"),
    )
