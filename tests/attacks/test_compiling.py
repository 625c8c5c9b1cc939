"""The one compile cache of the attacks (tfadv/attacks/compiling.py, ``Attack.compiled``): a
function is built and traced again only when the model (in its BatchNorm mode) or the static
arguments change. A Python counter inside the traced function counts the traces."""

import copy

import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks


class Counting:
    """``build(model_fn)`` for the cache: a ``tf.function`` whose Python body counts its traces."""

    def __init__(self):
        self.builds, self.traces = 0, 0

    def __call__(self, model_fn):
        self.builds += 1

        @tf.function(reduce_retracing=True)
        def run(x):
            self.traces += 1
            return model_fn(x)

        return run


@pytest.fixture(scope="module")
def models():
    return testing.tiny_cnn(seed=0), testing.tiny_cnn(seed=1)


def _x(batch=4):
    return tf.constant(testing.images_in_range("[0,1]", batch=batch, seed=0))


def test_traces_again_only_for_another_model_mode_or_static_arguments(models):
    first, second = models
    attack, counting = attacks.get("pgd", eps=0.1), Counting()

    def call(model_fn, static=()):
        return attack.compiled(model_fn, counting, static)(_x())

    call(first)
    call(attacks.ModelFn(first, False))  # another wrapper of the same model and mode
    call(first)
    assert (counting.builds, counting.traces) == (1, 1)
    call(second)
    assert (counting.builds, counting.traces) == (2, 2)
    call(attacks.ModelFn(first, True))  # the same model in training mode: another function
    assert (counting.builds, counting.traces) == (3, 3)
    call(first, static=(8, 8, 1))
    assert (counting.builds, counting.traces) == (4, 4)
    call(first)
    call(second)
    assert (counting.builds, counting.traces) == (4, 4)
    assert len(attack.compiled_functions()) == 4


def test_the_cache_keeps_the_last_models_and_belongs_to_one_object(models):
    first, second = models
    attack, counting = attacks.get("apgd_ce", eps=0.1), Counting()
    assert attack.compiled_cache_size == 1  # APGD keeps only the model it attacks last
    for model in (first, second, first):
        attack.compiled(model, counting)(_x())
    assert counting.builds == 3 and len(attack.compiled_functions()) == 1
    twin = copy.copy(attack)  # a shallow copy (Dynamic AT's with_stop_fn) starts its own cache
    assert twin.compiled_functions() == []
    twin.compiled(first, counting)(_x())
    assert counting.builds == 4
    attack.compiled(first, counting)(_x())
    assert counting.builds == 4
    attack.clear_compiled()
    attack.compiled(first, counting)(_x())
    assert counting.builds == 5


def test_lazy_entries_run_op_by_op_first(models):
    first, _ = models
    attack, counting = attacks.get("pgd", eps=0.1), Counting()
    assert attack.compiled(first, counting, lazy=True) is None
    assert attack.compiled(first, counting, lazy=True) is not None
    assert counting.builds == 1


@pytest.mark.parametrize("name,params", [
    ("pgd", dict(num_steps=2)), ("mifgsm", dict(num_steps=2)), ("deepfool", dict(max_iter=2)),
    ("cw_l2", dict(binary_search_steps=1, max_iterations=2, norm="l2")),
    ("apgd_ce", dict(n_iter=2, seed=0))])
def test_attacks_compile_once_per_model_through_fresh_wrappers(models, name, params):
    """Eager calls through a fresh ModelFn per call (as AdversarialModel.model_fn makes) reuse
    one function; another model gets its own."""
    first, second = models
    attack = attacks.get(name, eps=0.5 if params.get("norm") == "l2" else 0.1, **params)
    x = testing.images_in_range("[0,1]", batch=4, seed=2)
    y = np.arange(4, dtype="int32")
    for _ in range(3):
        attack(attacks.ModelFn(first, False), x, y)
    (function,) = attack.compiled_functions()
    assert function.experimental_get_tracing_count() == 1
    attack(second, x, y)
    attack(second, x, y)
    assert len(attack.compiled_functions()) == (1 if name == "apgd_ce" else 2)
    assert attack.compiled_functions()[-1].experimental_get_tracing_count() == 1
