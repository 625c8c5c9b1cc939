"""Every architecture saves as a .keras file that Keras' own loader reads back in safe mode (its
custom layers registered serializable), giving the same logits: what LOGDIR/model.keras relies on."""

import keras
import numpy as np
import pytest

from tfadv import models

CASES = [
    ("digits_cnn", (8, 8, 1), {}),
    ("lenet5", (28, 28, 1), {}),
    ("resnet20_cifar", (32, 32, 3), {}),
    ("madry_wrn", (32, 32, 3), {"depth": 10, "widen_factor": 1, "per_image_standardization": True}),
    ("trades_wrn", (32, 32, 3), {"depth": 10, "widen_factor": 1}),
]


@pytest.mark.parametrize("name, shape, kwargs", CASES, ids=[c[0] for c in CASES])
def test_a_network_round_trips_through_a_keras_file(name, shape, kwargs, tmp_path):
    network = models.build(name, num_classes=10, input_shape=shape, **kwargs)
    path = str(tmp_path / f"{name}.keras")
    network.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 1, (2, *shape)).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                  network(x, training=False).numpy())


@pytest.mark.slow
@pytest.mark.parametrize("name", models.names())
def test_every_registered_architecture_round_trips_through_a_keras_file(name, tmp_path):
    shape = ((64, 64, 3) if "imagenet" in name else
             (28, 28, 1) if name in ("fosc_mnist_cnn", "madry_mnist_cnn", "lenet5", "digits_cnn",
                                     "trades_smallcnn", "wong_mnist_cnn") else (32, 32, 3))
    test_a_network_round_trips_through_a_keras_file(name, shape, {}, tmp_path)
