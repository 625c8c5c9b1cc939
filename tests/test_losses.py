"""Tests for tfadv.losses against hand/NumPy computations."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv import losses

LOGITS = np.array([[2.0, 1.0, 0.0],
                   [0.5, 3.0, -1.0],
                   [1.0, 1.0, 1.0],
                   [-2.0, 0.0, 4.0]], np.float32)


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


# ----------------------------------------------------------------------------------- ce


def test_ce_hand_value():
    # -log softmax([2, 1, 0])_0 = log(e^2 + e + 1) - 2
    out = losses.ce(logits=LOGITS[:1], labels=np.array([0])).numpy()
    expected = np.log(np.exp(2.0) + np.exp(1.0) + 1.0) - 2.0
    np.testing.assert_allclose(out, [expected], rtol=1e-6)
    np.testing.assert_allclose(out, [0.40760596], rtol=1e-6)


def test_ce_uniform_logits_is_log_k():
    out = losses.ce(logits=LOGITS[2:3], labels=np.array([1])).numpy()
    np.testing.assert_allclose(out, [np.log(3.0)], rtol=1e-6)


def test_ce_int_labels_per_example():
    labels = np.array([0, 2, 1, 2])
    out = losses.ce(logits=LOGITS, labels=labels).numpy()
    assert out.shape == (4,)
    expected = -np_log_softmax(LOGITS)[np.arange(4), labels]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_ce_soft_labels():
    soft = np.array([[0.5, 0.5, 0.0],
                     [0.1, 0.8, 0.1],
                     [0.0, 0.0, 1.0],
                     [0.2, 0.3, 0.5]], np.float32)
    out = losses.ce(logits=LOGITS, labels=soft).numpy()
    assert out.shape == (4,)
    expected = -(soft * np_log_softmax(LOGITS)).sum(-1)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_ce_one_hot_soft_labels_equal_int_labels():
    labels = np.array([2, 0, 1, 1])
    hard = losses.ce(logits=LOGITS, labels=labels).numpy()
    soft = losses.ce(logits=LOGITS, labels=np.eye(3, dtype=np.float32)[labels]).numpy()
    np.testing.assert_allclose(hard, soft, rtol=1e-6)


def test_ce_gradient_is_softmax_minus_onehot():
    logits = tf.constant(LOGITS)
    labels = np.array([0, 2, 1, 2])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        total = tf.reduce_sum(losses.ce(logits=logits, labels=labels))
    grad = tape.gradient(total, logits).numpy()
    expected = np.exp(np_log_softmax(LOGITS)) - np.eye(3)[labels]
    np.testing.assert_allclose(grad, expected, atol=1e-6)


# ----------------------------------------------------------------------------------- cw


def np_cw(z, y, kappa):
    z = np.asarray(z, np.float64)
    other = np.where(np.eye(z.shape[-1])[y] > 0, -np.inf, z).max(-1)
    return -np.maximum(z[np.arange(len(y)), y] - other + kappa, 0.0)


@pytest.mark.parametrize("labels,kappa,expected", [
    # true class is the max: -(2 - 1 + 50), -(3 - 0.5 + 50)
    ([0, 1], 50.0, [-51.0, -52.5]),
    # true class is not the max: -(0 - 2 + 50) = -48, -(-1 - 3 + 50) = -46
    ([2, 2], 50.0, [-48.0, -46.0]),
    # kappa 0: true max -> positive margin; not max -> relu clips to 0
    ([0, 2], 0.0, [-1.0, 0.0]),
    ([1, 0], 0.0, [0.0, 0.0]),
    ([1, 1], 1.5, [-0.5, -4.0]),
], ids=["true_max", "true_not_max", "kappa0_a", "kappa0_b", "kappa1.5"])
def test_cw_margin_hand_cases(labels, kappa, expected):
    out = losses.cw_margin(logits=LOGITS[:2], labels=np.array(labels), kappa=kappa).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_margin_hand_cases_in_float64():
    # z_y − max_{k≠y} z_k: 2 − 1, 3 − 0.5, a tie 1 − 1, and a wrong class 0 − 4.
    out = losses.margin(logits=LOGITS.astype(np.float64), labels=np.array([0, 1, 2, 1]))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out.numpy(), [1.0, 2.5, 0.0, -4.0])


def test_cw_margin_default_kappa_is_50_and_matches_numpy():
    labels = np.array([0, 1, 2, 0])
    out = losses.cw_margin(logits=LOGITS, labels=labels).numpy()
    np.testing.assert_allclose(out, np_cw(LOGITS, labels, 50.0), rtol=1e-6)
    # Ties: with all logits equal the margin to the best other is 0.
    np.testing.assert_allclose(out[2], -50.0)


def test_cw_margin_gradient_raises_best_other_and_lowers_true():
    logits = tf.constant(LOGITS[:1])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        out = tf.reduce_sum(losses.cw_margin(logits=logits, labels=np.array([0])))
    grad = tape.gradient(out, logits).numpy()
    np.testing.assert_allclose(grad, [[-1.0, 1.0, 0.0]])


def test_cw_target_margin_hand_case():
    # target 2 of [2, 1, 0]: -relu(max(2, 1) - 0 + kappa)
    z = LOGITS[:1]
    np.testing.assert_allclose(
        losses.cw_target_margin(logits=z, targets=np.array([2]), kappa=50.0).numpy(), [-52.0])
    np.testing.assert_allclose(
        losses.cw_target_margin(logits=z, targets=np.array([2]), kappa=0.0).numpy(), [-2.0])
    # Target already the max by 1: relu(1 - 2 + 0) = 0; with kappa 3: -(1 - 2 + 3) = -2
    np.testing.assert_allclose(
        losses.cw_target_margin(logits=z, targets=np.array([0]), kappa=0.0).numpy(), [0.0])
    np.testing.assert_allclose(
        losses.cw_target_margin(logits=z, targets=np.array([0]), kappa=3.0).numpy(), [-2.0])
    # Batch: rows [0.5, 3, -1] target 0 -> -(3 - 0.5 + 50); [-2, 0, 4] target 1 -> -(4 - 0 + 50)
    out = losses.cw_target_margin(logits=LOGITS[[1, 3]], targets=np.array([0, 1])).numpy()
    np.testing.assert_allclose(out, [-52.5, -54.0])


# ----------------------------------------------------------------------------------- kl


def np_kl(z_p, z_q):
    log_p, log_q = np_log_softmax(z_p), np_log_softmax(z_q)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1)


LOGITS_ADV = np.array([[0.0, 1.0, 2.0],
                       [0.5, 2.0, 0.0],
                       [3.0, 1.0, 1.0],
                       [-2.0, 0.5, 3.0]], np.float32)


def test_trades_kl_matches_numpy():
    out = losses.trades_kl(logits_clean=LOGITS, logits_adv=LOGITS_ADV).numpy()
    assert out.shape == (4,)
    np.testing.assert_allclose(out, np_kl(LOGITS, LOGITS_ADV), rtol=1e-5, atol=1e-7)


def test_trades_kl_hand_value():
    # p = softmax([0, 0]) = (1/2, 1/2), q = softmax([log 3, 0]) = (3/4, 1/4):
    # KL(p||q) = 1/2 log(2/3) + 1/2 log(2) = 1/2 log(4/3)
    p = np.array([[0.0, 0.0]], np.float32)
    q = np.array([[np.log(3.0), 0.0]], np.float32)
    np.testing.assert_allclose(losses.trades_kl(logits_clean=p, logits_adv=q).numpy(),
                               [0.5 * np.log(4.0 / 3.0)], rtol=1e-5)
    # KL(q||p) = 3/4 log(3/2) + 1/4 log(1/2)
    np.testing.assert_allclose(losses.trades_kl(logits_clean=q, logits_adv=p).numpy(),
                               [0.75 * np.log(1.5) + 0.25 * np.log(0.5)], rtol=1e-5)


def test_trades_kl_zero_for_equal_and_shifted_logits():
    np.testing.assert_allclose(losses.trades_kl(logits_clean=LOGITS, logits_adv=LOGITS).numpy(),
                               np.zeros(4), atol=1e-6)
    # softmax is shift invariant
    np.testing.assert_allclose(
        losses.trades_kl(logits_clean=LOGITS, logits_adv=LOGITS + 7.0).numpy(), np.zeros(4),
        atol=1e-5)


def test_trades_kl_is_asymmetric_and_nonnegative():
    pq = losses.trades_kl(logits_clean=LOGITS, logits_adv=LOGITS_ADV).numpy()
    qp = losses.trades_kl(logits_clean=LOGITS_ADV, logits_adv=LOGITS).numpy()
    np.testing.assert_allclose(qp, np_kl(LOGITS_ADV, LOGITS), rtol=1e-5, atol=1e-7)
    assert np.all(pq >= -1e-7) and np.all(qp >= -1e-7)
    assert np.max(np.abs(pq - qp)) > 1e-2


# ----------------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name,fn", [
    ("ce", losses.ce), ("cross_entropy", losses.ce), ("xent", losses.ce), ("CE", losses.ce),
    ("cw", losses.cw_margin), ("cw_margin", losses.cw_margin),
    ("trades_kl", losses.trades_kl), ("kl", losses.trades_kl),
])
def test_get_by_name(name, fn):
    assert losses.get(name) is fn


@pytest.mark.parametrize("name", ["mse", "hinge", "cw_target"])
def test_get_unknown(name):
    with pytest.raises(ValueError, match="Received") as e:
        losses.get(name)
    assert "ce" in str(e.value)


def test_functions_are_keyword_only():
    with pytest.raises(TypeError):
        losses.ce(LOGITS, np.array([0, 1, 2, 0]))
