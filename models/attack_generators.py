"""Generators (and AdvGAN's discriminator) of the generator-based attacks of L2L-DA's Table 2.

    AdvGAN  (Xiao et al., IJCAI 2018, sec. 3.1-3.2): an encoder / residual / decoder generator in the
            style of image-to-image translation (c8 -> d16 -> d32 -> 4 residual blocks -> u16 -> u8 ->
            C, instance normalisation) and a small convolutional discriminator (C8-C16-C32, leaky
            ReLU 0.2).
    GAP     (Poursaeed et al., CVPR 2018, sec. 3.1 "image-dependent perturbations"): the ResNet
            generator of Johnson et al. (c7s1-F, d2F, d4F, residual blocks, u2F, uF, c7s1-C) with
            batch normalisation.

Both generators map an image ``(B, H, W, C)`` to a tensor of the same shape in (-1, 1) (tanh);
the attack (:mod:`tfadv.attacks.generators`) scales it into the eps-ball. Two stride-2
down-samplings need H and W divisible by 4 (8x8 digits, 28x28 MNIST, 32x32 CIFAR all are).
Widths are arguments, so that tests can use small ones; the defaults are the papers' widths.
"""

from __future__ import annotations

import keras


def _check_shape(input_shape, name):
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(d, int) and d > 0 for d in input_shape)):
        raise ValueError(f"{name} needs input_shape=(height, width, channels) of positive ints. "
                         f"Received: input_shape={input_shape!r}.")
    if input_shape[0] % 4 or input_shape[1] % 4:
        raise ValueError(f"{name} down-samples twice by 2, so height and width must be multiples "
                         f"of 4. Received: input_shape={tuple(input_shape)!r}.")
    return tuple(input_shape)


def _check_width(value, what, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}. Received: {what}={value!r}.")
    return value


def _norm(kind, name):
    if kind == "instance":
        # GroupNormalization with one group per channel is instance normalisation.
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _conv_norm_relu(h, filters, kernel, strides, norm, name, transpose=False):
    conv = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    h = conv(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(h)
    h = _norm(norm, f"{name}_norm")(h)
    return keras.layers.ReLU(name=f"{name}_relu")(h)


def _residual(h, filters, norm, name):
    r = _conv_norm_relu(h, filters, 3, 1, norm, f"{name}_a")
    r = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(r)
    r = _norm(norm, f"{name}_b_norm")(r)
    return keras.layers.Add(name=f"{name}_add")([h, r])


def _encoder_decoder(input_shape, *, base_filters, num_res_blocks, first_kernel, norm, name):
    channels = input_shape[-1]
    inputs = keras.Input(shape=input_shape, name="images")
    h = _conv_norm_relu(inputs, base_filters, first_kernel, 1, norm, "enc0")
    h = _conv_norm_relu(h, 2 * base_filters, 3, 2, norm, "enc1")
    h = _conv_norm_relu(h, 4 * base_filters, 3, 2, norm, "enc2")
    for i in range(num_res_blocks):
        h = _residual(h, 4 * base_filters, norm, f"res{i}")
    h = _conv_norm_relu(h, 2 * base_filters, 3, 2, norm, "dec1", transpose=True)
    h = _conv_norm_relu(h, base_filters, 3, 2, norm, "dec0", transpose=True)
    h = keras.layers.Conv2D(channels, first_kernel, padding="same", name="out_conv")(h)
    outputs = keras.layers.Activation("tanh", name="tanh")(h)
    return keras.Model(inputs, outputs, name=name)


def advgan_generator(input_shape, *, base_filters: int = 8, num_res_blocks: int = 4,
                     name: str = "advgan_generator") -> keras.Model:
    """AdvGAN's generator G(x) (Xiao et al. sec. 3.2; widths of the authors' MNIST/CIFAR model):
    conv3x3 F -> conv3x3/2 2F -> conv3x3/2 4F (each instance norm + ReLU) -> ``num_res_blocks``
    residual blocks -> two transposed conv3x3/2 (2F, F) -> conv3x3 C -> tanh."""
    input_shape = _check_shape(input_shape, "advgan_generator")
    return _encoder_decoder(input_shape, base_filters=_check_width(base_filters, "base_filters"),
                            num_res_blocks=_check_width(num_res_blocks, "num_res_blocks", 0),
                            first_kernel=3, norm="instance", name=name)


def advgan_discriminator(input_shape, *, base_filters: int = 8,
                         name: str = "advgan_discriminator") -> keras.Model:
    """AdvGAN's discriminator D (Xiao et al. sec. 3.2): conv4x4/2 F (leaky ReLU 0.2, no norm) ->
    conv4x4/2 2F -> conv4x4/2 4F (instance norm + leaky ReLU) -> conv 1 -> mean over positions:
    one logit per image (real vs. perturbed)."""
    input_shape = _check_shape(input_shape, "advgan_discriminator")
    f = _check_width(base_filters, "base_filters")
    inputs = keras.Input(shape=input_shape, name="images")
    h = keras.layers.Conv2D(f, 4, strides=2, padding="same", name="c0_conv")(inputs)
    h = keras.layers.LeakyReLU(0.2, name="c0_lrelu")(h)
    for i, width in ((1, 2 * f), (2, 4 * f)):
        h = keras.layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False,
                                name=f"c{i}_conv")(h)
        h = _norm("instance", f"c{i}_norm")(h)
        h = keras.layers.LeakyReLU(0.2, name=f"c{i}_lrelu")(h)
    h = keras.layers.Conv2D(1, 1, name="logit_conv")(h)
    outputs = keras.layers.GlobalAveragePooling2D(name="logit")(h)
    return keras.Model(inputs, outputs, name=name)


def gap_generator(input_shape, *, base_filters: int = 64, num_res_blocks: int = 6,
                  name: str = "gap_generator") -> keras.Model:
    """GAP's image-dependent generator (Poursaeed et al. sec. 3.1, the ResNet generator of Johnson
    et al.): c7s1-F -> d2F -> d4F (conv3x3/2) -> ``num_res_blocks`` residual blocks -> u2F -> uF
    (transposed conv3x3/2) -> c7s1-C -> tanh, batch norm + ReLU after every hidden conv."""
    input_shape = _check_shape(input_shape, "gap_generator")
    return _encoder_decoder(input_shape, base_filters=_check_width(base_filters, "base_filters"),
                            num_res_blocks=_check_width(num_res_blocks, "num_res_blocks", 0),
                            first_kernel=7, norm="batch", name=name)
