"""Fixtures shared by the attack tests."""

import pytest

from tests import testing


@pytest.fixture(scope="module")
def tiny_model():
    """An untrained tiny CNN with BatchNorm (inference mode: fixed statistics)."""
    return testing.tiny_cnn(seed=0)


@pytest.fixture(scope="module")
def digits_model():
    """A tiny CNN naturally trained on digits (cached per process; never train it further)."""
    return testing.trained_digits_model()


@pytest.fixture(scope="module")
def digits_test():
    """The first 60 digits test images and labels (the autoattack tests take 100)."""
    _, _, x, y = testing.digits_split(num_test=60)
    return x, y
