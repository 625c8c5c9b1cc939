"""Shared helpers for tfadv's tests (in the spirit of keras-hub's TestCase)."""

import os

import numpy as np
import tensorflow as tf
import keras

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "mnist_subset.npz")


class TestCase(tf.test.TestCase):
    """tf.test.TestCase with a fixed seed per test."""

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(1234)

    def random_images(self, shape, low=0.0, high=1.0, seed=0):
        rng = np.random.default_rng(seed)
        return rng.uniform(low, high, size=shape).astype("float32")
