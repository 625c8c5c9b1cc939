"""The Keras twins of RobustBench's PyTorch layouts (models/dm_wide_resnet.py,
models/torch_resnets.py) at full size, without torch: parameter counts against the published ones
(within 1%) and the exact counts of the PyTorch definitions; the Standardize layer."""

import keras
import numpy as np
import pytest

from tfadv import models
from tfadv.models.layers import Standardize

CIFAR = (32, 32, 3)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# name, input shape, classes, kwargs, exact count of the PyTorch module's parameters, published
FULL_SIZE = [
    ("rb_wrn_28_10", CIFAR, 10, {}, 36_479_194, 36.5e6),
    ("rb_wrn_34_10", CIFAR, 10, {}, 46_160_474, 46.2e6),
    ("dm_wrn_28_10", CIFAR, 10, {}, 36_479_194, 36.5e6),
    pytest.param("dm_wrn_70_16", CIFAR, 10, {}, 266_796_506, 266.8e6, marks=pytest.mark.slow),
    ("preact_resnet18", CIFAR, 10, {}, 11_171_146, 11.2e6),
    ("tv_resnet50", (224, 224, 3), 1000, {}, 25_557_032, 25.6e6),
]


@pytest.mark.parametrize("name,shape,classes,kwargs,exact,published", FULL_SIZE)
def test_full_size_parameter_counts(name, shape, classes, kwargs, exact, published):
    model = models.build(name, num_classes=classes, input_shape=shape, **kwargs)
    count = _trainable(model)
    assert abs(count - published) <= 0.01 * published
    assert count == exact
    assert model.output_shape == (None, classes)


def test_count_of_each_option():
    # PreActResNet18(bn_before_fc=True) adds the final BN's weight and bias (2 x 512).
    bn = models.build("preact_resnet18", num_classes=10, input_shape=CIFAR, bn_before_fc=True)
    assert _trainable(bn) == 11_171_146 + 1024
    # Swish and ReLU variants have the same parameters; the normalisation has none.
    relu = models.build("dm_wrn", num_classes=10, input_shape=CIFAR, depth=16, width=2,
                        activation="relu", mean=None, std=None)
    swish = models.build("dm_wrn", num_classes=10, input_shape=CIFAR, depth=16, width=2)
    assert _trainable(relu) == _trainable(swish)
    assert "standardize" in [layer.name for layer in swish.layers]
    assert "standardize" not in [layer.name for layer in relu.layers]


@pytest.mark.parametrize("name,kwargs,pattern", [
    ("dm_wrn", dict(activation="gelu"), r"`activation` in \('relu', 'swish'\).*gelu"),
    ("dm_wrn", dict(depth=12), r"6 \* n \+ 4.*depth=12"),
    ("dm_wrn", dict(mean=(0.5,), std=None), r"both mean and std, or neither"),
    ("tv_resnet", dict(blocks=(1, 1, 1)), r"`blocks` to be 4 positive ints.*\(1, 1, 1\)"),
])
def test_bad_options(name, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern) as e:
        models.build(name, num_classes=10, input_shape=CIFAR, **kwargs)
    assert "Received: " in str(e.value)


def test_dm_wrn_needs_sizes_divisible_by_four():
    with pytest.raises(ValueError, match=r"divisible by 4.*Received: input_shape=\(30, 32, 3\)"):
        models.build("dm_wrn_28_10", num_classes=10, input_shape=(30, 32, 3))


def test_standardize_values_config_and_errors():
    layer = Standardize((0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    x = np.array([[[[1.0, 0.25, 4.0]]]], np.float32)
    np.testing.assert_allclose(layer(x), [[[[1.0, 0.0, 2.0]]]])
    clone = Standardize.from_config(layer.get_config())
    assert (clone.mean, clone.std) == ((0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    with pytest.raises(ValueError, match=r"std > 0. Received: std=\(1, 0\)"):
        Standardize((0, 0), (1, 0))
    with pytest.raises(ValueError, match=r"2 values for an input of 3 channels.*Received"):
        Standardize((0, 0), (1, 1))(keras.Input((4, 4, 3)))


def test_a_normalising_model_saves_and_loads_in_safe_mode(tmp_path):
    model = models.build("tv_resnet", num_classes=3, input_shape=(32, 32, 3), blocks=(1, 1, 1, 1),
                         width=4)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)
