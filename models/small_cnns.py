"""Small CNNs of the MNIST / CIFAR adversarial-training releases, plus a tiny CNN for 8x8 digits."""

from __future__ import annotations

import keras

from tfadv.models.layers import (
    check_spatial,
    conv_output_size,
    kaiming_normal_init,
    torch_default_bias_init,
    torch_default_kernel_init,
)

# Keras 2 BatchNormalization defaults, used by the FOSC (dynamic_adv_training) release.
KERAS2_BN_MOMENTUM = 0.99
KERAS2_BN_EPSILON = 1e-3


def _spatial(input_shape, layers):
    """Smallest spatial size after `layers` = [(kernel, stride, padding), ...]."""
    size = min(input_shape[0], input_shape[1])
    for kernel, stride, padding in layers:
        size = conv_output_size(size, kernel, stride, padding)
    return size


def madry_mnist_cnn(num_classes, input_shape, *, capacity=16, name="madry_mnist_cnn"):
    """Madry et al.'s MNIST CNN (``MadryLab/mnist_challenge``, ``model.py``; TF1).

    conv5x5 32 'SAME' + ReLU -> max-pool 2x2/2 'SAME' -> conv5x5 64 'SAME' + ReLU -> max-pool ->
    flatten (NHWC order, as the release's reshape) -> FC 1024 + ReLU -> FC num_classes (logits).
    Init as released: weights ``truncated_normal(stddev=0.1)``, biases ``0.1``.
    3,274,634 parameters for 28x28x1 inputs and 10 classes.

    ``capacity`` is the scale of Madry et al.'s capacity study (sec. 4, Fig. 4): 2c and 4c filters
    and an FC layer of 64c units; the released network is c=16.
    """
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive int (16 is the released network). "
                         f"Received: capacity={capacity!r}.")
    check_spatial(name, input_shape, _spatial(input_shape, [(2, 2, "same")] * 2))
    w_init = keras.initializers.TruncatedNormal(stddev=0.1)
    b_init = keras.initializers.Constant(0.1)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.Conv2D(2 * capacity, 5, padding="same", activation="relu",
                            kernel_initializer=w_init, bias_initializer=b_init, name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, 2, padding="same", name="pool1")(x)
    x = keras.layers.Conv2D(4 * capacity, 5, padding="same", activation="relu",
                            kernel_initializer=w_init, bias_initializer=b_init, name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, 2, padding="same", name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64 * capacity, activation="relu", kernel_initializer=w_init,
                           bias_initializer=b_init, name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=w_init, bias_initializer=b_init,
                                 name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def trades_smallcnn(num_classes, input_shape, *, drop_rate=0.5, name="trades_smallcnn"):
    """TRADES' MNIST ``SmallCNN`` (``yaodongyu/TRADES``, ``models/small_cnn.py``).

    conv3x3 32 -> ReLU -> conv3x3 32 -> ReLU -> max-pool 2 -> conv3x3 64 -> ReLU -> conv3x3 64 ->
    ReLU -> max-pool 2 (all 'valid', as PyTorch's default padding 0) -> FC 200 -> ReLU ->
    dropout 0.5 -> FC 200 -> ReLU -> FC num_classes (logits).
    Init as released: conv ``kaiming_normal`` with zero bias; fc1/fc2 PyTorch defaults; fc3 weight
    and bias zero (so the initial logits are all zero).

    Deviation: the flatten is in Keras' NHWC order (PyTorch flattens NCHW); this only matters when
    porting the released weights, whose fc1 rows must then be permuted.
    """
    check_spatial(name, input_shape, _spatial(
        input_shape, [(3, 1, "valid"), (3, 1, "valid"), (2, 2, "valid"),
                      (3, 1, "valid"), (3, 1, "valid"), (2, 2, "valid")]))
    conv_kw = dict(activation="relu", kernel_initializer=kaiming_normal_init(),
                   bias_initializer="zeros")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.Conv2D(32, 3, name="conv1", **conv_kw)(inputs)
    x = keras.layers.Conv2D(32, 3, name="conv2", **conv_kw)(x)
    x = keras.layers.MaxPooling2D(2, 2, name="maxpool1")(x)
    x = keras.layers.Conv2D(64, 3, name="conv3", **conv_kw)(x)
    x = keras.layers.Conv2D(64, 3, name="conv4", **conv_kw)(x)
    x = keras.layers.MaxPooling2D(2, 2, name="maxpool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(200, activation="relu", kernel_initializer=torch_default_kernel_init(),
                           bias_initializer=torch_default_bias_init(x.shape[-1]), name="fc1")(x)
    x = keras.layers.Dropout(drop_rate, name="drop")(x)
    x = keras.layers.Dense(200, activation="relu", kernel_initializer=torch_default_kernel_init(),
                           bias_initializer=torch_default_bias_init(200), name="fc2")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer="zeros", bias_initializer="zeros",
                                 name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _keras2_bn(name):
    return keras.layers.BatchNormalization(
        momentum=KERAS2_BN_MOMENTUM, epsilon=KERAS2_BN_EPSILON, name=name
    )


def fosc_mnist_cnn(num_classes, input_shape, *, name="fosc_mnist_cnn"):
    """FOSC / Dynamic adversarial training's 4-layer MNIST CNN (Wang et al., ICML 2019).

    The paper (Sec. 5.1) says only: "2 convolutional layers followed by 2 dense layers", with BN
    and max-pooling after each conv layer. Widths and kernels follow the release
    (``YisenWang/dynamic_adv_training``, ``models.py``, ``dataset == 'mnist'``):
    conv3x3 32 'same' -> BN -> ReLU -> max-pool 2 -> conv3x3 64 'same' -> BN -> ReLU -> max-pool 2
    -> flatten -> dense 128 (he_normal) -> ReLU -> dense num_classes (logits; the release appends
    a softmax). No dropout. BN: Keras 2 defaults (momentum 0.99, epsilon 1e-3); other inits are
    Keras defaults (glorot uniform, zero bias).
    """
    check_spatial(name, input_shape, _spatial(input_shape, [(2, 2, "valid")] * 2))
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    for i, width in enumerate((32, 64), 1):
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
        x = _keras2_bn(f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, 2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, kernel_initializer="he_normal", name="features")(x)
    x = keras.layers.ReLU(name="features_relu")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def fosc_cifar_cnn(num_classes, input_shape, *, name="fosc_cifar_cnn"):
    """FOSC / Dynamic adversarial training's 8-layer CIFAR-10 CNN (Wang et al., ICML 2019, Sec. 5.1).

    Three blocks of two conv3x3 'same' layers (64, 64 / 128, 128 / 196, 196), each conv followed by
    BN and ReLU, a 2x2 max-pool after every block; flatten -> dense 256 (he_normal) -> BN -> ReLU
    -> dense num_classes (logits). Follows the (commented-out) definition in
    ``YisenWang/dynamic_adv_training`` ``models.py``. BN: Keras 2 defaults (momentum 0.99,
    epsilon 1e-3).

    Deviation: the release puts ``l2(0.01)`` kernel and bias regularizers on the dense-256 layer;
    models here carry no regularizers (weight decay is added by the training code).
    """
    check_spatial(name, input_shape, _spatial(input_shape, [(2, 2, "valid")] * 3))
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    for block, width in enumerate((64, 128, 196), 1):
        for i in (1, 2):
            x = keras.layers.Conv2D(width, 3, padding="same", name=f"block{block}_conv{i}")(x)
            x = _keras2_bn(f"block{block}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"block{block}_relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, 2, name=f"block{block}_pool1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, kernel_initializer="he_normal", name="features")(x)
    x = _keras2_bn("features_bn")(x)
    x = keras.layers.ReLU(name="features_relu")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def wong_mnist_cnn(num_classes, input_shape, *, name="wong_mnist_cnn"):
    """Wong, Rice & Kolter's MNIST network (``locuslab/fast_adversarial``, ``MNIST/mnist_net.py``;
    Fast AT's MNIST runs).

    conv4x4 16, stride 2, padding 1 + ReLU -> conv4x4 32, stride 2, padding 1 + ReLU -> flatten
    (NHWC order; the release flattens NCHW, which only matters when porting its weights) -> FC 100
    + ReLU -> FC num_classes (logits); no BatchNorm, PyTorch's default initialisation.
    166,406 parameters for 28x28x1 inputs and 10 classes (28 -> 14 -> 7).
    """
    sizes = [input_shape[0], input_shape[1]]
    for _ in range(2):
        sizes = [conv_output_size(s + 2, 4, 2) for s in sizes]
    check_spatial(name, input_shape, min(sizes))
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x, fan_in = inputs, 16 * int(input_shape[-1])
    for index, filters in enumerate((16, 32), 1):
        x = keras.layers.ZeroPadding2D(1, name=f"pad{index}")(x)
        x = keras.layers.Conv2D(filters, 4, strides=2, activation="relu",
                                kernel_initializer=torch_default_kernel_init(),
                                bias_initializer=torch_default_bias_init(fan_in),
                                name=f"conv{index}")(x)
        fan_in = 16 * filters
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(100, activation="relu", kernel_initializer=torch_default_kernel_init(),
                           bias_initializer=torch_default_bias_init(32 * sizes[0] * sizes[1]),
                           name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=torch_default_kernel_init(),
                                 bias_initializer=torch_default_bias_init(100), name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def digits_cnn(num_classes, input_shape, *, name="digits_cnn"):
    """A small, fast CNN for scikit-learn's 8x8 digits (project-specific; no paper/release).

    conv3x3 32 'same' + ReLU -> conv3x3 64 'same' + ReLU -> max-pool 2 ('same', so any input of
    at least 1x1 works) -> flatten -> dense 128 + ReLU -> dense num_classes (logits). Its shape
    follows FOSC's MNIST CNN without BN; Keras default initializers.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, 2, padding="same", name="pool1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


__all__ = ["madry_mnist_cnn", "trades_smallcnn", "fosc_mnist_cnn", "fosc_cifar_cnn", "wong_mnist_cnn",
           "digits_cnn"]
