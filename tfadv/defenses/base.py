"""AdversarialModel: the one training/evaluation step every defense shares.

    train_step:  x_adv = stop_gradient(attack(network in inference mode, x, y))     (make examples)
                 loss  = defense_loss(x, y, x_adv)  [training mode, under the tape]  (hook 1)
                 loss += weight_decay · Σ ½‖W‖² over conv/dense kernels            (TF l2_loss)
                 update; metrics
    test_step:   clean metrics and adversarial metrics under ``eval_attack`` (a NoOpAttack makes
                 evaluation clean-only through the same path)

A defense subclass is a loss plus an attack configuration: it overrides ``defense_loss`` (and, where
the paper needs it, ``make_adversarial``) — never the loop. ``fit()``, callbacks, checkpoints and
``tf.distribute`` strategies work unchanged.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfadv import losses as losses_lib
from tfadv.attacks.core import Attack, ModelFn


class AdversarialModel(keras.Model):
    """Wraps a logits network with an attack and a defense loss.

    Args:
        network: a Keras model mapping images to logits (from ``models.build``).
        attack: the training attack (``tfadv.attacks.get(...)``).
        eval_attack: attack for ``evaluate()``/validation; defaults to ``attack``.
        weight_decay: coefficient c of ``c · Σ ½‖W‖²`` over conv/dense kernels (TF ``l2_loss``
            convention of Madry's and BAT's releases: 2e-4 there, i.e. Keras ``L2(1e-4)``).
        attack_training: generate examples with the network in training mode (Madry's release:
            BN batch statistics, moving averages updated); default inference mode.
        track_clean: also report clean loss/accuracy during training (one extra inference forward).
        eps_warmup_steps: if > 0, the training attack's eps and step grow linearly from 0 to their
            full value over this many optimizer steps (a curriculum on eps that keeps training from
            stalling at the constant predictor on MNIST at eps 0.3; logged as ``eps_scale``).
    """

    def __init__(self, network: keras.Model, *, attack: Attack, eval_attack: Optional[Attack] = None,
                 weight_decay: float = 0.0, attack_training: bool = False, track_clean: bool = True,
                 eps_warmup_steps: int = 0, name: Optional[str] = None, **kwargs):
        if not isinstance(network, keras.Model):
            raise TypeError(f"network must be a keras.Model returning logits. Received: {network!r}.")
        super().__init__(name=name or f"{type(self).__name__.lower()}_{network.name}", **kwargs)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0. Received: {weight_decay!r}.")
        self.network = network
        self.attack = attack
        self.eval_attack = eval_attack if eval_attack is not None else attack
        self.weight_decay = float(weight_decay)
        self.attack_training = bool(attack_training)
        self.track_clean = bool(track_clean)
        if int(eps_warmup_steps) != eps_warmup_steps or eps_warmup_steps < 0:
            raise ValueError(f"eps_warmup_steps must be a non-negative integer. "
                             f"Received: {eps_warmup_steps!r}.")
        self.eps_warmup_steps = int(eps_warmup_steps)
        self.num_classes = int(network.output_shape[-1])
        names = ["loss", "adv_loss", "adv_acc", "clean_loss", "clean_acc"]
        self._trackers = {n: (keras.metrics.SparseCategoricalAccuracy(name=n) if n.endswith("acc")
                              else keras.metrics.Mean(name=n)) for n in names}

    # ----------------------------------------------------------------------------- plumbing
    @property
    def metrics(self):
        return list(self._trackers.values())

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def model_fn(self, training: bool = False):
        """The logits callable attacks receive (BN mode fixed; its inference twin is known)."""
        return ModelFn(self.network, training)

    def decay_variables(self):
        """Conv/dense kernels (biases and BatchNorm parameters are not decayed, as released)."""
        return [v for v in self.network.trainable_variables
                if v.name in ("kernel", "depthwise_kernel", "pointwise_kernel")]

    def weight_decay_loss(self):
        if not self.weight_decay:
            return tf.constant(0.0)
        return self.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in self.decay_variables()])

    def _check_images(self, x):
        """Stops with the observed min/max when a batch leaves the attacks' declared pixel range."""
        x = tf.convert_to_tensor(x, tf.float32)
        rng = next((a.pixel_range for a in (self.attack, self.eval_attack)
                    if getattr(a, "pixel_range", None) is not None), None)
        if rng is not None:
            lo, hi = tf.reduce_min(x), tf.reduce_max(x)
            message = f"images must lie in the declared pixel range {rng}; received min/max"
            inside = tf.logical_and(lo >= rng.low - 1e-5, hi <= rng.high + 1e-5)
            tf.debugging.Assert(inside, [message, lo, hi])
        return x

    def _check_labels(self, y):
        y = tf.cast(y, tf.int32)
        tf.debugging.assert_non_negative(y, message="labels must be >= 0")
        tf.debugging.assert_less(y, self.num_classes,
                                 message=f"labels must be < num_classes={self.num_classes}")
        return y

    # ----------------------------------------------------------------------------- hooks
    def eps_scale(self):
        """Fraction of the training eps in use at this optimizer step (1 without warm-up)."""
        if not self.eps_warmup_steps:
            return tf.constant(1.0)
        step = tf.cast(self.optimizer.iterations + 1, tf.float32)  # 1 for the first update
        return tf.minimum(1.0, step / float(self.eps_warmup_steps))

    def make_adversarial(self, x, y):
        """Hook 2: adversarial examples, generated outside the tape and stop-gradient'ed."""
        kwargs = {"eps_scale": self.eps_scale()} if self.eps_warmup_steps else {}
        return tf.stop_gradient(self.attack(self.model_fn(self.attack_training), x, y, **kwargs))

    def defense_loss(self, x, y, x_adv):
        """Hook 1: the training objective (batch mean) and the adversarial logits, in training mode.

        Madry et al. (BAT eq. 1): minimise CE on the adversarial examples only.
        """
        logits_adv = self.network(x_adv, training=True)
        return tf.reduce_mean(losses_lib.ce(logits=logits_adv, labels=y)), logits_adv

    def training_callbacks(self, logdir: Optional[str] = None) -> list:
        """Hook 3: Keras callbacks the defense needs in ``fit()`` (per-epoch schedules such as
        Dynamic AT's c_t or a curriculum's k, and their logging under ``logdir``).
        ``tfadv.experiment.train`` adds them before its TensorBoard callback; none by default."""
        return []

    # ----------------------------------------------------------------------------- steps
    def train_step(self, data):
        x = self._check_images(data[0])
        y = self._check_labels(data[1])
        eps_scale = self.eps_scale()  # the value make_adversarial uses at this step
        x_adv = self.make_adversarial(x, y)
        with tf.GradientTape() as tape:
            loss, logits_adv = self.defense_loss(x, y, x_adv)
            total = loss + self.weight_decay_loss()
            # Gradients are summed over replicas by the optimizer: scale as Keras does.
            scaled = total / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, total.dtype)
        variables = self.network.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self._trackers["loss"].update_state(total)
        self._update_adv(y, logits_adv)
        if self.track_clean:
            self._update_clean(y, self.network(x, training=False))
        logs = self._results(exclude=None if self.track_clean else "clean_")
        if self.eps_warmup_steps:
            logs["eps_scale"] = eps_scale
        return logs

    def test_step(self, data):
        x = self._check_images(data[0])
        y = self._check_labels(data[1])
        logits_clean = self.network(x, training=False)
        x_adv = tf.stop_gradient(self.eval_attack(self.model_fn(False), x, y))
        logits_adv = self.network(x_adv, training=False)
        self._update_clean(y, logits_clean)
        self._update_adv(y, logits_adv)
        self._trackers["loss"].update_state(tf.reduce_mean(losses_lib.ce(logits=logits_adv, labels=y)))
        return self._results()

    def _update_adv(self, y, logits_adv):
        self._trackers["adv_loss"].update_state(losses_lib.ce(logits=logits_adv, labels=y))
        self._trackers["adv_acc"].update_state(y, logits_adv)

    def _update_clean(self, y, logits_clean):
        self._trackers["clean_loss"].update_state(losses_lib.ce(logits=logits_clean, labels=y))
        self._trackers["clean_acc"].update_state(y, logits_clean)

    def _results(self, exclude: Optional[str] = None):
        return {name: m.result() for name, m in self._trackers.items()
                if exclude is None or not name.startswith(exclude)}
