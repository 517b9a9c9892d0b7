"""methods.OBJECTIVES: each training method as data."""

import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf import config as config_lib
from anpvs_tf.assembly import build_model
from anpvs_tf.complexity import flops_kl_weights
from anpvs_tf.methods import ADVERSARIAL_METHODS
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.methods import METHODS
from anpvs_tf.methods import OBJECTIVES
from anpvs_tf.methods import Objective
from anpvs_tf.registry import get_experiment
from tests.test_model import ATTACK
from tests.test_model import make_model


def test_table_agrees_with_the_config_method_lists():
    assert tuple(OBJECTIVES) == METHODS
    assert {m for m, o in OBJECTIVES.items() if o.gated} == set(
        GATED_METHODS)
    assert {m for m, o in OBJECTIVES.items() if o.attack} == set(
        ADVERSARIAL_METHODS)
    assert OBJECTIVES["trades"].attack == "trades"
    # Only the ANP-VS rows suppress vulnerability; only gated methods pay
    # the KL.
    assert [m for m, o in OBJECTIVES.items() if "vs_loss" in o.terms] == [
        "anp_vs", "anp_vs_trades"]
    assert OBJECTIVES["anp_vs_trades"].attack == "trades"
    for method, objective in OBJECTIVES.items():
        assert ("kl_loss" in objective.terms) == objective.gated, method


def test_inconsistent_rows_are_refused():
    with pytest.raises(ValueError, match="gate loss"):
        Objective(None, True, (("ce_loss", None),))
    with pytest.raises(ValueError, match="gate loss"):
        Objective(None, False, (("ce_loss", None),),
                  gate_loss=(("ce_loss", None),))
    with pytest.raises(ValueError, match="attack"):
        Objective("fgsm", False, (("ce_loss", None),))


@pytest.mark.parametrize("method, first_term", [
    ("anp_vs", "adv_ce_loss"), ("anp", "adv_ce_loss"), ("bp", "ce_loss")])
def test_gate_loss_is_the_row_of_its_method(method, first_term,
                                            mnist_test_batch):
    """Gates minimise CE(x_adv) + beta KL / N (CE(x) without an adversary);
    plain methods have no gate loss."""
    images, labels = mnist_test_batch
    model = make_model(method)
    x, y = tf.constant(images[:16]), tf.constant(labels[:16])
    x_adv = model.craft(x, y, ATTACK)
    _, gate_loss, terms, _ = model._loss_terms(
        x, y, x_adv if model.adversarial else None)
    np.testing.assert_allclose(
        float(gate_loss), float(terms[first_term] + terms["kl_loss"]),
        rtol=1e-6)
    _, plain_gate_loss, _, _ = make_model("at")._loss_terms(x, y, x_adv)
    assert plain_gate_loss is None


def test_anp_vs_trades_minimises_trades_loss_with_gates_and_vs(
        mnist_test_batch):
    """Weights: CE(x) + beta_T KL(p(x) || p(x_adv)) + lambda VS + the gate
    KL + L2; gates: the same robust loss and the gate KL, against TRADES'
    attack (its examples move the KL, not just the label's CE)."""
    images, labels = mnist_test_batch
    model = make_model("anp_vs_trades")
    x, y = tf.constant(images[:16]), tf.constant(labels[:16])
    x_adv = model.training_examples(x, y)
    weight_loss, gate_loss, terms, _ = model._loss_terms(x, y, x_adv)
    robust = terms["ce_loss"] + model.trades_weight * terms["trades_loss"]
    assert float(terms["trades_loss"]) > 0
    assert float(terms["vs_loss"]) > 0
    np.testing.assert_allclose(
        float(gate_loss), float(robust + terms["kl_loss"]), rtol=1e-6)
    penalty = float(weight_loss) - float(
        robust + model.vs_weight * terms["vs_loss"] + terms["kl_loss"])
    # What is left is the L2 penalty: positive and small.
    assert 0 < penalty < 0.1 * float(weight_loss)


def test_kl_flops_exponent_weights_each_gates_kl_by_its_cost(
        mnist_test_batch):
    """loss.kl_flops_exponent reaches the gate KL that both optimizers
    minimise: beta * sum_g w_g KL_g / N, w from complexity.flops_kl_weights;
    0 leaves every gate's KL as the paper has it."""
    images, labels = mnist_test_batch
    x, y = tf.constant(images[:8]), tf.constant(labels[:8])
    recipe = get_experiment("lenet5_caffe_mnist_anp_vs")
    kl_terms = {}
    for exponent in (0.0, 0.5):
        config = config_lib.replace(
            recipe, **{"loss.kl_flops_exponent": exponent})
        model = build_model(config, (28, 28, 1), 10, 5000)
        _, _, terms, _ = model._loss_terms(x, y, x)  # any x_adv
        kls = {gate.name: float(gate.kl_divergence())
               for gate in model.gates}
        weights = (flops_kl_weights(model.network, exponent)
                   if exponent else {})
        assert model.kl_gate_weights == weights
        expected = sum(weights.get(name, 1.0) * kl
                       for name, kl in kls.items())
        np.testing.assert_allclose(
            float(terms["kl_loss"]),
            recipe.loss.kl_weight * expected / recipe.loss.kl_normalizer,
            rtol=1e-5)
        kl_terms[exponent] = float(terms["kl_loss"])
    assert kl_terms[0.5] != kl_terms[0.0]
