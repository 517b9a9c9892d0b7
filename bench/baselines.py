"""The unpruned baselines the main command is compared with: each with
the weight rate bench/budget_search.py chose for it on the held-out
validation split, the training attack and loss setting it shares with the
recipe, its seed study's refinement (REFINEMENTS), and the epochs whose
training passes match the main command's
(anpvs_tf.delivery.matched_epochs). bench/quickstart.py and
bench/budget_curve.py train them. Import after cli.start()."""

import json
import shlex
from pathlib import Path

from anpvs_tf import config as config_lib
from anpvs_tf.delivery import matched_epochs
from anpvs_tf.delivery import training_passes
from anpvs_tf.registry import get_experiment
from main_command import MAIN_COMMAND

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / "bench/results/budget_search.json"
MAIN_RECIPE = next(arg.split("=", 1)[1] for arg in shlex.split(MAIN_COMMAND)
                   if arg.startswith("--model="))


# The seed study's refinement of a baseline: the main recipe's
# refinements of the chosen trial (models/lenet5_caffe.py
# BUDGET_SEEDS_REFINEMENT) were validation studies ANP-VS got; the one
# that applies to AT and TRADES, the weights' later decays, was tried on
# each the same way (bench/budget_seeds.py --at_override=..., and
# --baseline=trades --trades_override=..., seeds 0-2) and kept where it
# raised the baseline's worst case. Its report's <method>_overrides apply.
REFINEMENTS = {
    "at": ROOT / "bench/results/at_seeds_decay_0.7_0.9_adv_2.json",
    "trades": ROOT / "bench/results/trades_seeds_decay_0.7_0.9.json"}


def baseline_recipe(method):
    """A baseline's settings from bench/budget_search.py: the weight
    learning rate it chose for `method` on the held-out validation split,
    and the training attack and loss setting it shares with the recipe,
    with its seed study's refinement (REFINEMENTS) if it has one."""
    search = json.loads(SEARCH.read_text())
    chosen = search[f"{method}_trials"][search[f"{method}_chosen"]]
    refinement = (json.loads(REFINEMENTS[method].read_text())[
        f"{method}_overrides"] if method in REFINEMENTS else {})
    return (chosen["overrides"]["train.weight_learning_rate"],
            {**search[f"{method}_shared_overrides"], **refinement})


def baseline_settings(method, epochs, learning_rate, shared):
    """The unpruned `method` on the same data, evaluated like the main
    command: its recipe and these overrides."""
    main = get_experiment(MAIN_RECIPE)
    return f"lenet5_caffe_mnist_{method}", {
        "train.epochs": epochs, "train.weight_learning_rate": learning_rate,
        # The main command's training attack, loss mix and monitor slice,
        # so that both spend their training time on the same work.
        "attack.num_steps": main.attack.num_steps, **shared,
        "data.monitor_examples": main.data.monitor_examples,
        "eval.strong_examples": main.eval.strong_examples,
        "serve.export": True}


def baseline_command(recipe, overrides):
    return (f"python train.py --model={recipe} "
            + "".join(f"--override={key}={config_lib.override_text(value)} "
                      for key, value in overrides.items())
            + f"--workdir=runs/quickstart_{recipe.split('_mnist_')[-1]}")


def baseline_epochs(method, rate, shared, train_examples, main=None):
    """The baseline's epochs whose training passes (base and monitor
    included) come closest to the main command's (or to those of `main`,
    its config with other settings)."""
    main = main or get_experiment(MAIN_RECIPE)
    budget = training_passes(main, train_examples)
    recipe, overrides = baseline_settings(method, 1, rate, shared)
    return matched_epochs(
        budget, config_lib.replace(get_experiment(recipe), **overrides),
        train_examples)


def matched_baseline_command(method, train_examples, main=None):
    """The command that trains the unpruned `method` for the main
    command's training work (or `main`'s, its config with other
    settings), at the rate its search chose."""
    rate, shared = baseline_recipe(method)
    return baseline_command(*baseline_settings(
        method, baseline_epochs(method, rate, shared, train_examples, main),
        rate, shared))
