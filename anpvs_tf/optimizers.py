"""The two Adam optimizers of ANP-VS and their step-decay schedule."""

import keras


def step_decay(learning_rate, total_steps, decay_fractions, later=None):
    """x0.1 at each fraction of training (paper: 50% and 70%); no
    fractions: a constant learning rate.

    later: (step, rate): from that step on, `rate` replaces
    `learning_rate`, the decays still applying (the weights' rate once the
    gates freeze).
    """
    decays = [max(1, int(f * total_steps)) for f in decay_fractions]
    # A boundary b gives the rate of the steps after it (step > b).
    switch = None if later is None else later[0] - 1
    boundaries = sorted(set(decays) | ({switch} if later else set()))
    if not boundaries:
        return learning_rate

    def rate_after(boundary):
        base = later[1] if later and switch <= boundary else learning_rate
        return base * 0.1 ** sum(d <= boundary for d in decays)

    values = [learning_rate] + [rate_after(b) for b in boundaries]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries, values
    )


def make_optimizers(train_config, total_steps):
    """Returns (weight_optimizer, gate_optimizer) for `total_steps` steps."""

    def adam(learning_rate, name, later=None):
        schedule = step_decay(
            learning_rate, total_steps, train_config.decay_fractions, later
        )
        return keras.optimizers.Adam(schedule, name=name)

    fine_tune = None
    if train_config.fine_tune_learning_rate is not None:
        # The gates freeze after gate_epochs of the run's epochs.
        fine_tune = (
            total_steps * train_config.gate_epochs // train_config.epochs,
            train_config.fine_tune_learning_rate,
        )
    return (
        adam(train_config.weight_learning_rate, "weight_optimizer",
             fine_tune),
        adam(train_config.gate_learning_rate, "gate_optimizer"),
    )
