"""Tests for the AutoAttack ensemble: member order, only-robust-points, pointwise worst case."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks
from tfadv.attacks.autoattack import STANDARD_ATTACKS, AutoAttack
from tfadv.attacks.core import Attack
from tests import testing
from tests.attacks.test_core import EPS, RANGES, assert_in_ball_and_range, batch_in_range


@pytest.fixture(scope="module")
def digits_test():
    _, _, x, y = testing.digits_split(num_test=100)
    return x, y


class Recording(Attack):
    """Wraps an attack and records the images/labels it is asked to attack."""

    def __init__(self, inner, name):
        self.inner, self.name, self.seen = inner, name, []
        self.graph_safe = inner.graph_safe

    def __call__(self, model_fn, x, y, **kwargs):
        self.seen.append((np.array(x), np.array(y)))
        return self.inner(model_fn, x, y, **kwargs)

    def model_calls_per_example(self):
        return self.inner.model_calls_per_example()


class CountingModel:
    """A logits callable that counts the examples it is evaluated on."""

    def __init__(self, model):
        self.model, self.examples = model, 0

    def __call__(self, x):
        self.examples += int(x.shape[0])
        return self.model(x, training=False)


def test_later_members_only_see_points_still_robust(digits_model, digits_test):
    x, y = digits_test
    eps = 0.1
    fgsm = Recording(attacks.get("fgsm", eps=eps), "fgsm")
    pgd = Recording(attacks.get("pgd", eps=eps, num_steps=10, random_start="none"), "pgd")
    ensemble = attacks.get("autoattack", eps=eps, attacks=[fgsm, pgd])
    x_adv = ensemble(digits_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, "linf", eps, "[0,1]")

    clean_correct = testing.predicted(digits_model, x) == y
    x_fgsm = attacks.get("fgsm", eps=eps)(digits_model, x, y).numpy()
    fgsm_fooled = testing.predicted(digits_model, x_fgsm) != y
    # FGSM attacked exactly the correctly classified points.
    (seen_x, seen_y), = fgsm.seen
    np.testing.assert_array_equal(seen_x, x[clean_correct])
    np.testing.assert_array_equal(seen_y, y[clean_correct])
    # PGD attacked exactly the points FGSM left correctly classified.
    still_robust = clean_correct & ~fgsm_fooled
    (seen_x, _), = pgd.seen
    np.testing.assert_array_equal(seen_x, x[still_robust])
    assert 0 < still_robust.sum() < clean_correct.sum()
    # First success wins: FGSM's image where FGSM fooled; clean where misclassified.
    np.testing.assert_allclose(x_adv[clean_correct & fgsm_fooled],
                               x_fgsm[clean_correct & fgsm_fooled], atol=1e-6)
    np.testing.assert_array_equal(x_adv[~clean_correct], x[~clean_correct])
    # Pointwise worst case: fooled iff misclassified, or FGSM fooled, or PGD fooled the rest.
    x_pgd = attacks.get("pgd", eps=eps, num_steps=10, random_start="none")(
        digits_model, x[still_robust], y[still_robust]).numpy()
    expected_correct = still_robust.copy()
    expected_correct[still_robust] = testing.predicted(digits_model, x_pgd) == y[still_robust]
    np.testing.assert_array_equal(testing.predicted(digits_model, x_adv) == y, expected_correct)
    assert expected_correct.mean() <= (~fgsm_fooled & clean_correct).mean()
    assert [r["attacked"] for r in ensemble.last_run] == [clean_correct.sum(), still_robust.sum()]
    assert ensemble.last_run[0]["fooled"] == (clean_correct & fgsm_fooled).sum()


def test_counted_model_calls_skip_fooled_points(digits_model, digits_test):
    x, y = digits_test
    eps = 0.1
    counter = CountingModel(digits_model)
    ensemble = attacks.get("autoattack", eps=eps, attacks=[("fgsm", {}), ("fgsm", {})])
    ensemble(counter, x, y)
    first, second = ensemble.last_run
    assert second["fooled"] == 0 and second["attacked"] == first["attacked"] - first["fooled"]
    # What FGSM alone costs per example, measured with the same wrapper.
    alone = CountingModel(digits_model)
    attacks.get("fgsm", eps=eps)(alone, x[:5], y[:5])
    per_example = alone.examples / 5
    # A shape check (1 example) + the clean pass (B) + per member: the attack on the points it is
    # given, then one scoring pass on them. Fooled points are never evaluated again.
    expected = 1 + len(x) + (per_example + 1) * (first["attacked"] + second["attacked"])
    assert counter.examples == expected


def test_nothing_left_to_attack(digits_model, digits_test):
    x, y = digits_test
    wrong = (testing.predicted(digits_model, x) + 1) % 10  # every point misclassified w.r.t. these labels
    member = Recording(attacks.get("fgsm", eps=0.1), "fgsm")
    x_adv = attacks.get("autoattack", eps=0.1, attacks=[member])(digits_model, x, wrong)
    np.testing.assert_array_equal(x_adv.numpy(), x)
    assert member.seen == []


class OutOfBall(Attack):
    name = "out_of_ball"

    def __call__(self, model_fn, x, y, **kwargs):
        return x + 5.0

    def model_calls_per_example(self):
        return 0


@pytest.mark.parametrize("pixel_range", RANGES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_stays_in_ball_and_range(tiny_model, norm, pixel_range):
    x, y = batch_in_range(pixel_range, seed=1)
    y = testing.predicted(tiny_model, x).astype("int32")
    eps = EPS[(norm, pixel_range)]
    ensemble = attacks.get("autoattack", eps=eps, norm=norm, pixel_range=pixel_range,
                           attacks=[OutOfBall(), ("pgd", {"num_steps": 3}),
                                    ("deepfool", {"max_iter": 3})])
    x_adv = ensemble(tiny_model, x, y)
    assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)


def test_graph_mode_matches_eager(digits_model, digits_test):
    x, y = digits_test
    ensemble = attacks.get("autoattack", eps=0.1, attacks=["fgsm", ("pgd", {"random_start": "none"})])
    eager = ensemble(digits_model, x, y).numpy()
    graph = tf.function(lambda a, b: ensemble(digits_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(graph.numpy(), eager, atol=1e-6)


@pytest.mark.parametrize("params", [
    dict(version="plus"), dict(version="standard", attacks=["fgsm"]), dict(version="custom"),
    dict(attacks=[]), dict(attacks=[3]), dict(attacks=["autoattack"]), dict(attacks=["nope"]),
    dict(attacks=["fgsm"], attack_params={"pgd": {"num_steps": 2}}), dict(norm="l1"),
    dict(eps=-0.1), dict(eps=2.0), dict(attacks=[("pgd", {"bogus": 1})]), dict(attacks="fgsm"),
    dict(attacks=["fgsm"], attack_params={"fgsm": 3}),
])
def test_errors(params):
    kwargs = dict(eps=0.1)
    kwargs.update(params)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("autoattack", **kwargs)


def test_call_errors(tiny_model):
    x, y = batch_in_range("[0,1]", seed=2)
    ensemble = attacks.get("autoattack", eps=0.1, attacks=["fgsm"])
    with pytest.raises(ValueError, match="Received"):
        ensemble(tiny_model, x, y[:2])
    with pytest.raises(ValueError, match="Received"):
        ensemble(tiny_model, x + 2.0, y)


# ------------------------------------------------------------------------- standard version

TINY_BUDGETS = {"apgd_ce": {"n_iter": 5}, "apgd_t": {"n_iter": 5, "n_target_classes": 2},
                "fab_t": {"n_iter": 5, "n_target_classes": 2}, "square": {"n_queries": 20}}


def test_standard_version_members():
    ensemble = attacks.get("autoattack", eps=0.1, attack_params=TINY_BUDGETS, seed=3)
    assert isinstance(ensemble, AutoAttack) and ensemble.version == "standard"
    assert [label for label, _ in ensemble.members] == list(STANDARD_ATTACKS)
    configs = ensemble.get_config()["attacks"]
    assert all(c["eps"] == 0.1 and c["seed"] == 3 for c in configs)
    # The paper's budgets are the members' defaults.
    full = attacks.get("autoattack", eps=0.1).get_config()["attacks"]
    assert (full[0]["n_iter"], full[1]["n_target_classes"], full[3]["n_queries"]) == (100, 9, 5000)


def test_standard_version_on_trained_digits(digits_model, digits_test):
    x, y = digits_test
    x, y = x[:24], y[:24]
    eps = 0.1
    ensemble = attacks.get("autoattack", eps=eps, attack_params=TINY_BUDGETS)
    x_adv = ensemble(digits_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, "linf", eps, "[0,1]")
    attacked = [r["attacked"] for r in ensemble.last_run]
    fooled = [r["fooled"] for r in ensemble.last_run]
    assert [r["attack"] for r in ensemble.last_run] == list(STANDARD_ATTACKS)
    for i in range(1, len(attacked)):
        assert attacked[i] == attacked[i - 1] - fooled[i - 1]
    robust = testing.predicted(digits_model, x_adv) == y
    assert robust.sum() == attacked[-1] - fooled[-1]
    apgd = attacks.get("apgd_ce", eps=eps, n_iter=5, seed=0)(digits_model, x, y).numpy()
    assert robust.mean() <= np.mean(testing.predicted(digits_model, apgd) == y) + 1e-9
