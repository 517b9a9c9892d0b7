"""Name -> builder and name -> recipe registries of the zoo.

The registry knows nothing of the zoo: importing the zoo (`models` in a
checkout, `anpvs_tf.zoo` when installed) registers its entries, as the
scripts and tests do once at start-up.
"""

from anpvs_tf.errors import ConfigError

_MODELS = {}
_EXPERIMENTS = {}


def _register(table, kind, name, value):
    if name in table:
        raise KeyError(f"{kind} '{name}' is already registered")
    table[name] = value


def register_model(name):
    """Decorator registering an architecture builder under `name`."""

    def decorator(builder):
        _register(_MODELS, "model", name, builder)
        return builder

    return decorator


def register_experiment(name):
    """Decorator registering a zero-argument recipe factory under `name`."""

    def decorator(factory):
        _register(_EXPERIMENTS, "experiment", name, factory)
        return factory

    return decorator


def _lookup(table, kind, name):
    if name not in table:
        known = ", ".join(sorted(table)) or (
            "none (import the zoo first: `import models` in a checkout, "
            "`import anpvs_tf.zoo` when installed)")
        raise ConfigError(f"unknown {kind} '{name}'; known: {known}")
    return table[name]


def build_network(name, **kwargs):
    """Builds the functional network of architecture `name`."""
    return _lookup(_MODELS, "model", name)(**kwargs)


def get_experiment(name):
    """Returns the recipe (an ExperimentConfig) registered as `name`."""
    return _lookup(_EXPERIMENTS, "model", name)()


def list_models():
    return sorted(_MODELS)


def list_experiments():
    return sorted(_EXPERIMENTS)
