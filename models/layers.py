"""Small custom Keras layers shared by the architectures in this package.

All of them are stateless, serializable (``get_config``) and written with ``keras.ops`` so that
gradients flow through them (the attacks differentiate the logits with respect to the input).
"""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "tfadv_models"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PerImageStandardization(keras.layers.Layer):
    """Per-example standardization, as ``tf.image.per_image_standardization``.

    ``(x - mean) / max(stddev, 1 / sqrt(H * W * C))`` with the mean and the (population) standard
    deviation taken over all pixels and channels of each image. Madry et al.'s cifar10_challenge
    WRN applies this as the first op of the network, so the model is invariant to the input's
    pixel range (any ``x -> a * x + b`` with ``a > 0`` gives the same output, unless the image is
    nearly constant).

    ``max(sqrt(v), m) == sqrt(max(v, m**2))``; the second form is used so that a constant image
    gives a finite (zero) gradient instead of ``0 * inf``.
    """

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        num_elements = ops.cast(ops.prod(ops.shape(x)[1:]), self.compute_dtype)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True)
        stddev = ops.sqrt(ops.maximum(variance, 1.0 / num_elements))
        return (x - mean) / stddev

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChannelZeroPad(keras.layers.Layer):
    """Zero-pads the channel (last) axis with ``before`` and ``after`` zero channels.

    Used by the parameter-free shortcuts of Madry's WRN and of He et al.'s option-A ResNets.
    """

    def __init__(self, before, after, **kwargs):
        super().__init__(**kwargs)
        self.before = int(before)
        self.after = int(after)
        if self.before < 0 or self.after < 0:
            raise ValueError(
                "ChannelZeroPad needs non-negative padding. "
                f"Received: before={before!r}, after={after!r}."
            )

    def call(self, inputs):
        return ops.pad(inputs, [[0, 0], [0, 0], [0, 0], [self.before, self.after]])

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None:
            channels = channels + self.before + self.after
        return tuple(input_shape[:-1]) + (channels,)

    def get_config(self):
        config = super().get_config()
        config.update({"before": self.before, "after": self.after})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpatialSubsample(keras.layers.Layer):
    """``x[:, ::stride, ::stride, :]`` (the option-A shortcut of He et al. 2016's CIFAR ResNets)."""

    def __init__(self, stride, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)
        if self.stride < 1:
            raise ValueError(f"SpatialSubsample needs stride >= 1. Received: stride={stride!r}.")

    def call(self, inputs):
        s = self.stride
        return inputs[:, ::s, ::s, :]

    def compute_output_shape(self, input_shape):
        def sub(n):
            return None if n is None else -(-n // self.stride)

        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"stride": self.stride})
        return config


#: Per-channel (mean, std) of the datasets' normalisations in PyTorch releases.
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Standardize(keras.layers.Layer):
    """``(x - mean) / std`` per channel, inside the network, so that the model takes pixels.

    The normalisation of the PyTorch models RobustBench distributes (DeepMind's ``DMWideResNet``
    subtracts ``mean`` and divides by ``std`` in ``forward``; RobustBench's ImageNet models are
    ``normalize_model(...)``): with it in the Keras network, an attack's eps stays in pixel units.
    ``mean`` and ``std`` are constants of the layer's config (no weights), one value or one per
    channel.
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = _float_tuple("mean", mean)
        self.std = _float_tuple("std", std)
        if any(s <= 0.0 for s in self.std):
            raise ValueError(f"Standardize needs std > 0. Received: std={std!r}.")

    def build(self, input_shape):
        channels = input_shape[-1]
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"Standardize's {label} has {len(values)} values for an input of {channels} "
                    f"channels; expected 1 or {channels}. Received: {label}={values!r}.")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": list(self.mean), "std": list(self.std)})
        return config


def _float_tuple(label, values):
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if not out:
        raise ValueError(f"Standardize's {label} must be a number or a non-empty sequence of "
                         f"numbers. Received: {label}={values!r}.")
    return out


def image_input(input_shape, mean=None, std=None):
    """``(inputs, x)``: the network's ``images`` input and, when ``mean`` and ``std`` are given,
    the input standardised by a :class:`Standardize` layer named ``standardize`` (else the input).
    """
    if (mean is None) != (std is None):
        raise ValueError("Give both mean and std, or neither. "
                         f"Received: mean={mean!r}, std={std!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    if mean is None:
        return inputs, inputs
    return inputs, Standardize(mean, std, name="standardize")(inputs)


def channel_pad_amounts(in_channels, out_channels):
    """(before, after) zero channels taking `in_channels` to `out_channels`; symmetric when even."""
    diff = out_channels - in_channels
    if diff < 0:
        raise ValueError(
            "A zero-padding shortcut cannot reduce the number of channels. "
            f"Received: in_channels={in_channels}, out_channels={out_channels}."
        )
    return diff // 2, diff - diff // 2


# --- initializers --------------------------------------------------------------------------

def tf1_conv_init():
    """``normal(0, sqrt(2 / n))`` with ``n = k * k * out_channels`` (Madry's TF1 WRN, TRADES' WRN).

    Keras' ``fan_out`` of a conv kernel is exactly ``k * k * out_channels``.
    """
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def torch_default_kernel_init():
    """PyTorch's default Conv2d / Linear weight init: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


def torch_default_bias_init(fan_in):
    """PyTorch's default Conv2d / Linear bias init: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / float(fan_in) ** 0.5
    return keras.initializers.RandomUniform(-bound, bound)


def kaiming_normal_init():
    """PyTorch's ``kaiming_normal_`` (fan_in, gain sqrt(2), untruncated normal)."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_in", distribution="untruncated_normal")


def torch_conv3x3(x, filters, stride, name, use_bias=False, kernel_initializer=None):
    """3x3 conv with PyTorch's ``padding=1``.

    For stride 1 this is Keras' ``'same'``; for stride 2 Keras/TF ``'same'`` pads only bottom/right
    on even inputs while PyTorch pads one pixel on every side, so the padding is made explicit.
    """
    if kernel_initializer is None:
        kernel_initializer = torch_default_kernel_init()
    if stride == 1:
        padding = "same"
    else:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters,
        3,
        strides=stride,
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=kernel_initializer,
        name=name,
    )(x)


def torch_batch_norm(name):
    """A ``BatchNormalization`` with PyTorch ``BatchNorm2d``'s defaults: momentum 0.1 (Keras'
    0.9) and epsilon 1e-5."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def conv_output_size(size, kernel, stride=1, padding="valid"):
    """Spatial output size of a conv/pool layer with Keras' padding rules."""
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def check_spatial(model_name, input_shape, final_size, min_size=1):
    """Raises a ValueError if the network's last feature map would be smaller than `min_size`."""
    if final_size < min_size:
        raise ValueError(
            f"Model '{model_name}' is too deep for an input this small: its last feature map "
            f"would have a spatial size of {final_size}. Expected a larger input_shape. "
            f"Received: input_shape={tuple(input_shape)!r}."
        )


# --- L2L-DA generator layers -----------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConditionalBatchNormalization(keras.layers.Layer):
    """Class-conditional batch normalisation (de Vries et al. 2017; Dumoulin et al. 2017), as the
    L2L-DA generator injects the label y (Jang et al. 2019, sec. 5.1, "class-conditional batch
    normalization"):

        out = (x - μ) / sqrt(σ² + ε) · (γ[y] + γ_shared) + (β[y] + β_shared)

    with μ, σ² the batch moments over every axis but the last in training mode and the moving
    averages in inference mode. Called on ``[x, y]`` with ``y`` integer classes of shape ``(B,)``.

    As in the authors' release (``sync_batchnorm/batchnorm.py`` with ``num_category``): one γ/β row
    per class plus a shared row, the per-class γ rows initialised N(0, 0.02) and the shared γ
    N(1, 0.02) (``weights_init_normal``), all β zero; ε = 1e-10 and PyTorch's momentum 0.1 (Keras
    ``momentum=0.9``). The moving variance averages the biased batch variance (Keras' convention;
    PyTorch averages the unbiased one).
    """

    def __init__(self, num_classes, *, momentum=0.9, epsilon=1e-10, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError("ConditionalBatchNormalization needs an int num_classes >= 1. "
                             f"Received: num_classes={num_classes!r}.")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must lie in [0, 1). Received: momentum={momentum!r}.")
        if not float(epsilon) > 0.0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon!r}.")
        self.num_classes = int(num_classes)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        x_shape = input_shape[0]
        channels = x_shape[-1]
        if channels is None:
            raise ValueError("ConditionalBatchNormalization needs a known channel axis. "
                             f"Received: input_shape={input_shape!r}.")

        def weight(name, shape, initializer, trainable=True):
            # float32 statistics and affine tables under mixed precision (as keras BatchNormalization)
            return self.add_weight(shape=shape, name=name, initializer=initializer,
                                   trainable=trainable, autocast=False)

        self.gamma_class = weight("gamma_class", (self.num_classes, channels),
                                  keras.initializers.RandomNormal(0.0, 0.02))
        self.gamma_shared = weight("gamma_shared", (channels,),
                                   keras.initializers.RandomNormal(1.0, 0.02))
        self.beta_class = weight("beta_class", (self.num_classes, channels), "zeros")
        self.beta_shared = weight("beta_shared", (channels,), "zeros")
        self.moving_mean = weight("moving_mean", (channels,), "zeros", trainable=False)
        self.moving_variance = weight("moving_variance", (channels,), "ones", trainable=False)

    def call(self, inputs, training=None):
        x, y = inputs
        x = ops.cast(x, "float32")  # moments and normalisation in float32 under mixed precision
        axes = list(range(len(x.shape) - 1))
        if training:
            mean, variance = ops.moments(x, axes=axes)
            m = self.momentum
            self.moving_mean.assign(m * self.moving_mean + (1.0 - m) * mean)
            self.moving_variance.assign(m * self.moving_variance + (1.0 - m) * variance)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        normalized = (x - mean) * ops.rsqrt(variance + self.epsilon)
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        # Effective affine parameters per example: the row of its class plus the shared row.
        gamma = ops.take(self.gamma_class, y, axis=0) + self.gamma_shared
        beta = ops.take(self.beta_class, y, axis=0) + self.beta_shared
        shape = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)
        out = normalized * ops.reshape(gamma, shape) + ops.reshape(beta, shape)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "momentum": self.momentum,
                       "epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpatialTile(keras.layers.Layer):
    """Tiles a vector ``(B, D)`` over the spatial grid of a reference feature map ``(B, H, W, C)``
    to ``(B, H, W, D)``: L2L-DA's "spatial padding" of the latent z before concatenation (sec. 5.1;
    the release's ``spatial_tile_z`` in ``UNetDown``). Called on ``[vector, reference]``."""

    def call(self, inputs):
        vector, reference = inputs
        shape = ops.shape(reference)
        tiled = ops.reshape(vector, (-1, 1, 1, vector.shape[-1]))
        return ops.broadcast_to(tiled, (shape[0], shape[1], shape[2], vector.shape[-1]))

    def compute_output_shape(self, input_shape):
        vector_shape, reference_shape = input_shape
        return tuple(reference_shape[:3]) + (vector_shape[-1],)
