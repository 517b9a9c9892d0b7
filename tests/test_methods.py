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
    # Only anp_vs suppresses vulnerability; only gated methods pay the KL.
    assert [m for m, o in OBJECTIVES.items() if "vs_loss" in o.terms] == [
        "anp_vs"]
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
