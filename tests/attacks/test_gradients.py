"""Per-example input gradients split into concurrent sub-batches (tfadv/attacks/gradients.py)."""

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


@pytest.mark.parametrize("batch,sub_batches,min_size", [(40, 3, 8), (40, 8, 16), (5, 4, 16),
                                                        (37, 4, 1), (1, 2, 1)])
def test_split_pass_equals_one_pass(tiny_model, batch, sub_batches, min_size):
    x = testing.images_in_range("[0,1]", batch=batch)
    y = np.arange(batch, dtype=np.int32) % 10
    expected = reference(tiny_model, x, y)
    wrapped = testing.EagerBatchSizes(tiny_model)
    result = gradients.input_gradient(core.inference_fn(wrapped), ce_objective, tf.constant(x),
                                      (tf.constant(y),), sub_batches=sub_batches,
                                      min_size=min_size)
    assert_same(result, expected)
    used = min(max(batch // min_size, 1), sub_batches)
    assert len(wrapped.sizes) == used and sum(wrapped.sizes) == batch, wrapped.sizes
    assert max(wrapped.sizes) - min(wrapped.sizes) <= 1  # near-equal sub-batches


@pytest.mark.parametrize("batch", [3, 16, 40, 57])
def test_split_with_batch_size_known_only_at_run_time(tiny_model, batch):
    """A shape-relaxed trace (and early-stop compaction) sees a dynamic batch: S traced branches,
    the unused ones skipped; the same values as one pass."""

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1]), tf.TensorSpec([None], tf.int32)])
    def split(x, y):
        return gradients.input_gradient(core.inference_fn(tiny_model), ce_objective, x, (y,),
                                        sub_batches=4, min_size=8)

    x = testing.images_in_range("[0,1]", batch=batch)
    y = np.arange(batch, dtype=np.int32) % 10
    assert_same(split(tf.constant(x), tf.constant(y)), reference(tiny_model, x, y))


def test_none_args_are_passed_through(tiny_model):
    x = tf.constant(testing.images_in_range("[0,1]", batch=32))
    seen = []

    def objective(logits, extra):
        seen.append(extra)
        return tf.reduce_sum(tf.square(logits), axis=-1)

    logits, values, grad = gradients.input_gradient(core.inference_fn(tiny_model), objective, x,
                                                    (None,), sub_batches=2, min_size=8)
    assert seen == [None, None] and grad.shape == x.shape and values.shape == (32,)


def test_training_mode_model_is_never_split(tiny_model):
    assert gradients.resolve_sub_batches(4, core.ModelFn(tiny_model, training=True)) == 1
    assert gradients.resolve_sub_batches(4, core.ModelFn(tiny_model, training=False)) == 4
    assert gradients.resolve_sub_batches(3, lambda x: x) == 3


def test_training_mode_attack_sees_the_whole_batch(tiny_model):
    x = testing.images_in_range("[0,1]", batch=48)
    y = np.zeros(48, np.int32)
    wrapped = testing.EagerBatchSizes(tiny_model)
    attack = attacks.get("pgd", eps=0.1, num_steps=2, training=True, sub_batches=3)
    attack(wrapped, x, y)
    assert set(wrapped.sizes) == {48}, wrapped.sizes  # BN batch statistics: one batch


def test_minimum_sub_batch_size_counts_examples_and_input_values():
    assert gradients.minimum_size((32, 32, 3)) == 16  # CIFAR: 16 images = the value floor
    assert gradients.minimum_size((224, 224, 3)) == 16  # large images: the example floor
    assert gradients.minimum_size((28, 28, 1)) == 63  # ceil(49152 / 784)
    assert gradients.minimum_size((8, 8, 1)) == 768
    assert gradients.minimum_size((None, None, 3)) == 16384  # unknown dims count as 1


def test_small_inputs_are_not_split_by_default(tiny_model):
    """A batch of 40 8x8 images is far below 2 x minimum_size: one pass, no copies."""
    wrapped = testing.EagerBatchSizes(tiny_model)
    x = tf.constant(testing.images_in_range("[0,1]", batch=40))
    gradients.input_gradient(core.inference_fn(wrapped), ce_objective, x,
                             (tf.zeros([40], tf.int32),), sub_batches=4)
    assert wrapped.sizes == [40]


def test_pgd_with_sub_batches_equals_pgd_without(digits_model, digits_test, monkeypatch):
    monkeypatch.setattr(gradients, "MIN_SUB_BATCH_VALUES", 0)  # let 8x8 digits be split
    x, y = digits_test
    kwargs = dict(eps=0.1, num_steps=5, random_start="none")
    wrapped = testing.EagerBatchSizes(digits_model)
    split_attack = attacks.get("pgd", sub_batches=3, **kwargs)
    x_split = split_attack(wrapped, x, y).numpy()  # first call op by op: sizes visible
    assert wrapped.sizes[1:4] == [20, 20, 20], wrapped.sizes  # after the validating forward
    x_one = attacks.get("pgd", sub_batches=1, **kwargs)(digits_model, x, y).numpy()
    np.testing.assert_allclose(x_split, x_one, atol=1e-6)
    # Compiled (second call) and MI-FGSM / APGD route through the same pass.
    np.testing.assert_allclose(split_attack(wrapped, x, y).numpy(), x_one, atol=1e-6)
    for name, extra in (("mifgsm", {}), ("apgd_ce", {"n_iter": 5, "seed": 0})):
        base = dict(eps=0.1, **extra) if name == "apgd_ce" else dict(kwargs)
        a = attacks.get(name, sub_batches=3, **base)(digits_model, x, y).numpy()
        b = attacks.get(name, sub_batches=1, **base)(digits_model, x, y).numpy()
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "4"])
def test_bad_sub_batches_are_refused(value):
    with pytest.raises(ValueError, match="sub_batches.*Received"):
        attacks.get("pgd", eps=0.1, sub_batches=value)


def test_auto_sub_batches(monkeypatch):
    monkeypatch.delenv(gradients.ENV_VAR, raising=False)
    real = tf.config.list_logical_devices
    monkeypatch.setattr(gradients, "_inter_op_threads", lambda: 2)
    assert gradients.auto_sub_batches() == 2 * gradients.SUB_BATCHES_PER_THREAD
    monkeypatch.setattr(gradients, "_inter_op_threads", lambda: 64)
    assert gradients.auto_sub_batches() == gradients.MAX_SUB_BATCHES
    monkeypatch.setattr(gradients, "_inter_op_threads", lambda: 1)
    assert gradients.auto_sub_batches() == 1  # one op at a time: nothing runs side by side
    monkeypatch.setattr(gradients, "_inter_op_threads", lambda: 2)
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["/GPU:0"] if kind == "GPU" else real(kind))
    assert gradients.auto_sub_batches() == 1  # an accelerator wants one large batch


def test_environment_variable_fixes_the_automatic_choice(monkeypatch):
    monkeypatch.setattr(gradients, "_inter_op_threads", lambda: 2)
    monkeypatch.setenv(gradients.ENV_VAR, "1")
    assert gradients.auto_sub_batches() == 1
    assert gradients.resolve_sub_batches(None, lambda x: x) == 1
    assert gradients.resolve_sub_batches(3, lambda x: x) == 3  # an explicit argument wins
    monkeypatch.setenv(gradients.ENV_VAR, "6")
    assert gradients.auto_sub_batches() == 6
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(gradients.ENV_VAR, bad)
        with pytest.raises(ValueError, match="TFADV_SUB_BATCHES.*Received"):
            gradients.auto_sub_batches()


def test_auto_sub_batches_are_shared_among_replicas(monkeypatch):
    monkeypatch.delenv(gradients.ENV_VAR, raising=False)
    monkeypatch.setattr(gradients, "_inter_op_threads", lambda: 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    seen = []
    strategy.run(lambda: seen.append(gradients.auto_sub_batches()))
    assert seen == [2 * gradients.SUB_BATCHES_PER_THREAD]  # one replica in sync

    class TwoReplicas:
        num_replicas_in_sync = 2

    monkeypatch.setattr(tf.distribute, "get_replica_context", lambda: TwoReplicas())
    assert gradients.auto_sub_batches() == gradients.SUB_BATCHES_PER_THREAD


def test_inter_op_threads_follow_the_configuration(monkeypatch):
    monkeypatch.setattr(tf.config.threading, "get_inter_op_parallelism_threads", lambda: 0)
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "3")
    assert gradients._inter_op_threads() == 3
    monkeypatch.setattr(tf.config.threading, "get_inter_op_parallelism_threads", lambda: 5)
    assert gradients._inter_op_threads() == 5
