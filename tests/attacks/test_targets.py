"""Tests for tfadv.attacks.targets: most-confusing, least-likely and random target classes."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv.attacks import targets as targets_lib

K = 10


def random_logits(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, K)).astype("float32") * 3, rng.integers(0, K, n).astype("int32")


def test_most_confusing_matches_numpy():
    logits, labels = random_logits(500)
    out = targets_lib.select("mc", logits=logits, labels=labels).numpy()
    masked = logits.copy()
    masked[np.arange(500), labels] = -np.inf
    np.testing.assert_array_equal(out, masked.argmax(-1))
    assert out.dtype == np.int32 and np.all(out != labels)


def test_most_confusing_hand_cases():
    logits = np.array([[5.0, 4.0, 1.0],     # true class is the max -> runner-up 1
                       [5.0, 4.0, 1.0],     # true class not the max -> the max 0
                       [-9.0, -1e6, -3.0]], np.float32)  # very negative logits still work
    out = targets_lib.select("most_confusing", logits=logits, labels=np.array([0, 2, 2])).numpy()
    np.testing.assert_array_equal(out, [1, 0, 0])


def test_least_likely_matches_numpy_and_skips_true_class():
    logits, labels = random_logits(500, seed=1)
    # Make the true class the smallest logit for a third of the examples.
    logits[::3][np.arange(len(logits[::3])), labels[::3]] = -100.0
    out = targets_lib.select("ll", logits=logits, labels=labels).numpy()
    masked = logits.copy()
    masked[np.arange(500), labels] = np.inf
    np.testing.assert_array_equal(out, masked.argmin(-1))
    assert np.all(out != labels)


def test_least_likely_hand_case():
    logits = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], np.float32)
    out = targets_lib.select("least_likely", logits=logits, labels=np.array([0, 1])).numpy()
    np.testing.assert_array_equal(out, [1, 0])


def test_random_never_true_and_covers_other_classes():
    n = 3000
    labels = np.repeat(np.arange(K), n // K).astype("int32")
    logits = np.zeros((n, K), np.float32)
    out = targets_lib.select("random", logits=logits, labels=labels, seed=3).numpy()
    assert out.shape == (n,) and np.all((out >= 0) & (out < K))
    assert np.all(out != labels)
    for c in range(K):  # every label sees all K-1 other classes, roughly uniformly
        drawn = out[labels == c]
        counts = np.bincount(drawn, minlength=K)
        assert counts[c] == 0
        others = np.delete(counts, c)
        assert np.all(others > 0)
        assert others.max() < 3 * others.min() + 10
    # Does not depend on the logits.
    assert len(np.unique(out)) == K


def test_random_graph_mode():
    labels = tf.constant(np.arange(64) % K, tf.int32)
    fn = tf.function(lambda z, y: targets_lib.select("random", logits=z, labels=y))
    out = fn(tf.zeros((64, K)), labels).numpy()
    assert np.all(out != labels.numpy())


def test_unknown_target_kind():
    with pytest.raises(ValueError, match="Received"):
        targets_lib.select("second_best", logits=np.zeros((1, K)), labels=np.array([0]))
