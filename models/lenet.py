"""LeNet-5, as used by L2L-DA (``YunseokJANG/l2l-da``) as its MNIST classifier."""

from __future__ import annotations

import keras

from tfadv.models.layers import check_spatial, conv_output_size


def lenet5(num_classes, input_shape, *, first_conv_padding="same", name="lenet5"):
    """LeNet-5 as in L2L-DA's ``Classifier(classifier_name='lenet')`` (``adv_defence/models.py``).

    c1 conv5x5 6 -> ReLU -> max-pool 2 -> c3 conv5x5 16 'valid' -> ReLU -> max-pool 2 -> flatten
    -> FC 120 -> ReLU -> FC 84 -> ReLU -> FC num_classes (logits).

    Choices:
      * ``first_conv_padding='same'`` (default) is the release's ``padding=2`` on 28x28 MNIST, which
        gives the classic 5x5x16 = 400 features. Use ``'valid'`` for the original 32x32 LeNet-5.
      * The release's c5 is a conv5x5 -> 120 on the 5x5 map, i.e. exactly a dense 400 -> 120 layer
        (same 48,120 parameters); a Flatten + Dense(120) is used so other input sizes work.
      * The release ends in LogSoftmax; this model returns logits (the cross-entropy is the same).
      * Init as the L2L-DA trainer's ``weights_init_normal`` for a from-scratch classifier: conv
        ``normal(0, 0.02)``, dense ``xavier_uniform``, all biases 0.
      * Activations are ReLU and pooling is max-pooling, as in the release (not LeCun's tanh /
        subsampling).
    """
    if first_conv_padding not in ("same", "valid"):
        raise ValueError(
            "Expected `first_conv_padding` to be 'same' or 'valid'. "
            f"Received: first_conv_padding={first_conv_padding!r}."
        )
    size = min(input_shape[0], input_shape[1])
    size = conv_output_size(size, 5, 1, first_conv_padding)
    size = conv_output_size(size, 2, 2, "valid")
    size = conv_output_size(size, 5, 1, "valid")
    size = conv_output_size(size, 2, 2, "valid")
    check_spatial(name, input_shape, size)

    conv_init = keras.initializers.RandomNormal(stddev=0.02)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.Conv2D(6, 5, padding=first_conv_padding, activation="relu",
                            kernel_initializer=conv_init, name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2, 2, name="s2")(x)
    x = keras.layers.Conv2D(16, 5, padding="valid", activation="relu",
                            kernel_initializer=conv_init, name="c3")(x)
    x = keras.layers.MaxPooling2D(2, 2, name="s4")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(120, activation="relu", kernel_initializer="glorot_uniform", name="c5")(x)
    x = keras.layers.Dense(84, activation="relu", kernel_initializer="glorot_uniform", name="f6")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer="glorot_uniform", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


__all__ = ["lenet5"]
