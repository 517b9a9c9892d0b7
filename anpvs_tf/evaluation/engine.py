"""Runs attacks over a test set and scores them per example.

The one evaluation engine, under `evaluate.py` and train.py's final
numbers: it crafts adversarial examples in batches
(each batch one call of a traced function, so no per-step Python), and
scores any set of adversarial images on a target network: which examples
it still classifies correctly, and how far each gated feature moved (the
paper's vulnerability, per unit).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from anpvs_tf.apgd import apgd_attack
from anpvs_tf.attacks import fgsm_attack
from anpvs_tf.attacks import pgd_attack
from anpvs_tf.losses import vulnerability


def default_step_size(epsilon, num_steps):
    """2.5 * epsilon / num_steps: the usual PGD step, which lets PGD cross
    the ball from its random start."""
    return 2.5 * epsilon / max(num_steps, 1)


def attack_name(attack):
    """pgd40, fgsm, apgd_ce, ...; non-L-inf norms as a suffix (pgd40_l2)."""
    base = (f"pgd{attack.num_steps}" if attack.method == "pgd"
            else attack.method)
    return base if attack.norm == "linf" else f"{base}_{attack.norm}"


def attack_settings(attack):
    """The settings of a report: only those the method reads."""
    settings = {"name": attack_name(attack), **dataclasses.asdict(attack)}
    if attack.method != "pgd":
        del settings["step_size"]
    if attack.method == "fgsm":
        settings.update(num_steps=1, random_start=False, restarts=1)
    return settings


def _craft_function(classifier, attack, seed_generator):
    """A traced batch attack.

    epsilon, step size and (for PGD) the number of steps are tensor
    arguments, so a sweep reuses one trace.
    """

    def craft(x, y, epsilon, step_size, num_steps):
        common = {"eot_samples": classifier.eot_samples,
                  "norm": attack.norm}
        if attack.method == "fgsm":
            return fgsm_attack(
                classifier.attack_logits, x, y, epsilon=epsilon, **common)
        if attack.method == "pgd":
            return pgd_attack(
                classifier.attack_logits, x, y, epsilon=epsilon,
                step_size=step_size, num_steps=num_steps,
                random_start=attack.random_start,
                seed_generator=seed_generator, restarts=attack.restarts,
                **common)
        return apgd_attack(
            classifier.attack_logits, x, y, epsilon=epsilon,
            num_steps=attack.num_steps, loss=attack.method.split("_")[1],
            random_start=attack.random_start, seed_generator=seed_generator,
            restarts=attack.restarts, **common)

    # reduce_retracing: the last, shorter batch does not trace again.
    return tf.function(craft, reduce_retracing=True)


class RobustnessEvaluator:
    """Crafts and scores adversarial examples for one classifier, batched.

    Every craft() restarts the attack noise from `seed`, so the same attack
    gives the same examples, and a sweep over eps uses the same random
    directions at every point (differences between points are then the
    attack's, not the noise's).
    """

    def __init__(self, classifier, batch_size=500, seed=0):
        self.classifier = classifier
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._crafters = {}
        self._score = tf.function(self._score_batch, reduce_retracing=True)
        self._predict = tf.function(self._predict_batch,
                                    reduce_retracing=True)

    def _batches(self, *arrays):
        for index, start in enumerate(
            range(0, len(arrays[0]), self.batch_size)
        ):
            yield index, [a[start : start + self.batch_size] for a in arrays]

    def craft(self, attack, images, labels):
        """Adversarial images (numpy) for every example.

        attack: a config.AttackConfig (the one attack-settings type).
        """
        # One trace per kind of attack: epsilon, the step size and PGD's
        # number of steps are tensor arguments of it.
        key = (attack.method, attack.norm, attack.random_start,
               attack.restarts,
               0 if attack.method == "pgd" else attack.num_steps)
        if key not in self._crafters:
            generator = keras.random.SeedGenerator(self.seed)
            self._crafters[key] = (
                _craft_function(self.classifier, attack, generator),
                generator)
        craft, generator = self._crafters[key]
        generator.state.assign(
            tf.cast([self.seed, 0], generator.state.dtype))
        epsilon = tf.constant(attack.epsilon, tf.float32)
        step_size = tf.constant(attack.step_size, tf.float32)
        num_steps = tf.constant(attack.num_steps, tf.int32)
        out = [
            craft(tf.constant(x), tf.constant(y), epsilon, step_size,
                  num_steps).numpy()
            for _, (x, y) in self._batches(images, labels)
        ]
        return np.concatenate(out) if out else images[:0]

    def _predict_batch(self, x, y, batch_index):
        logits = self.classifier.predict_logits(x, batch_index)
        return tf.equal(
            tf.argmax(logits, axis=-1, output_type=tf.int32),
            tf.cast(y, tf.int32),
        )

    def _score_batch(self, x, x_adv, y, batch_index):
        correct = self._predict_batch(x_adv, y, batch_index)
        per_unit = vulnerability(
            self.classifier.features(x), self.classifier.features(x_adv),
            per_unit=True)
        unit_sums = {name: tf.reduce_sum(distance, axis=0)
                     for name, distance in per_unit.items()}
        return correct, unit_sums

    def clean_correct(self, images, labels):
        """Per example: is the clean image classified correctly."""
        out = [
            self._predict(tf.constant(x), tf.constant(y),
                          tf.constant(index)).numpy()
            for index, (x, y) in self._batches(images, labels)
        ]
        return np.concatenate(out)

    def score(self, images, labels, adversarial_images):
        """Per-example correctness and per-unit vulnerability.

        Returns (correct: bool [n], {layer: mean |f(x) - f(x_adv)| per
        unit, as a numpy vector}); a layer's vulnerability is the mean of
        its units, the overall one the mean over layers (SPEC).
        """
        correct, sums = [], {}
        for index, (x, x_adv, y) in self._batches(
            images, adversarial_images, labels
        ):
            batch_correct, unit_sums = self._score(
                tf.constant(x), tf.constant(x_adv), tf.constant(y),
                tf.constant(index))
            correct.append(batch_correct.numpy())
            for name, value in unit_sums.items():
                sums[name] = sums.get(name, 0.0) + value.numpy()
        count = max(len(labels), 1)
        units = {name: total / count for name, total in sums.items()}
        return np.concatenate(correct), units


def vulnerability_summary(units):
    """{"overall", "per_layer"} from per-unit vulnerabilities."""
    per_layer = {name: float(np.mean(v)) for name, v in units.items()}
    overall = float(np.mean(list(per_layer.values()))) if per_layer else 0.0
    return {"overall": overall, "per_layer": per_layer}
