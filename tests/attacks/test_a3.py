"""A3 (Liu et al., CVPR 2022) and the autoattack-fast suite (issue 20)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks
from tfadv.attacks import a3 as a3_lib
from tfadv.evaluation import specs as specs_lib
from tests import testing
from tests.attacks.test_core import assert_in_ball_and_range

EPS = 0.1


@pytest.fixture(scope="module")
def digits_points():
    _, _, x, y = testing.digits_split(num_test=100)
    return x, y


def test_cosine_step_decay_from_eps_to_its_floor():
    short = a3_lib.MarginSteps(eps=0.2, step_size=0.2, num_steps=8, loss="cw")
    long = a3_lib.MarginSteps(eps=0.2, step_size=0.2, num_steps=15, loss="cw")
    assert float(short._step_size_at(0.2, 0)) == pytest.approx(0.2)
    assert float(short._step_size_at(0.2, 7)) == pytest.approx(0.02)  # 0.1·eps
    assert float(long._step_size_at(0.2, 14)) == pytest.approx(0.0002)  # 0.001·eps
    # Halfway along the cosine: floor + (1 - floor)/2.
    assert float(long._step_size_at(0.2, 7)) == pytest.approx(0.2 * (0.001 + 0.999 * 0.5))


def test_margin_loss_and_osd_keep_the_points_closest_to_the_boundary():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.9], [1.0, 1.0, 5.0]])
    np.testing.assert_allclose(a3_lib.margin_loss(logits, np.array([0, 1, 0])), [-2.0, -0.1, 4.0])
    attack = attacks.get("a3", eps=EPS, min_keep=2)
    best = np.array([-5.0, -0.1, -3.0, -0.2, -9.0])
    np.testing.assert_array_equal(attack._keep(np.arange(5), best, 0.03), [1, 3])  # min_keep
    np.testing.assert_array_equal(attack._keep(np.array([0, 2, 4]), best, 1.0), [0, 2, 4])
    np.testing.assert_array_equal(attack._keep(np.arange(5), best, 0.6), [1, 2, 3])  # ceil(3)
    # The finisher's choice: the closest ceil(fraction · n) points, at least one.
    np.testing.assert_array_equal(attack._keep(np.arange(5), best, 0.25, min_keep=1), [1, 3])
    np.testing.assert_array_equal(attack._keep(np.array([0, 4]), best, 0.25, min_keep=1), [0])


def test_the_finisher_is_apgd_t_on_at_most_k_minus_1_targets():
    attack = attacks.get("a3", eps=EPS, finisher_fraction=0.5, finisher_targets=3,
                         finisher_iter=20, seed=4)
    ten, three = attack._finisher(10), attack._finisher(3)
    assert (ten.targeted, ten.loss, ten.n_target_classes, ten.n_iter, ten.seed) == \
        (True, "dlr", 3, 20, 4)
    assert three.n_target_classes == 2 and attack._finisher(10) is ten  # one per target count
    assert attacks.get("a3", eps=EPS).finisher_fraction == 0.0  # A3 as published by default
    with pytest.raises(ValueError, match="Received"):
        attacks.get("a3", eps=EPS, finisher_fraction=1.5)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("a3", eps=EPS, finisher_targets=0)



def test_the_extra_stage_picks_the_points_whose_margin_closed_to_the_ratio():
    attack = attacks.get("a3", eps=EPS, finisher_fraction=0.5, finisher_extra_targets=1,
                         finisher_extra_ratio=0.1)
    clean = np.array([-4.0, -4.0, -0.5, -0.5, -2.0])
    best = np.array([-0.3, -0.5, -0.06, -0.04, -2.0])
    # m_best >= 0.1 * m_clean: -0.3 >= -0.4 yes; -0.5 no; -0.06 >= -0.05 no; -0.04 yes; -2 no.
    np.testing.assert_array_equal(attack._close(np.arange(5), best, clean), [0, 3])
    np.testing.assert_array_equal(attack._close(np.array([1, 3, 4]), best, clean), [3])
    # The ratio is free of the logits' scale: every margin times 10 picks the same points.
    np.testing.assert_array_equal(attack._close(np.arange(5), 10 * best, 10 * clean), [0, 3])


def test_the_extra_stage_is_apgd_t_over_the_targets_after_the_finishers():
    attack = attacks.get("a3", eps=EPS, finisher_fraction=0.5, finisher_targets=3,
                         finisher_extra_targets=2, finisher_iter=20, seed=4)
    extra = attack._extra(10)
    assert (extra.targeted, extra.loss, extra.target_offset, extra.n_target_classes,
            extra.n_iter, extra.seed) == (True, "dlr", 3, 2, 20, 4)
    assert attack._extra(5).n_target_classes == 1  # at most K - 1 targets in all
    assert attack._extra(4) is None and attack._extra(10) is extra
    cfg = attack.get_config()
    assert (cfg["finisher_extra_targets"], cfg["finisher_extra_ratio"]) == (2, 0.1)
    without = attacks.get("a3", eps=EPS, finisher_fraction=0.5, finisher_targets=3,
                          finisher_iter=20, seed=4)
    assert without.finisher_extra_targets == 0  # off by default
    # Its APGD-T's passes count in the bound: one more target run and one scoring forward.
    assert attack.model_calls_per_example() - without.model_calls_per_example() == \
        2 * (20 + 1) + 1 + 1
    for bad in ({"finisher_extra_targets": -1}, {"finisher_extra_ratio": 0.0},
                {"finisher_extra_ratio": 1.5}):
        with pytest.raises(ValueError, match="Received"):
            attacks.get("a3", eps=EPS, **bad)

def test_adi_directions_target_the_logit_ranks_in_turn():
    attack = attacks.get("a3", eps=EPS)
    rng = np.random.default_rng(0)
    logits = np.array([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0, -1.0, -2.0, -3.0, -4.0]])
    labels = np.array([1])
    w1 = attack._directions(1, logits, labels, (-1.0, 1.0), rng)
    assert w1.shape == (1, 10) and np.all(np.abs(w1) <= 1.0)
    for restart, target in [(2, 2), (3, 3), (6, 0), (10, 9), (11, 2)]:  # ranks 2..10, cycling
        w = attack._directions(restart, logits, labels, (-0.5, -0.2), rng)
        assert w[0, target] == pytest.approx(0.8 * 10 / 10)
        assert -0.5 <= w[0, 1] <= -0.2


def test_x_start_is_the_first_iterate_projected_into_ball_and_range(digits_points):
    x, y = digits_points
    x, y = x[:4], y[:4]
    pgd = attacks.get("pgd", eps=EPS, num_steps=0, random_start="none")
    out = pgd(testing.trained_digits_model(), x, y, x_start=x + 1.0).numpy()
    np.testing.assert_allclose(out, np.clip(x + EPS, 0.0, 1.0), atol=1e-6)


def test_a3_is_reproducible_within_the_ball_and_its_fooled_points_are_misclassified(
        digits_model, digits_points):
    x, y = digits_points
    attack = attacks.get("a3", eps=EPS, n_restarts=3, seed=5)
    first = attack(digits_model, x, y).numpy()
    stages = list(attack.last_run)
    again = attacks.get("a3", eps=EPS, n_restarts=3, seed=5)(digits_model, x, y).numpy()
    np.testing.assert_array_equal(first, again)
    assert_in_ball_and_range(first, x, "linf", EPS, "[0,1]")
    assert [s["stage"] for s in stages] == ["corner", "restart 0", "restart 1", "restart 2"]
    _assert_stages_account_for_the_robust_points(digits_model, x, y, first, stages)


def test_the_finisher_attacks_the_closest_quarter_of_what_the_restarts_left(
        digits_model, digits_points):
    x, y = digits_points
    attack = attacks.get("a3", eps=EPS, n_restarts=2, finisher_fraction=0.25, finisher_iter=10,
                         seed=5)
    out = attack(digits_model, x, y).numpy()
    stages = list(attack.last_run)
    assert [s["stage"] for s in stages] == ["corner", "restart 0", "restart 1", "finisher"]
    left = stages[-2]["attacked"] - stages[-2]["fooled"]
    assert left > 0  # the digits model keeps robust points at this eps (else nothing to finish)
    assert stages[-1]["attacked"] == math.ceil(0.25 * left)
    assert_in_ball_and_range(out, x, "linf", EPS, "[0,1]")
    _assert_stages_account_for_the_robust_points(digits_model, x, y, out, stages)



def test_the_extra_stage_attacks_the_points_within_the_ratio(digits_model, digits_points):
    # Ratio 1 takes every point the finisher attacked and left robust (m_best >= m_clean always).
    x, y = digits_points
    attack = attacks.get("a3", eps=EPS, n_restarts=2, finisher_fraction=0.5, finisher_iter=10,
                         finisher_extra_targets=1, finisher_extra_ratio=1.0, seed=5)
    out = attack(digits_model, x, y).numpy()
    stages = list(attack.last_run)
    assert [s["stage"] for s in stages][-2:] == ["finisher", "finisher extra"]
    assert stages[-1]["attacked"] == stages[-2]["attacked"] - stages[-2]["fooled"] > 0
    assert_in_ball_and_range(out, x, "linf", EPS, "[0,1]")
    _assert_stages_account_for_the_robust_points(digits_model, x, y, out, stages)
    # A tight ratio attacks only the points whose margin closed that far (here: fewer).
    attack = attacks.get("a3", eps=EPS, n_restarts=2, finisher_fraction=0.5, finisher_iter=10,
                         finisher_extra_targets=1, finisher_extra_ratio=0.05, seed=5)
    attack(digits_model, x, y)
    tight = [s for s in attack.last_run if s["stage"] == "finisher extra"]
    assert 0 < tight[0]["attacked"] < stages[-1]["attacked"]  # measured: 7 of 28

def _assert_stages_account_for_the_robust_points(digits_model, x, y, x_adv, stages):
    pred = testing.predicted(digits_model, x_adv)
    changed = np.any(x_adv != x, axis=(1, 2, 3))
    assert np.all(pred[changed] != y[changed])  # only successful points are returned moved
    clean_correct = int((testing.predicted(digits_model, x) == y).sum())
    assert stages[0]["attacked"] == clean_correct
    for before, after in zip(stages, stages[1:]):
        assert after["attacked"] <= before["attacked"] - before["fooled"]
    assert int((pred == y).sum()) == clean_correct - sum(s["fooled"] for s in stages)


def test_autoattack_fast_is_a_registered_suite_but_not_autoattacks_number():
    assert specs_lib.suite_attack_names("autoattack-fast") == ["noop", "autoattack_fast"]
    fast = attacks.get("autoattack_fast", eps=EPS, seed=3)
    assert fast.name == "autoattack_fast" and fast.version == "custom"
    assert [label for label, _ in fast.members] == ["a3", "square"]
    assert fast.members[0][1].seed == 3 and fast.members[1][1].n_queries == 1000
    member = fast.members[0][1]
    assert (member.n_restarts, member.finisher_fraction, member.finisher_targets,
            member.finisher_extra_targets, member.finisher_extra_ratio) == (7, 0.75, 3, 1, 0.1)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("a3", eps=EPS, alpha_low=0.0)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("a3", eps=EPS, norm="l1")


@pytest.mark.slow
def test_autoattack_fast_matches_autoattack_with_fewer_passes(digits_model, digits_points):
    """On the same points: autoattack-fast's robust set is no larger than AutoAttack's (measured:
    the same count on digits), with fewer forward and far fewer backward passes."""
    x, y = digits_points
    counts, robust = {}, {}
    for name in ("autoattack", "autoattack_fast"):
        attack = attacks.get(name, eps=EPS)
        counted = attack.counted(digits_model)
        before = counted.counter.totals()
        x_adv = attack(counted, x, y).numpy()
        after = counted.counter.totals()
        counts[name] = (after[0] - before[0], after[1] - before[1])
        assert_in_ball_and_range(x_adv, x, "linf", EPS, "[0,1]")
        robust[name] = testing.predicted(digits_model, x_adv) == y
    assert robust["autoattack_fast"].sum() <= robust["autoattack"].sum()
    assert counts["autoattack_fast"][1] * 5 <= counts["autoattack"][1]
    assert counts["autoattack_fast"][0] < counts["autoattack"][0]
