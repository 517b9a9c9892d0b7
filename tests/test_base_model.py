"""The base model a gated run trains first when no --base_workdir is given."""

import json

import pytest

from anpvs_tf.errors import ConfigError
from anpvs_tf.training import train
from tests.tiny_runs import run_config


@pytest.mark.parametrize("base_method, method", [
    ("at", "anp_vs"), ("trades", "anp_vs_trades")])
def test_an_adversarial_base_is_trained_first(tmp_path, base_method,
                                              method):
    config = run_config(f"lenet5_caffe_mnist_{method}", 1,
                        **{"train.base_method": base_method,
                           "model.architecture": "lenet5_caffe_tiny"})
    train(config, tmp_path, verbose=0)
    base = json.loads((tmp_path / "base" / "results.json").read_text())
    assert base["method"] == base_method
    assert base["epochs"] == config.train.base_epochs
    assert json.loads((tmp_path / "results.json").read_text())[
        "method"] == method


def test_unknown_base_method_is_refused_with_the_choices():
    with pytest.raises(ConfigError,
                       match="`train.base_method` 'bp'.*standard, at, "
                       "trades"):
        run_config("lenet5_caffe_mnist_anp_vs", 1,
                   **{"train.base_method": "bp"})
