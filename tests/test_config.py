"""Settings: validation at construction, one override path, layering."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from anpvs_tf import cli
from anpvs_tf import config as config_lib
from anpvs_tf.config import UNSET
from anpvs_tf.config import AttackConfig
from anpvs_tf.config import DataConfig
from anpvs_tf.config import ExperimentConfig
from anpvs_tf.config import TrainConfig
from anpvs_tf.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_none_is_a_value_and_unset_keeps_the_field():
    config = ExperimentConfig()
    assert config.loss.kl_normalizer == 60000
    cleared = config_lib.replace(config, **{"loss.kl_normalizer": None})
    assert cleared.loss.kl_normalizer is None
    kept = config_lib.replace(config, **{"loss.kl_normalizer": UNSET,
                                         "train.epochs": 3})
    assert kept.loss.kl_normalizer == 60000 and kept.train.epochs == 3


def test_settings_that_must_agree_change_in_one_replace():
    gated = config_lib.replace(ExperimentConfig(), **{
        "train.epochs": 10, "train.gate_epochs": 5})
    # Lowering epochs alone contradicts gate_epochs ...
    with pytest.raises(ConfigError, match="`train.gate_epochs`=5 must be "
                       "less than `train.epochs`=4"):
        config_lib.replace(gated, **{"train.epochs": 4})
    # ... lowering both together is fine, whatever the order of the keys.
    both = config_lib.replace(gated, **{"train.epochs": 4,
                                        "train.gate_epochs": 2})
    assert (both.train.epochs, both.train.gate_epochs) == (4, 2)


@pytest.mark.parametrize("key, hint", [
    ("train.bogus", ""),
    ("training.epochs", "did you mean train.epochs"),
    ("eval.attack.steps", ""),
    ("eval.attack", ""),
])
def test_an_unknown_key_is_a_config_error(key, hint):
    if key == "eval.attack":  # a whole section is a value, not a typo
        config_lib.replace(ExperimentConfig(), **{key: AttackConfig()})
        return
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"
                       f".*{hint}"):
        config_lib.replace(ExperimentConfig(), **{key: 1})


def test_every_settings_type_is_checked_when_it_is_built():
    with pytest.raises(ConfigError, match="`train.epochs` must be an integer"):
        TrainConfig(epochs=2.5)
    with pytest.raises(ConfigError, match="`train.epochs` must be at least 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="`data.train_examples`"):
        DataConfig(train_examples=0)
    with pytest.raises(ConfigError, match="`attack.step_size`.*> 0"):
        AttackConfig(step_size=float("nan"))
    with pytest.raises(ConfigError, match="`train.batch_size` must be an "
                       "integer"):
        TrainConfig(batch_size=True)  # a bool is not a count


def test_the_evaluation_attack_is_named_by_its_own_key():
    with pytest.raises(ConfigError, match="`eval.attack.epsilon` must be in"):
        config_lib.replace(ExperimentConfig(),
                           **{"eval.attack.epsilon": 3.0})


def test_augment_padding_must_not_be_negative():
    with pytest.raises(ConfigError, match="`data.augment_padding` must be"):
        config_lib.replace(ExperimentConfig(), **{"data.augment_padding": -1})


@pytest.mark.parametrize("text, value", [
    ("train.epochs=7", 7),
    ("train.weight_learning_rate=3e-4", 3e-4),
    ("data.augment=true", True),
    ("attack.random_start=off", False),
    ("train.decay_fractions=0.4,0.6", (0.4, 0.6)),
    ("loss.kl_normalizer=none", None),
    ("train.gate_epochs=None", None),
    ("data.dataset=fashion_mnist", "fashion_mnist"),
    ("eval.attack.num_steps=100", 100),
])
def test_an_override_is_parsed_by_the_type_of_its_setting(text, value):
    key, parsed = config_lib.parse_override(text)
    assert parsed == value and type(parsed) is type(value)
    assert key == text.split("=")[0]


@pytest.mark.parametrize("key, value", [
    ("train.decay_fractions", (0.7, 0.9)),
    ("train.base_decay_fractions", ()),
    ("data.augment", False),
    ("loss.adv_weight", 2.0),
    ("train.epochs", 22),
])
def test_an_override_written_by_override_text_reads_back(key, value):
    """Benchmarks write commands with it (bench/baselines.py); a list from
    a JSON report reads back as the tuple it was."""
    for written in (value, list(value) if isinstance(value, tuple) else value):
        assert config_lib.parse_value(
            key, config_lib.override_text(written)) == value


@pytest.mark.parametrize("text, message", [
    ("train.epochs=abc", "`train.epochs` takes an integer; got 'abc'"),
    ("train.epochs", "not of the form section.field=value"),
    ("train.seed=none", "`train.seed` takes an integer; got 'none'"),
    ("data.augment=maybe", "takes true or false"),
])
def test_a_bad_override_says_what_the_setting_takes(text, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.parse_override(text)


def _script_flags(argv):
    """A fresh flag set with some of train.py's aliases and --override."""
    values = flags.FlagValues()
    flags.DEFINE_integer("epochs", None, "", flag_values=values)
    flags.DEFINE_integer("kl_normalizer", None, "", flag_values=values)
    flags.DEFINE_string("data_dir", None, "", flag_values=values)
    flags.DEFINE_enum("data_source", None, ["embedded", "idx", "tfds"], "",
                      flag_values=values)
    flags.DEFINE_integer("validation_examples", 1000, "",
                         flag_values=values)
    flags.DEFINE_string("workdir", None, "", flag_values=values)
    flags.DEFINE_multi_string("override", [], "", flag_values=values)
    values(["script", *argv])
    return values


def test_flags_and_overrides_reach_the_config_through_one_path():
    values = _script_flags([
        "--epochs=3", "--kl_normalizer=0", "--data_dir=/data",
        "--override=train.decay_fractions=0.4,0.6",
        "--override=eval.attack.num_steps=5",
    ])
    overrides = cli.config_overrides(values)
    assert overrides == {
        "train.epochs": 3,
        "loss.kl_normalizer": None,  # 0 stands for the training-set size
        "data.data_dir": "/data",
        "data.source": "idx",  # an IDX folder implies its source
        "data.validation_examples": 1000,  # the script's own default
        "train.decay_fractions": (0.4, 0.6),
        "eval.attack.num_steps": 5,
    }
    config = cli.apply_flags(ExperimentConfig(), values)
    assert config.train.decay_fractions == (0.4, 0.6)
    assert config.eval.attack.num_steps == 5
    # Flags not given keep the recipe's values.
    untouched = cli.config_overrides(_script_flags([]))
    assert untouched == {"data.validation_examples": 1000}


def test_an_override_wins_over_the_flag_of_its_key():
    values = _script_flags(["--epochs=3", "--override=train.epochs=9"])
    assert cli.apply_flags(ExperimentConfig(), values).train.epochs == 9


def test_library_messages_name_the_scripts_flags():
    values = _script_flags([])
    message = ("`train.gate_epochs`=5 must be less than `train.epochs`=2; "
               "`train.decay_fractions` too; choose another `workdir`")
    assert cli.flag_message(message, values) == (
        "train.gate_epochs=5 must be less than --epochs=2; "
        "train.decay_fractions too; choose another --workdir")


def test_a_config_stored_before_a_setting_existed_reads_as_its_default():
    """What lets a cached run (bench/budget_search.py) stay valid when a
    setting is added: its default is the behaviour before it existed."""
    config = ExperimentConfig()
    stored = json.loads(config.to_json())
    del stored["loss"]["kl_flops_exponent"]
    del stored["train"]["fine_tune_learning_rate"]
    assert config_lib.from_dict(stored) == config
    stored["train"]["epochs"] += 1
    assert config_lib.from_dict(stored) != config


@pytest.mark.parametrize("base_decays", [None, (), (0.9,)])
def test_a_stored_config_reads_back_equal(base_decays):
    """config.json stores tuples as lists; reading it back (evaluate.py,
    the export, a resumed run) must give the same config."""
    config = config_lib.replace(ExperimentConfig(), **{
        "train.base_decay_fractions": base_decays})
    assert config_lib.from_dict(json.loads(config.to_json())) == config


def test_modules_import_only_what_is_below_them():
    """Run in a fresh interpreter: this one has imported everything."""
    code = (
        "import os, sys\n"
        "os.environ.pop('KERAS_BACKEND', None)\n"
        "import anpvs_tf.cli\n"
        "assert 'KERAS_BACKEND' not in os.environ, 'cli changed the env'\n"
        "assert 'tensorflow' not in sys.modules, 'cli imported TensorFlow'\n"
        "import anpvs_tf.gates\n"
        "bad = {'anpvs_tf.data', 'anpvs_tf.distribution'} & set(sys.modules)\n"
        "assert not bad, bad\n"
        "from anpvs_tf import registry\n"
        "assert registry.list_models() == [], 'the registry imported the zoo'\n"
        "import anpvs_tf.training\n"
        "assert registry.list_models() == [], 'training imported the zoo'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_gates_import_no_settings_data_or_distribution():
    code = ("import sys, anpvs_tf.gates\n"
            "assert not {'anpvs_tf.data', 'anpvs_tf.config', "
            "'anpvs_tf.distribution'} & set(sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_only_the_scripts_import_the_training_orchestration():
    """Library modules get data, workdir and model helpers from the modules
    below training.py; only `train` itself may be imported from it."""
    offenders = []
    for path in sorted((ROOT / "anpvs_tf").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom)
                    and node.module == "anpvs_tf.training"):
                offenders += [f"{path.name}: {alias.name}"
                              for alias in node.names if alias.name != "train"]
    assert offenders == []


def _imports_of_the_library():
    """{module: set of anpvs_tf modules it imports}, function-level imports
    included (a deferred import is still a dependency)."""
    package = ROOT / "anpvs_tf"
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module.startswith("anpvs_tf")):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    is_module = (package.parent / Path(*full.split("."))
                                 ).with_suffix(".py").exists()
                    found.add(full if is_module else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names
                          if a.name.startswith("anpvs_tf.")}
        modules[name] = found - {name, "anpvs_tf"}
    return modules


def test_the_library_has_no_import_cycle():
    """Every module depends only on modules below it: the imports form a
    directed acyclic graph (found by repeatedly removing modules that
    import nothing left)."""
    graph = _imports_of_the_library()
    assert "anpvs_tf.training" in graph and "anpvs_tf.gates" in graph
    remaining = {name: set(deps) & set(graph) for name, deps in graph.items()}
    while remaining:
        leaves = {name for name, deps in remaining.items() if not deps}
        assert leaves, f"import cycle among {sorted(remaining)}"
        remaining = {name: deps - leaves for name, deps in remaining.items()
                     if name not in leaves}
