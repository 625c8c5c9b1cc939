"""Generator attacks (tfadv/attacks/generators.py): AdvGAN, GAP and L2L-DA fitted to the classifier
under attack, their prepare phase in the evaluation runner, bounds and clear errors."""

import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks
from tfadv import evaluation
from tfadv import losses
from tfadv.attacks import generators, l2lda_generator

EPS = 0.2  # ~51/255 on digits in [0,1]: strong enough that a few fitting steps matter


def _train_batches(batch=50, count=1400):
    x, y, _, _ = testing.digits_split()
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, count, batch)]


def _ce(model, x_adv, y):
    return float(np.mean(losses.ce(logits=model(x_adv, training=False), labels=y)))


def _accuracy(model, x_adv, y):
    return float(np.mean(testing.predicted(model, x_adv) == y))


SMALL = {
    "advgan": dict(base_filters=4, num_res_blocks=1),
    "gap": dict(base_filters=8, num_res_blocks=1),
}


@pytest.mark.parametrize("name", [pytest.param("advgan", marks=pytest.mark.slow), "gap"])
def test_fitting_strengthens_the_attack_and_stays_in_the_ball(name, digits_model, digits_test):
    x, y = digits_test
    data = _train_batches()
    untrained = attacks.get(name, eps=EPS, seed=3, finetune_steps=1, **SMALL[name])
    untrained.prepare(digits_model, data)
    fitted = attacks.get(name, eps=EPS, seed=3, finetune_steps=60, **SMALL[name])
    summary = fitted.prepare(digits_model, data)
    assert summary["steps"] == 60 and summary["loss_last"] < summary["loss_first"]
    x0 = untrained(digits_model, x, y).numpy()
    x1 = fitted(digits_model, x, y).numpy()
    for x_adv in (x0, x1):
        testing.assert_in_ball_and_range(x_adv, x, "linf", EPS, "[0,1]")
    assert _ce(digits_model, x1, y) > _ce(digits_model, x0, y)
    assert _accuracy(digits_model, x1, y) < _accuracy(digits_model, x0, y)


def test_gap_perturbation_fills_the_linf_budget(digits_model, digits_test):
    x, _ = digits_test
    attack = attacks.get("gap", eps=EPS, seed=0, finetune_steps=1, **SMALL["gap"])
    attack.prepare(digits_model, _train_batches(count=50))
    delta = attack.perturbation(tf.constant(x)).numpy().reshape(len(x), -1)
    np.testing.assert_allclose(np.abs(delta).max(axis=1), EPS, rtol=1e-5)


def test_attack_before_prepare_is_a_clear_error(digits_model, digits_test):
    x, y = digits_test
    attack = attacks.get("advgan", eps=EPS)
    assert attack.needs_preparation and not attack.prepared
    with pytest.raises(ValueError, match="must be fitted.*prepare"):
        attack(digits_model, x, y)


def test_runner_needs_prepare_data_for_generator_attacks(digits_model, digits_test):
    x, y = digits_test
    specs = {"GAP": attacks.get("gap", eps=EPS, **SMALL["gap"])}
    with pytest.raises(ValueError, match="prepare_data=None"):
        evaluation.evaluate(digits_model, [(x, y)], specs, pixel_range="[0,1]", progress=None)


def test_runner_fits_a_parsed_spec_then_attacks(digits_model, digits_test):
    x, y = digits_test
    specs = evaluation.parse_list("clean,gap(base_filters=8,num_res_blocks=1,loss=ce)",
                                  eps=51.0, pixel_range="[0,1]", seed=1)
    label = [k for k in specs if k != "clean"][0]
    attack = specs[label].attack
    assert isinstance(attack, generators.GAPAttack) and attack.loss == "ce" and attack.seed == 1
    result = evaluation.evaluate(digits_model, [(x[:30], y[:30]), (x[30:], y[30:])], specs,
                                 pixel_range="[0,1]", progress=None,
                                 prepare_data=_train_batches(count=200), prepare_steps=6)
    assert attack.prepared and len(attack.history) == 6  # the runner's default steps were used
    gap_result = result.results[label]
    assert gap_result.max_linf <= 51.0 / 255 + 1e-6 and gap_result.out_of_range == 0
    assert gap_result.accuracy <= result.results["clean"].accuracy + 1e-9
    # An attack that sets finetune_steps keeps it over the caller's default.
    own = attacks.get("gap", eps=EPS, finetune_steps=3, **SMALL["gap"])
    assert own.prepare(digits_model, _train_batches(count=100), steps=6)["steps"] == 3


def test_bad_parameters_name_the_value():
    with pytest.raises(ValueError, match="Received: loss='x'"):
        attacks.get("gap", eps=0.1, loss="x")
    with pytest.raises(ValueError, match="exceeds the width"):
        attacks.get("advgan", eps=8.0)
    with pytest.raises(ValueError, match="finetune_steps"):
        attacks.get("advgan", eps=0.1, finetune_steps=0)
    with pytest.raises(ValueError, match="multiples of 4"):
        attacks.get("gap", eps=0.1, finetune_steps=1).prepare(
            lambda t: tf.zeros([tf.shape(t)[0], 10]), [(np.zeros((2, 6, 6, 1), "float32"),
                                                        np.zeros(2, "int32"))])
    with pytest.raises(ValueError, match="no batch"):
        attacks.get("gap", eps=0.1).prepare(lambda t: t, [])


# ------------------------------------------------------------------------------------------------
# L2L-DA


@pytest.fixture(scope="module")
def l2lda_run(tmp_path_factory):
    """A run directory holding an (untrained) small L2L-DA generator, as a training run saves it."""
    from tfadv.models.unet_generator import build_generator

    run = tmp_path_factory.mktemp("l2lda_run")
    l2lda_generator.save_generator(build_generator(10, (8, 8, 1), base_filters=4),
                                   str(run / l2lda_generator.GENERATOR_DIR))
    return str(run)


def _l2lda(path, **kw):
    return attacks.get("l2lda", generator_path=path, eps=EPS, num_steps=3, seed=0, **kw)


def test_l2lda_fine_tuning_raises_the_loss_and_worst_of_ten_beats_one_z(l2lda_run, digits_model,
                                                                        digits_test):
    x, y = digits_test
    xt, yt = tf.constant(x), tf.constant(y)
    untrained = _l2lda(l2lda_run)
    fitted = _l2lda(l2lda_run, finetune_steps=40, learning_rate=1.0)
    summary = fitted.prepare(digits_model, _train_batches())
    assert summary["loss_last"] < summary["loss_first"]  # eq. 8 ascended (its negative descended)
    assert fitted.num_samples == 10 and fitted.lam == 0.02 and fitted.recursive
    # The same first z through the untrained and the fitted generator (eq. 5, T = 3).
    z0 = fitted.sample_z(len(y), 0)
    x_before = untrained.trajectory(digits_model, xt, yt, z0)[-1].numpy()
    x1 = fitted.trajectory(digits_model, xt, yt, z0)[-1].numpy()
    assert _ce(digits_model, x1, y) > _ce(digits_model, x_before, y) + 0.05
    assert _accuracy(digits_model, x1, y) <= _accuracy(digits_model, x_before, y)
    x10 = fitted(digits_model, x, y).numpy()
    for x_adv in (x_before, x1, x10):
        testing.assert_in_ball_and_range(x_adv, x, "linf", EPS, "[0,1]")
    # Worst of 10 z (the first of which is z0): pointwise never weaker than that one z.
    wrong1 = testing.predicted(digits_model, x1) != y
    wrong10 = testing.predicted(digits_model, x10) != y
    assert np.all(wrong10[wrong1]) and wrong10.sum() >= wrong1.sum()
    ce1 = losses.ce(logits=digits_model(x1), labels=y).numpy()
    ce10 = losses.ce(logits=digits_model(x10), labels=y).numpy()
    both_right = ~wrong1 & ~wrong10
    assert np.all(ce10[both_right] >= ce1[both_right] - 1e-5)
    assert _accuracy(digits_model, x10, y) < _accuracy(digits_model, x_before, y)


def test_l2lda_errors_name_the_path(tmp_path, l2lda_run, digits_model):
    with pytest.raises(ValueError, match="does not exist.*Received: generator_path="):
        attacks.get("l2lda", generator_path=str(tmp_path / "missing"), eps=EPS)
    with pytest.raises(ValueError, match="No L2L-DA generator"):
        attacks.get("l2lda", generator_path=str(tmp_path), eps=EPS)
    with pytest.raises(ValueError, match="generator_path"):
        attacks.get("l2lda", generator_path="", eps=EPS)
    wrong_shape = [(np.zeros((2, 12, 12, 1), "float32"), np.zeros(2, "int32"))]
    with pytest.raises(ValueError, match="built for images of shape"):
        _l2lda(l2lda_run, finetune_steps=1).prepare(lambda t: tf.zeros([tf.shape(t)[0], 10]),
                                                   wrong_shape)
