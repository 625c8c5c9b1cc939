"""AdversarialModel: the one training/evaluation step every defense shares.

    train_step:  (``replays`` times on the batch, 1 but for Free AT)
                 examples = make_adversarial(x, y)        (hook 2: an AdversarialExamples, outside
                                                           the tape, network in inference mode)
                 w += v for each (w, v) of weight_perturbation(x, y, examples)  (hook 5; AWP)
                 loss  = defense_loss(x, y, examples)  [training mode, under the tape]  (hook 1)
                 loss += weight_decay · Σ ½‖W‖² over conv/dense kernels            (TF l2_loss)
                 update; w -= v; metrics
                 carry_input_gradient(..., ∂loss/∂x_adv of the same backward pass)  (hook 6; Free)
    test_step:   clean metrics and adversarial metrics under ``eval_attack`` (a NoOpAttack makes
                 evaluation clean-only through the same path)

A defense subclass is a loss plus an attack configuration: it overrides ``defense_loss`` (and, where
the paper needs it, ``make_adversarial``) — never the loop. What ``make_adversarial`` computes for
the loss (BAT's adversarial labels, Dynamic AT's per-example CE) travels to ``defense_loss`` on the
:class:`AdversarialExamples` it returns (a subclass of it declares the extra fields). A defense's
own logs are Keras metrics it lists in ``defense_metrics`` and updates in its hooks; the steps
return every metric of the phase (:attr:`AdversarialModel.training_metrics`,
:attr:`AdversarialModel.evaluation_metrics`), so ``fit()``'s epoch logs are the metrics read across
replicas. Callbacks a defense needs in every ``fit()`` (a per-epoch schedule) are its
``required_callbacks``. ``fit()``, callbacks, checkpoints and ``tf.distribute`` strategies work
unchanged. Only public Keras API is overridden, but for ``_maybe_symbolic_build`` (no public route
skips Keras' peek at a batch under a strategy; see there).

Under a strategy (BAT ImageNet sec. 5: synchronous data-parallel training as in the tensorpack code)
``train_step`` runs once per replica on its slice of the global batch: the examples are made per
replica, each replica's batch-mean loss is weighted by its share of the GLOBAL batch (so unequal
or empty final slices still give the global-batch mean; weight decay is added once), the summed
gradients update the mirrored weights, BatchNorm moving statistics are averaged over the replicas
(weighted by their examples) so the copies never drift apart, and epoch logs are the metrics
aggregated over replicas.

The metrics of the two phases (and :class:`~tfadv.defenses.metrics.LatestValue`, a schedule's log)
are :mod:`tfadv.defenses.metrics`; the replica arithmetic of ``train_step`` is
:mod:`tfadv.defenses.replicas`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import keras
import tensorflow as tf

from tfadv import batches as batches_lib
from tfadv import distribute as distribute_lib
from tfadv import losses as losses_lib
from tfadv.attacks import checks
from tfadv.attacks import fosc as fosc_lib
from tfadv.attacks.core import Attack, ModelFn
from tfadv.defenses import metrics as metrics_lib
from tfadv.defenses import replicas as replicas_lib


@dataclasses.dataclass(frozen=True)
class AdversarialExamples:
    """What ``make_adversarial`` hands to ``defense_loss`` within one training step.

    ``x_adv`` is the batch of examples the defense trains on (gradients stopped). A defense whose
    loss needs more from the generation step (BAT's adversarial labels y', Dynamic AT's
    per-example CE) subclasses this frozen dataclass with those fields; the instance is a
    ``tf.nest`` structure (its fields, in order), so it may also be returned by a ``tf.function``.
    """

    x_adv: Any

    def __tf_flatten__(self):
        fields = dataclasses.fields(self)
        return tuple(f.name for f in fields), tuple(getattr(self, f.name) for f in fields)

    @classmethod
    def __tf_unflatten__(cls, names, values):
        return cls(**dict(zip(names, values)))


class AdversarialModel(metrics_lib.PhaseMetrics, keras.Model):
    """Wraps a logits network with an attack and a defense loss.

    Args:
        network: a Keras model mapping images to logits (from ``tfadv.models.build``).
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
        attack_fp32: under a mixed-precision policy, trace ``make_adversarial`` in float32 (the
            defense loss and update stay mixed); no effect in float32.
    """

    #: The training objective ``defense_loss`` minimises, named in ``compile``'s refusal of a loss.
    loss_description = "mean CE on the adversarial examples"

    def __init__(self, network: keras.Model, *, attack: Attack, eval_attack: Optional[Attack] = None,
                 weight_decay: float = 0.0, attack_training: bool = False, track_clean: bool = True,
                 eps_warmup_steps: int = 0, attack_fp32: bool = False, name: Optional[str] = None,
                 **kwargs):
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
        self.attack_fp32 = bool(attack_fp32)
        self.num_classes = int(network.output_shape[-1])
        self._trackers = metrics_lib.base_trackers(eps_warmup=bool(self.eps_warmup_steps))
        self._evaluating = False
        # The network (and a defense's other networks) are built: nothing to trace on a batch.
        self.built = True

    # ----------------------------------------------------------------------------- plumbing

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, **kwargs):
        """Keras ``compile`` with the optimizer and the execution options (``run_eagerly``,
        ``jit_compile``, ``steps_per_execution``, ...) only: the defense computes its own loss
        (``defense_loss``) and metrics, so a ``loss``, ``loss_weights``, ``metrics`` or
        ``weighted_metrics`` (which ``train_step`` would never use) is refused."""
        given = {name: value for name, value in (("loss", loss), ("loss_weights", loss_weights),
                                                 ("metrics", metrics),
                                                 ("weighted_metrics", weighted_metrics))
                 if value is not None}
        if given:
            raise ValueError(
                f"{type(self).__name__} computes its own loss ({self.loss_description}, plus "
                f"weight decay) and metrics ({', '.join(m.name for m in self.metrics)}); compile() takes "
                f"only the optimizer and execution options. Received: "
                + ", ".join(f"{name}={value!r}" for name, value in given.items()) + ".")
        super().compile(optimizer=optimizer, **kwargs)

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
        y = checks.as_class_ids(y, what="Training labels")
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

    def make_adversarial(self, x, y) -> AdversarialExamples:
        """Hook 2: the examples to train on, generated outside the tape and stop-gradient'ed, as an
        :class:`AdversarialExamples` (a subclass of it carries whatever else ``defense_loss``
        needs from this step). Default: the training attack's x_adv."""
        kwargs = {"eps_scale": self.eps_scale()} if self.eps_warmup_steps else {}
        return AdversarialExamples(tf.stop_gradient(
            self.attack(self.model_fn(self.attack_training), x, y, **kwargs)))

    def defense_loss(self, x, y, examples: AdversarialExamples):
        """Hook 1: the training objective (batch mean) and the logits of ``examples.x_adv``
        (``adv_loss``/``adv_acc`` are computed from them), in training mode.

        Madry et al. (BAT eq. 1): minimise CE on the adversarial examples only.
        """
        logits_adv = self.network(examples.x_adv, training=True)
        return tf.reduce_mean(losses_lib.ce(logits=logits_adv, labels=y)), logits_adv

    def required_callbacks(self) -> list:
        """Hook 3: Keras callbacks every ``fit()`` of this defense needs (per-epoch schedules such
        as Dynamic AT's c_t or a curriculum's k); ``fit()`` adds each one whose type the caller did
        not pass. None by default."""
        return []

    def training_callbacks(self, logdir: Optional[str] = None) -> list:
        """Hook 4: the callbacks of a training run under ``logdir``: ``required_callbacks`` plus
        what the defense writes there (FOSC histograms, generator checkpoints).
        ``tfadv.experiment.train`` adds them before its TensorBoard callback."""
        return self.required_callbacks()

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Keras ``fit`` with ``required_callbacks()`` added to ``callbacks`` (each one whose type
        is not there already), so that a plain ``model.fit(...)`` advances the schedules."""
        callbacks = list(callbacks or [])
        for required in self.required_callbacks():
            if not any(isinstance(c, type(required)) for c in callbacks):
                callbacks.insert(0, required)
        return super().fit(
            x=x, y=y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
            class_weight=class_weight, sample_weight=sample_weight, initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq)

    def weight_perturbation(self, x, y, examples: AdversarialExamples) -> list:
        """Hook 5: ``[(variable, v), ...]`` added to the network's weights after
        ``make_adversarial`` (the examples are built at w), kept for the update's loss, gradient
        and optimizer step (taken at w + v), and subtracted again after it (AWP,
        :mod:`tfadv.defenses.awp`). Every replica must return the same v. None by default."""
        return []

    def carry_input_gradient(self, x, y, examples: AdversarialExamples, gradient) -> None:
        """Hook 6: called after the update when the class sets ``input_gradient = True``, with the
        gradient of the update's (positively scaled) loss with respect to ``examples.x_adv``, from
        the same backward pass as the weights' gradient (Free AT's perturbation step,
        :mod:`tfadv.defenses.free`). Nothing by default."""

    # ----------------------------------------------------------------------------- steps
    #: Each batch is replayed this many times per ``train_step``, each replay a full update
    #: (make_adversarial, loss, optimizer step): Free AT's m. 1 by default.
    replays = 1
    #: Whether ``train_step`` also differentiates the update's loss by ``examples.x_adv`` and hands
    #: the result to :meth:`carry_input_gradient`.
    input_gradient = False

    def train_step(self, data):
        x = self._check_images(data[0])
        y = self._check_labels(data[1])
        logs = None
        for _ in range(int(self.replays)):  # unrolled: each replay's update sees the last one's
            logs = self._update(x, y)
        return logs

    def _update(self, x, y):
        eps_scale = self.eps_scale()  # the value make_adversarial uses at this step
        if self.attack_fp32:
            with distribute_lib.compute_in_float32(self.network):
                examples = self.make_adversarial(x, y)
        else:
            examples = self.make_adversarial(x, y)
        if not isinstance(examples, AdversarialExamples):
            raise ValueError(f"{type(self).__name__}.make_adversarial must return an "
                             f"AdversarialExamples (tfadv.defenses.base). Received: {examples!r}.")
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        local_n, share = replicas_lib.global_batch_share(y, replicas)
        perturbation = self.weight_perturbation(x, y, examples)
        replicas_lib.shift_weights(perturbation, 1.0)
        with tf.GradientTape(persistent=replicas > 1) as tape:
            if self.input_gradient:
                tape.watch(examples.x_adv)
            # An empty slice runs no forward/backward (oneDNN fails on zero-size batches): its
            # loss counts 0 below and its gradients are zeros, as they were.
            loss, logits_adv = batches_lib.if_nonempty(
                y, lambda: self._float32_loss(x, y, examples),
                lambda: (tf.constant(0.0), self._no_logits()))
            decay = self.weight_decay_loss()
            # The optimizer SUMS the replicas' gradients: this replica's batch mean weighted by its
            # share of the global batch, plus 1/replicas of the (replicated) weight decay, sums to
            # the global-batch objective. An empty slice contributes 0 (its mean is NaN).
            part = share * loss if replicas == 1 else tf.where(local_n > 0, share * loss, 0.0)
            # scale_loss: the LossScaleOptimizer's factor under fp16 (identity otherwise).
            if replicas == 1:
                scaled = self.optimizer.scale_loss(part + decay)
            else:
                scaled_part = self.optimizer.scale_loss(part)
                scaled_decay = self.optimizer.scale_loss(decay / replicas)
        variables = self.network.trainable_variables
        if self.input_gradient:
            variables = variables + [examples.x_adv]
        if replicas == 1:
            grads = tape.gradient(scaled, variables)
        else:  # BatchNorm on an empty slice yields NaN gradients: zero them, keep the decay share
            data = tape.gradient(scaled_part, variables)
            reg = tape.gradient(scaled_decay, variables)
            grads = [None if g is None and r is None else
                     (0.0 if g is None else tf.where(local_n > 0, g, tf.zeros_like(g)))
                     + (0.0 if r is None else r) for g, r in zip(data, reg)]
            del tape
        if self.input_gradient:
            input_grad, grads, variables = grads[-1], grads[:-1], variables[:-1]
        self.optimizer.apply_gradients(zip(grads, variables))
        replicas_lib.shift_weights(perturbation, -1.0)  # w + v - step - v: the step at w + v
        if self.input_gradient:
            self.carry_input_gradient(x, y, examples, input_grad)
        if replicas > 1:
            replicas_lib.sync_moving_statistics(self.network, local_n)
        # Summed over replicas (value x replicas, weight 1/replicas) this is one entry per step of
        # the global-batch objective, exactly what a single device records.
        self._trackers["loss"].update_state(part * replicas + decay, sample_weight=1.0 / replicas)
        self._update_adv(y, logits_adv)
        if self.track_clean:
            self._update_clean(y, self.logits(x))
        if self.eps_warmup_steps:
            self._trackers["eps_scale"].update_state(eps_scale)
        return self._step_logs(self.training_metrics)

    def test_step(self, data):
        x = self._check_images(data[0])
        y = self._check_labels(data[1])
        logits_clean = self.logits(x)
        x_adv = tf.stop_gradient(self.eval_attack(self.model_fn(False), x, y))
        logits_adv = self.logits(x_adv)
        self._update_clean(y, logits_clean)
        self._update_adv(y, logits_adv)
        # Per-example CE: the mean over all examples (an empty replica slice adds nothing).
        self._trackers["loss"].update_state(losses_lib.ce(logits=logits_adv, labels=y))
        return self._step_logs(self.evaluation_metrics)

    def _float32_loss(self, x, y, examples):
        loss, logits_adv = self.defense_loss(x, y, examples)
        return tf.cast(loss, tf.float32), logits_adv

    def logits(self, x, training: bool = False):
        """The network's logits for ``x``; a batch without examples (an empty replica slice) is
        never run through it (see :mod:`tfadv.batches`): zero rows of its output dtype."""
        return batches_lib.if_nonempty(x, lambda: self.network(x, training=training),
                                       self._no_logits)

    def fosc_and_loss(self, x_adv, x, y, eps):
        """(FOSC, per-example CE, logits) at ``x_adv`` under the inference-mode network in the
        training attack's norm (:func:`tfadv.attacks.fosc.fosc_and_loss`); an empty batch runs nothing."""
        def empty():
            logits = self._no_logits()
            return tf.zeros([0], tf.float32), tf.zeros([0], logits.dtype), logits

        return batches_lib.if_nonempty(x_adv, lambda: fosc_lib.fosc_and_loss(
            self.model_fn(False), x_adv, x, y, eps, norm=self.attack.norm), empty)

    def _no_logits(self):
        """The network's logits for an empty batch, computed without running it: zero rows in
        the compute dtype of the layer that makes them (as it is now: ``compute_in_float32``)."""
        layer = self.network
        while isinstance(layer, keras.Model) and getattr(layer, "outputs", None) and \
                getattr(layer.outputs[0], "_keras_history", None):
            layer = layer.outputs[0]._keras_history[0]
        dtype = getattr(layer, "compute_dtype", None) or self.network.compute_dtype
        return tf.zeros([0, self.num_classes], dtype)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """The one Keras-private override, for want of a public route: under a strategy scope
        Keras 3's ``fit``/``evaluate`` call this unconditionally, and it opens an extra iterator on
        the training data to average a peeked batch with ``strategy.reduce``, which fails on the
        ``(x, y)`` tuple under MultiWorkerMirroredStrategy and would advance a seeded reshuffle by
        one epoch. The model is built at construction and ``compile()`` refuses a loss or metrics,
        so only the optimizer can be left to build."""
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
