"""methods.OBJECTIVES: each training method as data."""

import numpy as np
import pytest
import tensorflow as tf

from anpvs_tf.methods import ADVERSARIAL_METHODS
from anpvs_tf.methods import GATED_METHODS
from anpvs_tf.methods import METHODS
from anpvs_tf.methods import OBJECTIVES
from anpvs_tf.methods import Objective
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
