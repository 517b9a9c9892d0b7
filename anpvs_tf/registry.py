"""Name -> builder and name -> recipe registries of the zoo."""

import importlib

from anpvs_tf.config import ConfigError

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


def _ensure_zoo_imported():
    """Imports the zoo once: `anpvs_tf.zoo` when installed, else the
    checkout's `models` package (scripts import it themselves)."""
    for module in ("anpvs_tf.zoo", "models"):
        if _MODELS:
            return
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            continue


def _lookup(table, kind, name):
    _ensure_zoo_imported()
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(f"unknown {kind} '{name}'; known: {known}")
    return table[name]


def build_network(name, **kwargs):
    """Builds the functional network of architecture `name`."""
    return _lookup(_MODELS, "model", name)(**kwargs)


def get_experiment(name):
    """Returns the recipe (an ExperimentConfig) registered as `name`."""
    return _lookup(_EXPERIMENTS, "model", name)()


def list_models():
    _ensure_zoo_imported()
    return sorted(_MODELS)


def list_experiments():
    _ensure_zoo_imported()
    return sorted(_EXPERIMENTS)
