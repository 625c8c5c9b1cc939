"""The one input-gradient pass of the gradient attacks (tfadv/attacks/gradients.py)."""

import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks
from tfadv.attacks import core
from tfadv.attacks import gradients
from tfadv.attacks.gradients import ce_objective


def reference(model, x, y):
    """logits, per-example CE and its input gradient, by hand for the whole batch at once."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        values = ce_objective(logits, tf.constant(y))
        total = tf.reduce_sum(values)
    return logits.numpy(), values.numpy(), tape.gradient(total, x).numpy()


def assert_same(result, expected):
    for got, want in zip(result, expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_pass_equals_a_hand_tape_in_one_model_call(tiny_model, batch):
    x = testing.images_in_range("[0,1]", batch=batch)
    y = np.arange(batch, dtype=np.int32) % 10
    wrapped = testing.EagerBatchSizes(tiny_model)
    result = gradients.input_gradient(core.inference_fn(wrapped), ce_objective, tf.constant(x),
                                      (tf.constant(y),))
    assert_same(result, reference(tiny_model, x, y))
    assert wrapped.sizes == [batch]  # the whole batch in one forward/backward


@pytest.mark.parametrize("batch", [3, 57])
def test_pass_with_batch_size_known_only_at_run_time(tiny_model, batch):
    """A shape-relaxed trace (and early-stop compaction) sees a dynamic batch."""

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1]), tf.TensorSpec([None], tf.int32)])
    def compiled(x, y):
        return gradients.input_gradient(core.inference_fn(tiny_model), ce_objective, x, (y,))

    x = testing.images_in_range("[0,1]", batch=batch)
    y = np.arange(batch, dtype=np.int32) % 10
    assert_same(compiled(tf.constant(x), tf.constant(y)), reference(tiny_model, x, y))


def test_none_args_are_passed_through(tiny_model):
    x = tf.constant(testing.images_in_range("[0,1]", batch=32))
    seen = []

    def objective(logits, extra):
        seen.append(extra)
        return tf.reduce_sum(tf.square(logits), axis=-1)

    logits, values, grad = gradients.input_gradient(core.inference_fn(tiny_model), objective, x,
                                                    (None,))
    assert seen == [None] and grad.shape == x.shape and values.shape == (32,)


def test_training_mode_attack_sees_the_whole_batch(tiny_model):
    x = testing.images_in_range("[0,1]", batch=48)
    y = np.zeros(48, np.int32)
    wrapped = testing.EagerBatchSizes(tiny_model)
    attack = attacks.get("pgd", eps=0.1, num_steps=2, training=True)
    attack(wrapped, x, y)
    assert set(wrapped.sizes) == {48}, wrapped.sizes  # BN batch statistics: one batch


@pytest.mark.parametrize("name", ["pgd", "mifgsm", "apgd_ce"])
def test_attacks_take_no_sub_batches(name):
    """The concurrent sub-batch pass is gone (issue 17 item 7): no argument, no config key."""
    attack = attacks.get(name, eps=0.1)
    assert "sub_batches" not in attack.get_config()
    with pytest.raises(ValueError, match="sub_batches.*Received"):
        attacks.get(name, eps=0.1, sub_batches=1)
