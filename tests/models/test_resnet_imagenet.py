"""models.resnet_imagenet: the tensorpack ImageNet ResNets of BAT's ImageNet setting."""

import keras
import numpy as np
import pytest

from tfadv import models
from tfadv.models import resnet_imagenet

# torchvision's / the tensorpack release's trainable-parameter counts for 1000 classes
# (BN moving statistics excluded).
KNOWN_COUNTS = {50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
TINY = dict(depth=18, width=8)


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


@pytest.mark.parametrize("depth", [
    50, pytest.param(101, marks=pytest.mark.slow), pytest.param(152, marks=pytest.mark.slow)])
def test_parameter_counts(depth):
    model = models.build(f"resnet{depth}_imagenet", num_classes=1000, input_shape=(224, 224, 3))
    assert trainable_count(model) == KNOWN_COUNTS[depth]
    # Every block's last BN gamma starts at zero (3+4+6+3 = 16 blocks for ResNet-50).
    names = resnet_imagenet.last_block_bn_names(model)
    assert len(names) == sum(resnet_imagenet.NUM_BLOCKS[depth])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            expected = 0.0 if layer.name in names else 1.0
            np.testing.assert_array_equal(np.asarray(layer.gamma), expected)


def test_zero_gamma_makes_identity_blocks_pass_their_input_through():
    model = models.build("resnet_imagenet", num_classes=10, input_shape=(32, 32, 3), **TINY)
    probe = keras.Model(model.input, [model.get_layer("group0_block0_out").output,
                                      model.get_layer("group0_block1_out").output])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    block0, block1 = probe(x, training=False)
    # block1 has an identity shortcut: relu(0*branch + 0 + x) = x for the post-ReLU input x.
    np.testing.assert_allclose(np.asarray(block1), np.asarray(block0), atol=1e-6)


def test_tiny_forward_pass_and_architecture():
    model = models.build("resnet_imagenet", num_classes=10, input_shape=(32, 32, 3), **TINY)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    logits = np.asarray(model(x, training=False))
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs and not any(l.use_bias for l in convs)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all(l.momentum == 0.9 and l.epsilon == 1e-5 for l in bns)
    # Downsampling is on the 3x3 conv of a block (v1.5), with a 1x1 projection shortcut.
    assert model.get_layer("group1_block0_conv1").strides == (2, 2)
    assert model.get_layer("group1_block0_convshortcut").strides == (2, 2)
    assert model.get_layer("linear").units == 10


def test_bottleneck_downsamples_on_the_3x3_conv():
    model = resnet_imagenet.resnet_imagenet(10, (32, 32, 3), depth=50, width=4)
    assert model.get_layer("group1_block0_conv1").strides == (1, 1)
    assert model.get_layer("group1_block0_conv2").strides == (2, 2)
    assert model.get_layer("group3_block2_out").output.shape[1:] == (1, 1, 128)


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=20), "depth"), (dict(depth=18, width=0), "width"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"{message}.*Received"):
        models.build("resnet_imagenet", num_classes=10, input_shape=(32, 32, 3), **kwargs)
