"""The attack loop is compiled once per shape: no retracing across batches, calls or epochs.

A counting layer inside the network records every *graph* call of the model (its Python ``call``
runs only while a function is being traced; executed graphs never run it), so an unchanged count
across calls proves that nothing was retraced.
"""

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfadv import attacks
from tfadv import defenses
from tfadv import evaluation


class TraceCounter(keras.layers.Layer):
    """Identity that counts its symbolic (tracing) calls."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.traces = 0

    def call(self, inputs):
        if not tf.executing_eagerly():
            self.traces += 1
        return inputs


def counting_model(seed=0):
    keras.utils.set_random_seed(seed)
    counter = TraceCounter(name="trace_counter")
    inputs = keras.Input((8, 8, 1))
    h = counter(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(h)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(inputs, outputs)
    counter.traces = 0  # building the functional model traced it once
    return model, counter


def batches(n, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(0, 1, (batch, 8, 8, 1)).astype("float32"),
             rng.integers(0, 10, batch).astype("int32")) for _ in range(n)]


def test_direct_calls_trace_once_per_model_and_shape():
    model, counter = counting_model()
    attack = attacks.get("pgd", eps=0.1, step_size=0.03, num_steps=3)
    data = batches(4)
    attack(model, *data[0])  # first call against this model: op by op, nothing traced
    assert counter.traces == 0
    attack(model, *data[1])
    traced = counter.traces
    assert traced > 0
    for x, y in data[2:]:
        # a fresh ModelFn wrapper per call (as AdversarialModel.model_fn makes) reuses the trace
        x_adv = attack(attacks.ModelFn(model, False), x, y).numpy()
        assert np.abs(x_adv - x).max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert counter.traces == traced
    # Another batch size: at most one shape-relaxed trace, then none for further sizes.
    attack(model, *batches(1, batch=7)[0])
    after_relax = counter.traces
    assert after_relax <= 2 * traced
    attack(model, *batches(1, batch=5)[0])
    attack(model, *batches(1, batch=16, seed=3)[0])
    assert counter.traces == after_relax


def test_per_call_numbers_do_not_retrace():
    model, counter = counting_model()
    attack = attacks.get("pgd", eps=0.1, step_size=0.03, num_steps=4)
    x, y = batches(1)[0]
    attack(model, x, y, eps_scale=0.5, num_steps=2)
    attack(model, x, y, eps_scale=0.5, num_steps=2)
    traced = counter.traces
    for scale, k in ((0.25, 1), (1.0, 4), (0.75, 3)):
        x_adv = attack(model, x, y, eps_scale=scale, num_steps=k).numpy()
        assert np.abs(x_adv - x).max() <= 0.1 * scale + 1e-6
    assert counter.traces == traced


def test_compiled_call_matches_the_op_by_op_call():
    # Deterministic attack (no random start): the first, op-by-op call and the compiled later
    # calls compute the same iterates.
    model, _ = counting_model(seed=1)
    x, y = batches(1, seed=5)[0]
    attack = attacks.get("pgd", eps=0.1, step_size=0.02, num_steps=5, random_start="none",
                         target="mc")
    eager = attack(model, x, y).numpy()
    compiled = attack(model, x, y).numpy()
    assert np.abs(eager - x).max() > 0.05
    np.testing.assert_allclose(compiled, eager, atol=1e-6)


def test_copied_attack_does_not_reuse_the_original_trace():
    import copy

    model, _ = counting_model(seed=2)
    x, y = batches(1, seed=6)[0]
    attack = attacks.get("pgd", eps=0.1, step_size=0.05, num_steps=3, random_start="none")
    attack(model, x, y)
    attack(model, x, y)
    frozen = copy.copy(attack)
    frozen.eps = 0.0  # a copy configured differently must trace its own function
    frozen.step_size = 0.0
    np.testing.assert_array_equal(frozen(model, x, y).numpy(), x)
    np.testing.assert_array_equal(frozen(model, x, y).numpy(), x)


def test_evaluation_traces_once_for_all_batches():
    counts = []
    for n in (1, 3):
        model, counter = counting_model()
        pgd = attacks.get("pgd", eps=0.1, step_size=0.03, num_steps=3)
        data = batches(n) + [batches(1, batch=5, seed=9)[0]]  # and a smaller last batch
        result = evaluation.evaluate(model, data, {"pgd": pgd}, pixel_range="[0,1]",
                                     progress=None)
        assert result.results["pgd"].correct.size == 16 * n + 5
        counts.append(counter.traces)
    assert counts[0] > 0 and counts[0] == counts[1]


def test_fit_and_evaluate_do_not_retrace_across_epochs():
    model, counter = counting_model()
    pgd = attacks.get("pgd", eps=0.1, step_size=0.03, num_steps=3)
    madry = defenses.get("madry", model, attack=pgd, weight_decay=0.0)
    madry.compile(optimizer=keras.optimizers.SGD(0.01))
    x = np.concatenate([b[0] for b in batches(3)])
    y = np.concatenate([b[1] for b in batches(3)])
    madry.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after_one = counter.traces
    assert after_one > 0
    madry.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    assert counter.traces == after_one
    madry.evaluate(x, y, batch_size=16, verbose=0)
    after_eval = counter.traces
    madry.evaluate(x, y, batch_size=16, verbose=0)
    assert counter.traces == after_eval


@pytest.mark.parametrize("restarts", [1, 2])
def test_stop_fn_attacks_still_run_op_by_op_when_called_eagerly(restarts):
    # A stop criterion may be any Python callable: eager calls keep running it eagerly.
    model, counter = counting_model()
    seen = []

    def stop_none(state):
        seen.append(tf.executing_eagerly())
        return tf.zeros(tf.shape(state.labels), tf.bool)

    attack = attacks.get("pgd", eps=0.1, step_size=0.03, num_steps=2, stop_fn=stop_none,
                         restarts=restarts)
    x, y = batches(1)[0]
    attack(model, x, y)
    attack(model, x, y)
    assert seen and all(seen) and counter.traces == 0


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_eager_calls_do_no_forward_pass_outside_the_compiled_attack(name):
    """The host-side label check needs the class count: a functional model states it, any other
    model is probed once on one image and remembered, so calls 2, 3, ... run no eager forward."""
    from tests import testing

    model = testing.EagerBatchSizes(testing.tiny_cnn(seed=0))
    attack = attacks.get(name, eps=0.1, **({"num_steps": 2} if name == "pgd" else {}))
    x = np.random.default_rng(0).uniform(size=(6, 8, 8, 1)).astype("float32")
    y = np.arange(6, dtype="int32")
    attack(model, x, y)  # op by op: its forwards are the attack itself
    model.sizes.clear()
    for _ in range(4):
        attack(model, x, y)
    assert model.sizes == [1]  # one probe, then none
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 10\)"):
        attack(model, x, np.full(6, 10, "int32"))  # the remembered count still checks labels
    functional, counter = counting_model()
    traces = counter.traces
    assert attacks.core.output_classes(functional, x) == 10
    assert counter.traces == traces  # read from the model's outputs: not called
