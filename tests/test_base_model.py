"""The base model a gated run trains first when no --base_workdir is given."""

import json

import pytest

from anpvs_tf.errors import ConfigError
from anpvs_tf.training import train
from tests.tiny_runs import run_config


def test_base_method_at_trains_an_adversarial_base(tmp_path):
    config = run_config("lenet5_caffe_mnist_anp_vs", 1,
                        **{"train.base_method": "at",
                           "model.architecture": "lenet5_caffe_tiny"})
    train(config, tmp_path, verbose=0)
    base = json.loads((tmp_path / "base" / "results.json").read_text())
    assert base["method"] == "at"
    assert base["epochs"] == config.train.base_epochs
    assert json.loads((tmp_path / "results.json").read_text())[
        "method"] == "anp_vs"


def test_unknown_base_method_is_refused_with_the_choices():
    with pytest.raises(ConfigError,
                       match="`train.base_method` 'trades'.*standard, at"):
        run_config("lenet5_caffe_mnist_anp_vs", 1,
                   **{"train.base_method": "trades"})
