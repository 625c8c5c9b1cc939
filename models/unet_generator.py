"""The L2L-DA generator g_φ (Jang et al., ICCV 2019, sec. 4.1 and 5.1): a U-Net encoder-decoder.

    generator = build_generator(10, (28, 28, 1))
    g = generator([x, grad_normalised, delta, z, y], training=True)   # (B, H, W, C) in (-1, 1)

Inputs (eq. 5's g_φ(x, y, z, δ⁽ᵗ⁾, ∇ₓL(x_adv⁽ᵗ⁾))): the image x, the loss gradient normalised per
example and channel (``tfadv.attacks.l2lda_generator.normalize_gradient``), the accumulated
perturbation δ, the latent z ~ N(0, I) of ``latent_dim`` and the integer label y of shape ``(B,)``.

Architecture, as the authors' release (``adv_defence/models.py``, ``NoiseGenerator`` with its
default ``g_deeper_layer=False``):

* z → Dense(d) → ReLU → Dense(d) → ReLU (xavier-uniform kernels, zero biases), tiled spatially and
  concatenated to the input of every down block (sec. 5.1: "the input and the first two
  convolutional layers");
* down0: concat[x, ∇̂, δ, z] → conv3x3 stride 1 → F, no norm, LeakyReLU(0.2);
* down1: conv4x4 stride 2 → F, class-conditional BN, LeakyReLU(0.2);
* down2: conv4x4 stride 2 → 2F, no norm, LeakyReLU(0.2);
* up2: transposed conv4x4 stride 2 → F, CBN, ReLU, concat down1;
* up1: transposed conv4x4 stride 2 → F, CBN, ReLU, concat down0;
* final conv3x3 → C, tanh (the output lies in (-1, 1) and has the shape of x).

No conv has a bias; conv kernels are N(0, 0.02) (``weights_init_normal``). The class label enters
only through the CBN layers (sec. 5.1), whose effective γ is γ[y] + γ_shared
(:class:`tfadv.models.layers.ConditionalBatchNormalization`). Table 1(b) ablations:
``use_delta=False`` drops δ from the input (the call still takes it, ignored),
``class_conditional=False`` uses plain BN (γ ~ N(1, 0.02)) and ignores y. ``latent_dim=0`` makes the
generator deterministic (L2L, Chen et al.): z has shape ``(B, 0)`` and is ignored.

Not in the ``models`` registry: that registry builds logits classifiers of one image input, and the
generator is neither.
"""

from __future__ import annotations

import numbers

import keras

from tfadv.models.layers import ConditionalBatchNormalization, SpatialTile

# PyTorch BN momentum 0.1 (Keras 0.9) and the release's eps=1e-10 for every generator BN.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-10
LEAKY_SLOPE = 0.2


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_args(num_classes, input_shape, latent_dim, use_delta, class_conditional, base_filters):
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"Expected `num_classes` to be an int >= 2. Received: num_classes={num_classes!r}.")
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(_is_int(d) and d > 0 for d in input_shape)):
        raise ValueError("Expected `input_shape` to be 3 positive ints (height, width, channels). "
                         f"Received: input_shape={input_shape!r}.")
    if input_shape[0] % 4 or input_shape[1] % 4:
        raise ValueError("The L2L-DA U-Net halves the image twice and concatenates skips, so height "
                         "and width must be multiples of 4 (MNIST 28, CIFAR 32, digits 8). "
                         f"Received: input_shape={tuple(input_shape)!r}.")
    if not _is_int(latent_dim) or latent_dim < 0:
        raise ValueError(f"Expected `latent_dim` to be an int >= 0. Received: latent_dim={latent_dim!r}.")
    if not _is_int(base_filters) or base_filters < 1:
        raise ValueError("Expected `base_filters` to be an int >= 1. "
                         f"Received: base_filters={base_filters!r}.")
    for name, value in (("use_delta", use_delta), ("class_conditional", class_conditional)):
        if not isinstance(value, bool):
            raise ValueError(f"Expected `{name}` to be a bool. Received: {name}={value!r}.")


def build_generator(num_classes, input_shape, *, latent_dim=8, use_delta=True,
                    class_conditional=True, base_filters=64, name="l2lda_generator") -> keras.Model:
    """Builds the L2L-DA U-Net generator (module docstring) as a functional ``keras.Model``.

    Args:
        num_classes: classes of the label input y (rows of the CBN tables), int >= 2.
        input_shape: ``(H, W, C)`` of the images; H and W multiples of 4.
        latent_dim: size of z (the release's ``g_z_dim=8``); 0 for a deterministic generator.
        use_delta: feed the accumulated perturbation δ (Table 1(b) "δ O").
        class_conditional: class-conditional BN with y (Table 1(b) "y O"); else plain BN.
        base_filters: F, channels of the first block (release ``g_base_channel_dim=64``).
        name: the model's name.

    Returns:
        A model called as ``generator([x, grad_normalised, delta, z, y], training=...)`` returning
        ``(B, H, W, C)`` in (-1, 1). ``generator.l2lda_config`` holds these arguments (for
        ``tfadv.attacks.l2lda_generator.save_generator`` / ``load_generator``).
    """
    _check_args(num_classes, input_shape, latent_dim, use_delta, class_conditional, base_filters)
    input_shape = tuple(int(d) for d in input_shape)
    channels = input_shape[-1]
    conv_init = keras.initializers.RandomNormal(0.0, 0.02)

    images = keras.Input(input_shape, name="images")
    gradient = keras.Input(input_shape, name="gradient")
    delta = keras.Input(input_shape, name="delta")
    z = keras.Input((latent_dim,), name="z")
    labels = keras.Input((), dtype="int32", name="labels")

    z_code = None
    if latent_dim > 0:
        h = keras.layers.Dense(latent_dim, activation="relu", kernel_initializer="glorot_uniform",
                               name="z_fc1")(z)
        z_code = keras.layers.Dense(latent_dim, activation="relu",
                                    kernel_initializer="glorot_uniform", name="z_fc2")(h)

    def with_z(h, block):
        if z_code is None:
            return h
        tiled = SpatialTile(name=f"{block}_tile_z")([z_code, h])
        return keras.layers.Concatenate(name=f"{block}_concat_z")([h, tiled])

    def norm(h, block):
        if class_conditional:
            return ConditionalBatchNormalization(num_classes, momentum=BN_MOMENTUM,
                                                 epsilon=BN_EPSILON, name=f"{block}_cbn")([h, labels])
        return keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{block}_bn",
            gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02))(h)

    def down(h, filters, kernel, stride, normalize, block):
        h = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                kernel_initializer=conv_init, name=f"{block}_conv")(with_z(h, block))
        if normalize:
            h = norm(h, block)
        return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{block}_lrelu")(h)

    def up(h, skip, filters, block):
        # Transposed 4x4 stride 2, Keras 'same' = PyTorch padding=1 (one pixel cropped per side).
        h = keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                                         kernel_initializer=conv_init, name=f"{block}_deconv")(h)
        h = keras.layers.ReLU(name=f"{block}_relu")(norm(h, block))
        return keras.layers.Concatenate(name=f"{block}_skip")([h, skip])

    parts = [images, gradient] + ([delta] if use_delta else [])
    h = keras.layers.Concatenate(name="input_concat")(parts)
    d0 = down(h, base_filters, 3, 1, False, "down0")
    d1 = down(d0, base_filters, 4, 2, True, "down1")
    d2 = down(d1, 2 * base_filters, 4, 2, False, "down2")
    u2 = up(d2, d1, base_filters, "up2")
    u1 = up(u2, d0, base_filters, "up1")
    out = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                              kernel_initializer=conv_init, name="final_conv")(u1)
    out = keras.layers.Activation("tanh", name="tanh")(out)
    model = keras.Model([images, gradient, delta, z, labels], out, name=name)
    model.l2lda_config = {"num_classes": int(num_classes), "input_shape": list(input_shape),
                          "latent_dim": int(latent_dim), "use_delta": bool(use_delta),
                          "class_conditional": bool(class_conditional),
                          "base_filters": int(base_filters), "name": name}
    return model


def generator_config(generator) -> dict:
    """The :func:`build_generator` arguments a generator was built with (a plain dict)."""
    config = getattr(generator, "l2lda_config", None)
    if config is None:
        raise ValueError("Not an L2L-DA generator from tfadv.models.unet_generator.build_generator (it "
                         f"has no l2lda_config). Received: {generator!r}.")
    out = dict(config)
    out["input_shape"] = [int(d) for d in out["input_shape"]]
    return out


__all__ = ["build_generator", "generator_config"]
