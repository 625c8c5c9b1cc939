"""AWP (Wu, Xia & Wang, NeurIPS 2020, "Adversarial Weight Perturbation Helps Robust
Generalization"): the update of a defense taken at adversarially perturbed weights.

As the release computes it (csdongxian/AWP, ``utils_awp.py`` and the training scripts), per step:

    x' built at w                                         (the defense's make_adversarial)
    d  = ∇_w L(w; x, x', y)   for every kernel (ndim > 1), L the defense's loss, the network in
         training mode: the direction of the proxy's one plain-SGD ascent step (proxy − w = lr·d;
         the release's lr cancels below)
    v  = γ · ‖w‖ · d / ‖d‖     per kernel, whole-tensor norms (biases and BatchNorm untouched)
    w += v;  loss, gradient and optimizer step at w + v;  w −= v

The ascent gradient is the global batch's (each replica's share-weighted gradient, summed over the
replicas like the update's), so every replica perturbs its copy by the same v. The proxy pass
leaves the BatchNorm moving statistics as they were (the release's proxy is a copy) and touches
neither the optimizer nor its slots. With ``awp_warmup_epochs`` the perturbation is zero during the
first epochs (the epoch index Keras reports, set by :class:`AwpSchedule`); the gradient is still
computed there (a replica-synchronised step cannot branch on it). The defense supplies L as
:meth:`AdversarialWeightPerturbation.awp_loss`, a pure function (no metric updates).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfadv import batches as batches_lib
from tfadv.attacks import checks
from tfadv.defenses import replicas as replicas_lib

#: The release's ε in v = γ·‖w‖·d/(‖d‖ + ε).
NORM_EPS = 1e-20


def perturbed_variables(network: keras.Model) -> list:
    """The weights AWP perturbs: trainable tensors of two or more dimensions (conv and dense
    kernels), as the release's ``len(w.size()) > 1``."""
    return [v for v in network.trainable_variables if len(v.shape) > 1]


def scaled_direction(weight, direction, gamma):
    """v = γ · ‖w‖ · d / (‖d‖ + 1e-20), whole-tensor Frobenius norms."""
    w_norm = tf.norm(tf.reshape(tf.cast(weight, tf.float32), [-1]))
    d = tf.cast(direction, tf.float32)
    return gamma * w_norm * d / (tf.norm(tf.reshape(d, [-1])) + NORM_EPS)


class AwpSchedule(keras.callbacks.Callback):
    """Sets the model's ``awp_epoch`` at every epoch's start (the warm-up follows the epoch index
    Keras reports, ``initial_epoch`` included)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.awp_epoch.assign(int(epoch))


class AdversarialWeightPerturbation:
    """Mixin of an :class:`~tfadv.defenses.base.AdversarialModel` subclass: AWP through the base's
    ``weight_perturbation`` hook, off unless ``awp_gamma > 0``.

    Args (keyword, beyond the defense's):
        awp_gamma: γ, the size of v relative to each kernel's norm (release: AT 0.01, TRADES 0.005;
            0 turns AWP off).
        awp_warmup_epochs: epochs without the perturbation (release: AT 0, TRADES 10).

    The defense defines ``awp_loss(x, y, examples)``: its objective at the current weights,
    without side effects.
    """

    def __init__(self, network, *, awp_gamma: float = 0.0, awp_warmup_epochs: int = 0, **kwargs):
        gamma = checks.check_number(awp_gamma, "awp_gamma (AWP's gamma)", positive=False)
        warmup = checks.check_int(awp_warmup_epochs, "awp_warmup_epochs", 0)
        if not callable(getattr(type(self), "awp_loss", None)):
            raise TypeError(f"{type(self).__name__} combines AWP with a defense that defines no "
                            "awp_loss(x, y, examples), its objective at the current weights. "
                            f"Received: {type(self).__mro__[1:3]}.")
        super().__init__(network, **kwargs)
        self.awp_gamma, self.awp_warmup_epochs = gamma, warmup
        self.awp_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="awp_epoch")

    def required_callbacks(self) -> list:
        extra = [AwpSchedule()] if self.awp_gamma and self.awp_warmup_epochs else []
        return super().required_callbacks() + extra

    def weight_perturbation(self, x, y, examples) -> list:
        if not self.awp_gamma:
            return super().weight_perturbation(x, y, examples)
        kernels = perturbed_variables(self.network)
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        local_n, share = replicas_lib.global_batch_share(y, replicas)
        statistics = [v for v in self.network.non_trainable_variables
                      if "float" in str(getattr(v, "dtype", ""))]
        saved = [tf.identity(v.value) for v in statistics]
        with tf.GradientTape() as tape:
            loss = batches_lib.if_nonempty(
                y, lambda: tf.cast(self.awp_loss(x, y, examples), tf.float32),
                lambda: tf.constant(0.0))
            part = share * loss
        with tf.control_dependencies([part]):  # the proxy pass updated no statistics
            for v, value in zip(statistics, saved):
                v.assign(value)
        grads = tape.gradient(part, kernels)
        grads = [tf.zeros_like(w) if g is None else tf.cast(g, tf.float32)
                 for w, g in zip(kernels, grads)]
        if replicas > 1:  # an empty slice adds zeros (never BatchNorm's NaN gradients)
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                   [tf.where(local_n > 0, g, tf.zeros_like(g)) for g in grads])
        on = tf.cast(self.awp_epoch >= self.awp_warmup_epochs, tf.float32)
        return [(w, on * scaled_direction(w, g, self.awp_gamma)) for w, g in zip(kernels, grads)]
