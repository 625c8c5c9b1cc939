"""The contract every registered attack keeps, one module over ``tfadv.attacks.names()``.

For each attack (one name per factory; aliases share it) with a small budget from ``BUDGETS``:
the output lies in the eps ball (Linf and L2 where the attack supports it) and in the pixel range
for ``[0,1]`` and ``[-1,1]``, is float32 of the input's shape, equals the eager result when traced
into a ``tf.function`` with an open batch dimension (seeded: the same seed gives the same output),
and a batch of one and an empty batch work. An attack registered later is covered automatically and
fails here until it has a budget entry.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks
from tfadv.attacks.registry import ATTACKS

RANGES = ("[0,1]", "[-1,1]")
EPS = {"linf": 0.1, "l2": 0.5}  # in [0,1] units; [-1,1] doubles them
BOTH = ("linf", "l2")
GENERATOR = dict(finetune_steps=1, seed=0)

# name -> (norms, small parameters (besides eps, norm, pixel_range)). Norm None: the attack has no
# norm parameter (its ball is Linf); "seed" where the attack draws random numbers.
BUDGETS = {
    "noop": ((), {}),
    "fgsm": (BOTH, {}),
    # The IterativeAttack family starts from x here: its random start is not reproducible per call
    # (see test_iterative_attack_random_start_same_seed_same_output below).
    "pgd": (BOTH, dict(num_steps=3, random_start="none")),
    "mifgsm": (BOTH, dict(num_steps=2)),
    "cw_linf": ((None,), dict(num_steps=2, random_start="none")),
    "deepfool": (BOTH, dict(max_iter=3)),
    "cw_l2": (("l2",), dict(binary_search_steps=1, max_iterations=3)),
    "apgd_ce": (BOTH, dict(n_iter=3, seed=0)),
    "apgd_dlr": (BOTH, dict(n_iter=3, seed=0)),
    "apgd_t": (BOTH, dict(n_iter=3, n_target_classes=3, seed=0)),
    "fab": (BOTH, dict(n_iter=3, seed=0)),
    "fab_t": (BOTH, dict(n_iter=3, n_target_classes=2, seed=0)),
    "square": (BOTH, dict(n_queries=5, seed=0)),
    "autoattack": (BOTH, dict(seed=0, attacks=[("apgd_ce", {"n_iter": 2}),
                                               ("apgd_t", {"n_iter": 2, "n_target_classes": 2})])),
    "a3": (BOTH, dict(seed=0, n_restarts=3, first_steps=2, adi_steps=2, steps=2)),
    "autoattack_fast": (BOTH, dict(seed=0, attack_params={
        "a3": {"n_restarts": 2, "first_steps": 2, "adi_steps": 1, "steps": 2},
        "square": {"n_queries": 5}})),
    "transfer": ((None,), dict(inner="apgd_t", n_iter=3, n_target_classes=3, seed=0)),
    "advgan": ((None,), dict(GENERATOR, base_filters=4, num_res_blocks=1)),
    "gap": ((None,), dict(GENERATOR, base_filters=8, num_res_blocks=1)),
    "l2lda": ((None,), dict(GENERATOR, num_steps=2, num_samples=2)),
}


def _one_name_per_factory():
    by_factory = {}
    for name in attacks.names():
        by_factory.setdefault(ATTACKS.lookup(name), []).append(name)
    return sorted(next((n for n in names if n in BUDGETS), names[0])
                  for names in by_factory.values())


NAMES = _one_name_per_factory()


def _cases():
    """(name, norm, pixel_range) for every attack, norm and range."""
    out = []
    for name in NAMES:
        norms = BUDGETS[name][0] if name in BUDGETS else ("linf",)
        for norm in norms or (None,):
            out += [(name, norm, pixel_range) for pixel_range in RANGES]
    return out


def _eps(norm, pixel_range):
    scale = 2.0 if pixel_range == "[-1,1]" else 1.0
    return EPS[norm or "linf"] * scale


def _batch(pixel_range, n=6):
    x = testing.images_in_range(pixel_range, batch=n, seed=1)
    y = np.random.default_rng(1).integers(0, 10, size=n).astype("int32")
    return x, y


@pytest.fixture(scope="module")
def build(tiny_model, tmp_path_factory):
    """``build(name, norm, pixel_range) -> attack``, built once per case (generators prepared on
    the tiny model, the transfer attack's source a second tiny model)."""
    from tfadv.models.unet_generator import build_generator
    from tfadv.attacks import l2lda_generator

    run = tmp_path_factory.mktemp("l2lda_contract")
    l2lda_generator.save_generator(build_generator(10, (8, 8, 1), base_filters=4),
                                   str(run / l2lda_generator.GENERATOR_DIR))
    source = testing.tiny_cnn(seed=1, name="source")
    built = {}

    def make(name, norm, pixel_range):
        assert name in BUDGETS, (f"No small budget for the registered attack {name!r}: add it to "
                                 "BUDGETS in tests/attacks/test_contract.py.")
        key = (name, norm, pixel_range)
        if key not in built:
            params = dict(BUDGETS[name][1])
            if name != "noop":  # the identity takes no parameters
                params.update(eps=_eps(norm, pixel_range), pixel_range=pixel_range)
            if norm is not None:
                params["norm"] = norm
            if name == "transfer":
                params["source"] = source
            if name == "l2lda":
                params["generator_path"] = str(run)
            attack = attacks.get(name, **params)
            if getattr(attack, "needs_preparation", False):
                attack.prepare(tiny_model, [_batch(pixel_range, n=8)])
            built[key] = attack
        return built[key]

    return make


def _check(out, x, norm, pixel_range, name):
    if name == "noop":
        np.testing.assert_array_equal(np.asarray(out), x)
    testing.assert_in_ball_and_range(out, x, norm or "linf", _eps(norm, pixel_range), pixel_range)


def test_every_budget_is_a_registered_attack():
    assert sorted(set(BUDGETS) - set(attacks.names())) == []


@pytest.mark.parametrize("name, norm, pixel_range", _cases())
def test_output_in_ball_and_range_float32_of_the_input_shape(build, tiny_model, name, norm,
                                                              pixel_range):
    attack = build(name, norm, pixel_range)
    x, y = _batch(pixel_range)
    _check(attack(tiny_model, x, y), x, norm, pixel_range, name)
    _check(attack(tiny_model, x[:1], y[:1]), x[:1], norm, pixel_range, name)  # a batch of one


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_returns_an_empty_batch(build, tiny_model, name):
    norm = (BUDGETS.get(name, (("linf",),))[0] or (None,))[0]
    attack = build(name, norm, "[0,1]")
    x, y = _batch("[0,1]")
    out = attack(tiny_model, x[:0], y[:0])
    assert tuple(out.shape) == (0, 8, 8, 1) and out.dtype == tf.float32


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_and_graph_equals_eager(build, tiny_model, name):
    norm = (BUDGETS.get(name, (("linf",),))[0] or (None,))[0]
    attack = build(name, norm, "[0,1]")
    x, y = _batch("[0,1]")
    eager = np.asarray(attack(tiny_model, x, y))
    # Equal up to float32 rounding (oneDNN may sum in another order from one call to the next).
    for _ in range(2):
        np.testing.assert_allclose(np.asarray(attack(tiny_model, x, y)), eager, rtol=0, atol=1e-6)
    if not attack.graph_safe:
        return  # host-side control flow (FAB, Square, AutoAttack with them): eager by design
    graph = tf.function(lambda a, b: attack(tiny_model, a, b), input_signature=[
        tf.TensorSpec([None, 8, 8, 1], tf.float32), tf.TensorSpec([None], tf.int32)])
    np.testing.assert_allclose(np.asarray(graph(x, y)), eager, rtol=0, atol=1e-6)


@pytest.mark.xfail(strict=True, reason="IterativeAttack draws its random start with a stateful, "
                   "op-seeded tf.random.uniform (tfadv/attacks/steps.py): the seed fixes the "
                   "sequence of draws, not the draw of each call, unlike APGD/Square (stateless).")
def test_iterative_attack_random_start_same_seed_same_output(tiny_model):
    attack = attacks.get("pgd", eps=0.1, num_steps=2, random_start="uniform", seed=0)
    x, y = _batch("[0,1]")
    first = np.asarray(attack(tiny_model, x, y))
    for _ in range(3):
        np.testing.assert_allclose(np.asarray(attack(tiny_model, x, y)), first, rtol=0, atol=1e-6)


# Budgets above whose calls are a function of the batch alone (reproducible_per_call: what a
# multi-worker evaluation needs). Not claimed: the generator attacks (fitted to the model first)
# and the AutoAttack budget, whose custom members are unseeded.
UNCLAIMED = {"advgan", "gap", "l2lda", "autoattack"}


@pytest.mark.parametrize("name", NAMES)
def test_reproducible_per_call_is_claimed_for_the_budgets_that_repeat(build, name):
    norm = (BUDGETS.get(name, (("linf",),))[0] or (None,))[0]
    assert build(name, norm, "[0,1]").reproducible_per_call() == (name not in UNCLAIMED)


def test_random_starts_random_targets_and_unseeded_attacks_claim_no_reproducible_call():
    def claims(name, **params):
        return attacks.get(name, eps=0.1, **params).reproducible_per_call()

    assert claims("pgd", num_steps=2, random_start="none", seed=0)
    assert not claims("pgd", num_steps=2, random_start="uniform", seed=0)  # the xfail above
    assert not claims("pgd", num_steps=2, random_start="none", target="random", seed=0)
    for name in ("apgd_ce", "fab_t", "square", "a3", "autoattack_fast"):
        assert claims(name, seed=0) and not claims(name, seed=None), name
    assert claims("autoattack", seed=0) and not claims("autoattack", seed=None)
    assert not claims("autoattack", seed=0, attacks=["apgd_ce", ("pgd", {"num_steps": 2})])
