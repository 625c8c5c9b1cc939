"""Gradient-masking diagnostics.

Acceptance (issue 3): a model that masks its gradients on purpose (a quantising input layer whose
gradient is exactly zero, in front of a naturally trained digits CNN) looks robust to PGD alone but
is flagged WARN by the checklist; a Madry-trained digits model passes every check.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, evaluation
from tfadv.evaluation import diagnostics as diag
from tests import testing

EPS = 0.1  # 25.5 pixel levels on [0,1] digits


class ZeroGradQuantize(keras.layers.Layer):
    """Rounds the input to ``levels`` grey levels; its gradient is exactly zero (shattered gradients)."""

    def __init__(self, levels=8, **kwargs):
        super().__init__(**kwargs)
        self.levels = levels

    def call(self, x):
        q = tf.round(x * self.levels) / self.levels
        return 0.0 * x + tf.stop_gradient(q)


def masked_model(base):
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, base(ZeroGradQuantize()(inputs)), name="masked")


class NoisyModel:
    """A randomised defense: Gaussian noise on the input at every call."""

    def __init__(self, base):
        self.base = base

    def __call__(self, x):
        return self.base(x + tf.random.normal(tf.shape(x), stddev=0.2), training=False)


@functools.lru_cache(maxsize=None)
def madry_digits_model():
    """A tiny CNN trained with Madry's PGD (eps 0.1, 5 steps) on digits (test_madry's recipe)."""
    x, y, _, _ = testing.digits_split()
    keras.utils.set_random_seed(0)
    net = testing.tiny_cnn(seed=0, name="madry_digits")
    model = defenses.get("madry", net, attack=attacks.get("pgd", eps=EPS, step_size=0.04, num_steps=5),
                                  weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=64, epochs=8, verbose=0, shuffle=True)
    return net


# ------------------------------------------------------------------------------------ the checks


def test_check_functions_on_given_numbers():
    assert diag.check_eps_sweep({0.1: 0.5, 0.2: 0.1, 1.0: 0.0}, max_final_accuracy=0.05, tolerance=0.01,
                                width=1.0).status == "PASS"
    rec = diag.check_eps_sweep({0.1: 0.9, 1.0: 0.3}, max_final_accuracy=0.05, tolerance=0.01, width=1.0)
    assert rec.status == "WARN" and rec.numbers["final_accuracy"] == 0.3 and "30.0%" in rec.message
    assert diag.check_eps_sweep({0.1: 0.1, 0.2: 0.3, 1.0: 0.0}, max_final_accuracy=0.05, tolerance=0.01,
                                width=1.0).status == "WARN"
    assert diag.check_steps_sweep({1: 0.6, 10: 0.4, 100: 0.405}, tolerance=0.01).status == "PASS"
    rec = diag.check_steps_sweep({1: 0.6, 10: 0.4, 100: 0.5}, tolerance=0.01)
    assert rec.status == "WARN" and "10 -> 100" in rec.message
    assert diag.check_weaker("square", "Square", 0.2, 0.5, 0.01).status == "WARN"
    assert diag.check_weaker("square", "Square", 0.5, 0.2, 0.01).status == "PASS"
    assert diag.check_fgsm(0.95, 0.9, 0.0).status == "WARN"
    assert diag.check_fgsm(0.5, 0.9, 0.0).status == "PASS"
    assert diag.check_zero_gradients(np.array([0.0, 1.0, 0.0, 2.0]), 0.05).numbers[
        "zero_gradient_share"] == 0.5
    assert diag.check_zero_gradients(np.ones(100), 0.05).status == "PASS"
    assert diag.Diagnostic("x", "WARN", {}, "why").line() == "WARN x: why"


def test_eps_values_are_capped_at_the_range_width():
    from tfadv import ranges

    assert diag.eps_values(0.1, (1, 2, 4, 8, 16), ranges.get_range("[0,1]")) == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert diag.eps_values(16 / 255, (1, 16, 200), ranges.get_range("[-1,1]"))[-1] == 2.0
    with pytest.raises(ValueError, match="Received"):
        diag.eps_values(0.0, (1,), ranges.get_range("[0,1]"))


def test_quick_checklist_flags_the_masked_model_and_a_randomised_one():
    base = testing.trained_digits_model()
    _, _, x, y = testing.digits_split(num_test=120)
    report = evaluation.run_diagnostics(
        masked_model(base), (x, y), eps=EPS, pixel_range="[0,1]", eps_multipliers=(1, 10),
        steps=(1, 5), sweep_steps=5, checks=("eps_sweep", "zero_gradients", "determinism", "fgsm"))
    assert [r.name for r in report.records] == ["eps_sweep", "fgsm", "zero_gradients", "determinism"]
    assert report["zero_gradients"].status == "WARN"
    assert report["zero_gradients"].numbers["zero_gradient_share"] == 1.0
    assert report["eps_sweep"].status == "WARN"
    assert report["determinism"].status == "PASS" and not report.passed
    noisy = evaluation.run_diagnostics(NoisyModel(base), (x, y), eps=EPS, pixel_range="[0,1]",
                                       checks=("determinism",))
    assert noisy["determinism"].status == "WARN" and noisy["determinism"].numbers["examples_changed"] > 0
    with pytest.raises(ValueError, match="Received"):
        evaluation.run_diagnostics(base, (x, y), eps=EPS, pixel_range="[0,1]", checks=("nope",))
    with pytest.raises(ValueError, match="Received"):
        evaluation.run_diagnostics(base, (x, y), eps=25.5, pixel_range="[0,1]")


def test_skips_without_a_source_model_or_a_registered_square(monkeypatch):
    base = testing.trained_digits_model()
    _, _, x, y = testing.digits_split(num_test=50)
    entries = {k: v for k, v in attacks.ATTACKS._entries.items() if k != "square"}
    monkeypatch.setattr(attacks.ATTACKS, "_entries", entries)
    report = evaluation.run_diagnostics(base, (x, y), eps=EPS, pixel_range="[0,1]", steps=(2,),
                                        checks=("transfer", "square"))
    assert [(r.name, r.status) for r in report.records] == [("transfer", "SKIP"), ("square", "SKIP")]
    assert report.passed
    js = report.to_json()
    assert js["checks"]["square"]["status"] == "SKIP" and js["num_examples"] == 50


# ------------------------------------------------------------------------------------ acceptance


@pytest.mark.slow
def test_acceptance_masked_model_is_flagged_although_pgd_calls_it_robust():
    base = testing.trained_digits_model()
    masked = masked_model(base)
    _, _, x, y = testing.digits_split()
    clean = np.mean(np.argmax(masked(x), -1) == y)
    pgd = attacks.get("pgd", eps=EPS, num_steps=20, seed=0)
    pgd_masked = np.mean(np.argmax(masked(pgd(masked, x, y)), -1) == y)
    pgd_base = np.mean(np.argmax(base(pgd(base, x, y)), -1) == y)
    # PGD alone would call the masked model robust: it keeps (almost) its clean accuracy.
    assert clean > 0.8 and pgd_masked > clean - 0.1 and pgd_masked > pgd_base + 0.3, (
        clean, pgd_masked, pgd_base)
    report = evaluation.run_diagnostics(masked, (x, y), eps=EPS, pixel_range="[0,1]",
                                        transfer_source=base, square_params={"n_queries": 1000})
    status = {r.name: r.status for r in report.records}
    for name in ("zero_gradients", "eps_sweep", "transfer", "square"):
        assert status[name] == "WARN", name + "\n" + "\n".join(report.lines())
    assert not report.passed


@pytest.mark.slow
def test_acceptance_madry_model_passes_every_check():
    model = madry_digits_model()
    _, _, x, y = testing.digits_split()
    report = evaluation.run_diagnostics(model, (x, y), eps=EPS, pixel_range="[0,1]",
                                        transfer_source=testing.trained_digits_model(),
                                        square_params={"n_queries": 1000})
    assert report.passed, "\n".join(report.lines())
    assert all(r.status in ("PASS", "SKIP") for r in report.records)
    assert report.sweeps["whitebox_accuracy"] > 0.3  # the model is robust, so the checks mean something
