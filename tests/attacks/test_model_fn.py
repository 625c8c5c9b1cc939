"""Pass counting (issue 20): CountedModelFn counts forward and input-gradient passes per example."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks
from tfadv.attacks import model_fn as model_fn_lib
from tests import testing

N = 6


@pytest.fixture(scope="module")
def model_and_batch():
    model = testing.tiny_cnn(with_bn=True, seed=3)
    x = np.random.default_rng(0).random((N, 8, 8, 1), dtype=np.float32)
    return model, x, testing.predicted(model, x)  # every point starts correctly classified


def _passes(attack, model_fn, x, y):
    before = model_fn.counter.totals()
    attack(model_fn, x, y)
    after = model_fn.counter.totals()
    return after[0] - before[0], after[1] - before[1]


@pytest.mark.parametrize("k", [1, 4])
def test_pgd_k_counts_k_forward_and_k_backward_per_point(model_and_batch, k):
    model, x, y = model_and_batch
    pgd = attacks.get("pgd", eps=0.1, num_steps=k)
    counted = pgd.counted(model)
    # First eager call: op by op, plus the clean forward that checks the labels against the logits.
    assert _passes(pgd, counted, x, y) == ((k + 1) * N, k * N)
    # Compiled from the second call on: k steps, each one forward and one backward per point.
    assert _passes(pgd, counted, x, y) == (k * N, k * N)
    assert _passes(pgd, pgd.counted(model), x[:2], y[:2]) == (k * 2, k * 2)


def test_fgsm_counts_one_forward_and_one_backward(model_and_batch):
    model, x, y = model_and_batch
    fgsm = attacks.get("fgsm", eps=0.1)
    counted = fgsm.counted(model)
    _passes(fgsm, counted, x, y)
    assert _passes(fgsm, counted, x, y) == (N, N)


def test_counting_inside_a_callers_tf_function_and_while_loop(model_and_batch):
    model, x, y = model_and_batch
    counter = model_fn_lib.PassCounter()
    counted = model_fn_lib.counted(model_fn_lib.ModelFn(model), counter)
    pgd = attacks.get("pgd", eps=0.1, num_steps=3)

    @tf.function
    def run(a, b):
        return pgd(counted, a, b)

    run(x, y)
    assert counter.totals() == (3 * N, 3 * N)
    run(x[:4], y[:4])  # a retrace for the new shape counts the same way
    assert counter.totals() == (3 * N + 3 * 4, 3 * N + 3 * 4)


def test_early_stopped_points_cost_no_passes(model_and_batch):
    model, x, y = model_and_batch
    # Labels no point has: every point is misclassified at the first step and frozen.
    wrong = (y + 1) % 10
    pgd = attacks.get("pgd", eps=0.1, num_steps=5, early_stop=True)
    counted = pgd.counted(model)
    _passes(pgd, counted, x, wrong)
    assert _passes(pgd, counted, x, wrong) == (N, N)  # one step, then the loop ends


def test_forward_only_and_jacobian_passes(model_and_batch):
    model, x, y = model_and_batch
    counted = attacks.get("fgsm", eps=0.1).counted(model)
    before = counted.counter.totals()
    counted(x)  # a forward without a gradient
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        total = tf.reduce_sum(counted(xt))
    tape.gradient(total, xt)
    after = counted.counter.totals()
    assert (after[0] - before[0], after[1] - before[1]) == (2 * N, N)
    # Untargeted FAB's batch_jacobian is counted by hand: K = 10 backward passes per point.
    fab = attacks.get("fab", eps=0.3, n_iter=1)
    f, b = _passes(fab, fab.counted(model), x, y)
    assert b % (10 * N) == 0 and b >= 10 * N and f >= 2 * N


def test_counters_are_per_model_and_keep_the_compile_cache(model_and_batch):
    model, x, y = model_and_batch
    other = testing.tiny_cnn(with_bn=True, seed=4)
    pgd = attacks.get("pgd", eps=0.1, num_steps=2)
    assert pgd.counted(model).counter is pgd.counted(model).counter
    assert pgd.counted(model).counter is not pgd.counted(other).counter
    assert model_fn_lib.model_key(pgd.counted(model)) == model_fn_lib.model_key(pgd.counted(model))
    assert model_fn_lib.model_key(pgd.counted(model)) != model_fn_lib.model_key(model)
    counted = pgd.counted(model)
    assert pgd.counted(counted) is counted  # counted once, however often it is wrapped
    pgd(counted, x, y)
    pgd(counted, x, y)
    functions = len(pgd.compiled_functions())
    pgd(pgd.counted(model), x, y)
    assert len(pgd.compiled_functions()) == functions
    # The inference-mode twin of a training-mode callable counts into the same counter.
    train = model_fn_lib.counted(model_fn_lib.ModelFn(model, True), counted.counter)
    twin = model_fn_lib.inference_fn(train)
    assert not twin.training and twin.counter is counted.counter


def test_autoattack_member_counts_sum_to_the_call(model_and_batch):
    model, x, y = model_and_batch
    budgets = {"apgd_ce": {"n_iter": 3}, "apgd_t": {"n_iter": 3, "n_target_classes": 2},
               "fab_t": {"n_iter": 2, "n_target_classes": 2}, "square": {"n_queries": 5}}
    aa = attacks.get("autoattack", eps=0.05, attack_params=budgets)
    counted = aa.counted(model)
    for _ in range(2):
        forward, backward = _passes(aa, counted, x, y)
        assert sum(r["forward"] for r in aa.last_run) == forward
        assert sum(r["backward"] for r in aa.last_run) == backward
    # Square only queries the model; APGD-CE's first run is 3 + 1 iterations with a gradient each.
    square = aa.last_run[-1]
    assert square["backward"] == 0
    if aa.last_run[0]["attacked"]:
        assert aa.last_run[0]["backward"] == 4 * aa.last_run[0]["attacked"]
    # Called on a bare model it counts with its own counter: the same record keys.
    aa(model, x, y)
    assert all({"forward", "backward"} <= set(r) for r in aa.last_run)
