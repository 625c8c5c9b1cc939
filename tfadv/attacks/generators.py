"""Generator-based attacks of L2L-DA's evaluation (Jang et al., ICCV 2019, sec. 5.1 "Metric", Table 2):
AdvGAN, GAP and L2L-DA, each *fine-tuned to the classifier under attack* before it attacks.

A generator attack has a fitting phase. It follows a small protocol beside ``Attack``'s:

    attack.needs_preparation            True
    attack.prepare(model_fn, dataset, *, steps=None)   fits the generator(s) on (x, y) batches of
                                        the training split against the fixed classifier
    attack(model_fn, x, y)              the attack itself (ValueError before prepare)

``tfadv.evaluation.evaluate(..., prepare_data=...)`` calls ``prepare`` once per attack before its
batches; ``scripts/eval_robustness.py`` supplies training-split batches (``--finetune_*`` flags).
The classifier is always called in inference mode and never updated; only the generator moves.

    advgan   x_adv = clip(x + eps·G(x)); G (and a discriminator D) trained on AdvGAN's loss
             L = w_adv·L_adv + w_gan·L_GAN + w_hinge·L_hinge (Xiao et al. eq. 1-4).
    gap      x_adv = clip(x + eps·G(x)/‖G(x)‖_∞) (GAP sec. 3.1, image-dependent, scaled to the
             L∞ ball); G trained on log CE to the least-likely class (or −log CE of the label).
    l2lda    a trained L2L-DA generator (``LOGDIR/generator/``) fine-tuned on eq. (8) without the
             classifier update, then the recursion of eq. (5) with ``num_samples`` z per example:
             the example counts as robust only if every sample fails (pointwise worst case).
             It lives in :mod:`tfadv.attacks.l2lda_attack` (on this module's base class), its
             recursion, update and files in :mod:`tfadv.attacks.l2lda_generator`.
"""

from __future__ import annotations

import abc
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks.base import Attack
from tfadv.attacks.model_fn import as_model_fn
from tfadv.attacks.registry import ATTACKS

DEFAULT_FINETUNE_STEPS = 500


def _batches(dataset, steps: int):
    """``steps`` batches ``(x, y)`` from ``dataset``, iterated again whenever it runs out."""
    done = 0
    while done < steps:
        empty = True
        for batch in dataset:
            empty = False
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError("Fine-tuning data must yield (images, labels) batches. "
                                 f"Received: an element of type {type(batch).__name__}.")
            yield batch
            done += 1
            if done >= steps:
                return
        if empty:
            raise ValueError(f"The fine-tuning dataset yielded no batch. Received: {dataset!r}.")


class GeneratorAttack(Attack):
    """Base of the generator attacks: ``prepare`` (the fitting phase) then ``__call__``.

    Args:
        eps: Linf radius in input units (see :mod:`tfadv.ranges`).
        pixel_range: images are clipped to it.
        finetune_steps: generator updates of ``prepare``; None: ``prepare``'s ``steps`` argument
            (the evaluation script's ``--finetune_steps``), else ``DEFAULT_FINETUNE_STEPS``.
        learning_rate: of the generator's optimizer (each attack's release default when None).
        seed: seeds the generator's initialisation (``keras.utils.set_random_seed(seed)`` when
            the networks are built, which also seeds Python's, NumPy's and TF's global RNGs) and
            the attack's random draws.
    """

    needs_preparation = True
    graph_safe = True
    default_learning_rate = 1e-3

    def __init__(self, *, eps: float, pixel_range="[0,1]", finetune_steps: Optional[int] = None,
                 learning_rate: Optional[float] = None, seed: Optional[int] = None,
                 name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        self.eps = checks.check_radius(eps, "eps", "linf", self.pixel_range)
        self.finetune_steps = None if finetune_steps is None else checks.check_int(
            finetune_steps, "finetune_steps", 1)
        self.learning_rate = checks.check_number(
            self.default_learning_rate if learning_rate is None else learning_rate, "learning_rate")
        self.seed = None if seed is None else checks.check_int(seed, "seed", 0)
        if name is not None:
            self.name = name
        self.history = []  # per fine-tuning step: the generator's loss (what it minimises)
        self._input_shape = None
        self._num_classes = None

    # -- the protocol ---------------------------------------------------------------------------
    @property
    def prepared(self) -> bool:
        return self._input_shape is not None and bool(self.history)

    def prepare(self, model_fn, dataset, *, steps: Optional[int] = None) -> dict:
        """Fits the generator against the fixed classifier ``model_fn`` (inference mode) on the
        ``(x, y)`` batches of ``dataset`` (iterated again as needed). Returns a summary with the
        generator loss over the first and the last tenth of the steps."""
        if steps is not None:
            steps = checks.check_int(steps, "steps", 1)
        total = self.finetune_steps or steps or DEFAULT_FINETUNE_STEPS
        model_fn = as_model_fn(model_fn, False)
        self.clear_compiled()  # a new fit may build new networks: trace again
        step_fn = None
        history = []
        for x, y in _batches(dataset, total):
            x = tf.convert_to_tensor(x, tf.float32)
            y = tf.cast(tf.convert_to_tensor(y), tf.int32)
            if step_fn is None:
                self.pixel_range.check_images(x.numpy(), what="Fine-tuning images")
                num_classes = int(model_fn(x[:1]).shape[-1])
                self._build(tuple(int(d) for d in x.shape[1:]), num_classes)
                step_fn = tf.function(self._train_step, reduce_retracing=True)
            history.append(float(step_fn(model_fn, x, y)))
        self.history = history
        k = max(1, len(history) // 10)
        return {"steps": len(history), "loss_first": float(np.mean(history[:k])),
                "loss_last": float(np.mean(history[-k:]))}

    def __call__(self, model_fn, x, y, **kwargs):
        """Adversarial images (stop-gradient) for ``x``; the classifier ``model_fn`` is called in
        inference mode."""
        if kwargs:
            raise ValueError(f"{self.name} takes no call options. Received: {sorted(kwargs)}.")
        if not self.prepared:
            raise ValueError(
                f"The generator attack '{self.name}' must be fitted to the classifier before it "
                "attacks: call attack.prepare(model_fn, dataset) (tfadv.evaluation.evaluate does "
                "when given prepare_data=). Received: an unprepared attack.")
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.cast(tf.convert_to_tensor(y), tf.int32)
        if tuple(x.shape[1:]) != self._input_shape:
            raise ValueError(f"{self.name} was fitted on images of shape {self._input_shape}. "
                             f"Received: images of shape {tuple(x.shape[1:])}.")
        model_fn = as_model_fn(model_fn, False)
        return checks.unless_empty(x, y, self.pixel_range, lambda: self._call(model_fn, x, y))

    def _call(self, model_fn, x, y):
        if tf.executing_eagerly():
            # One trace per model (and image shape) from the attack's compile cache.
            return tf.stop_gradient(self.compiled_call(model_fn, self._generate)(x, y))
        return tf.stop_gradient(self._generate(model_fn, x, y))

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "pixel_range": str(self.pixel_range),
                "finetune_steps": self.finetune_steps, "learning_rate": self.learning_rate,
                "seed": self.seed}

    # -- what subclasses implement ---------------------------------------------------------------
    def _build(self, input_shape, num_classes):
        """Creates the networks and optimizers for images of ``input_shape``."""
        self._input_shape, self._num_classes = input_shape, num_classes

    @abc.abstractmethod
    def _train_step(self, model_fn, x, y):
        """One generator update; returns the loss it minimises (scalar)."""

    @abc.abstractmethod
    def _generate(self, model_fn, x, y):
        """The adversarial images of the fitted generator(s) for ``(x, y)``."""

    def _clip(self, x):
        return tf.clip_by_value(x, self.pixel_range.low, self.pixel_range.high)

    def _init_seed(self):
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)


# ------------------------------------------------------------------------------------------------
class AdvGANAttack(GeneratorAttack):
    """AdvGAN (Xiao et al., IJCAI 2018) fitted to the classifier under attack.

    Perturbation eps·G(x) (tanh output scaled into the L∞ ball; the paper clips G's output to
    the bound), x_adv = clip(x + eps·G(x)). G minimises (eq. 4)

        L = w_adv·L_adv + w_gan·L_GAN + w_hinge·L_hinge
        L_adv   = E max(z_y(x_adv) − max_{i≠y} z_i(x_adv), −κ)            (eq. 2, C&W f6, untargeted)
        L_GAN   = E (σ(D(x_adv)) − 1)²                                   (least-squares form of eq. 1)
        L_hinge = E max(0, ‖eps·G(x)‖₂ − c)                               (eq. 3)

    and D minimises E (σ(D(x)) − 1)² + E σ(D(x_adv))² (x_adv stop-gradient), one D and one G
    update per batch, Adam (lr 1e-3) for both.

    Args:
        kappa: κ of L_adv (0: stop pushing once misclassified).
        hinge_bound: c in input units; default 0.5·eps·sqrt(H·W·C) (half the L2 size of a corner
            of the L∞ ball).
        adv_weight, gan_weight, hinge_weight: w_adv, w_gan, w_hinge (10, 1, 1).
        base_filters, num_res_blocks: generator/discriminator widths (tfadv.models.attack_generators).
    """

    name = "advgan"

    def __init__(self, *, eps, kappa: float = 0.0, hinge_bound: Optional[float] = None,
                 adv_weight: float = 10.0, gan_weight: float = 1.0, hinge_weight: float = 1.0,
                 base_filters: int = 8, num_res_blocks: int = 4, **params):
        super().__init__(eps=eps, **params)
        self.kappa = checks.check_number(kappa, "kappa", positive=False)
        self.hinge_bound = None if hinge_bound is None else checks.check_number(
            hinge_bound, "hinge_bound", positive=False)
        self.adv_weight = checks.check_number(adv_weight, "adv_weight", positive=False)
        self.gan_weight = checks.check_number(gan_weight, "gan_weight", positive=False)
        self.hinge_weight = checks.check_number(hinge_weight, "hinge_weight", positive=False)
        self.base_filters = checks.check_int(base_filters, "base_filters", 1)
        self.num_res_blocks = checks.check_int(num_res_blocks, "num_res_blocks", 0)

    def get_config(self) -> dict:
        return {**super().get_config(), "kappa": self.kappa, "hinge_bound": self.hinge_bound,
                "adv_weight": self.adv_weight, "gan_weight": self.gan_weight,
                "hinge_weight": self.hinge_weight, "base_filters": self.base_filters,
                "num_res_blocks": self.num_res_blocks}

    def model_calls_per_example(self) -> int:
        return 0  # the classifier is not evaluated to generate (only during prepare)

    def _build(self, input_shape, num_classes):
        from tfadv.models import attack_generators

        super()._build(input_shape, num_classes)
        self._init_seed()
        self.generator = attack_generators.advgan_generator(
            input_shape, base_filters=self.base_filters, num_res_blocks=self.num_res_blocks)
        self.discriminator = attack_generators.advgan_discriminator(
            input_shape, base_filters=self.base_filters)
        self._bound = (0.5 * self.eps * float(np.sqrt(np.prod(input_shape)))
                       if self.hinge_bound is None else self.hinge_bound)
        self.g_optimizer = keras.optimizers.Adam(self.learning_rate)
        self.d_optimizer = keras.optimizers.Adam(self.learning_rate)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def _perturbation(self, x, training):
        return self.eps * self.generator(x, training=training)

    def _generate(self, model_fn, x, y):
        return self._clip(x + self._perturbation(x, False))

    def _train_step(self, model_fn, x, y):
        with tf.GradientTape() as d_tape:
            x_adv = tf.stop_gradient(self._generate(model_fn, x, y))
            real = tf.sigmoid(self.discriminator(x, training=True))
            fake = tf.sigmoid(self.discriminator(x_adv, training=True))
            d_loss = tf.reduce_mean(tf.square(real - 1.0)) + tf.reduce_mean(tf.square(fake))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
        with tf.GradientTape() as g_tape:
            pert = self._perturbation(x, True)
            x_adv = self._clip(x + pert)
            gan = tf.reduce_mean(tf.square(tf.sigmoid(self.discriminator(x_adv, training=False))
                                           - 1.0))
            # L_adv = max(z_y − max_{i≠y} z_i, −κ) = relu(z_y − max + κ) − κ; cw_margin is −relu(·).
            adv = tf.reduce_mean(-losses_lib.cw_margin(logits=model_fn(x_adv), labels=y,
                                                       kappa=self.kappa)) - self.kappa
            l2 = tf.norm(tf.reshape(pert, [tf.shape(pert)[0], -1]), axis=1)
            hinge = tf.reduce_mean(tf.nn.relu(l2 - self._bound))
            g_loss = self.adv_weight * adv + self.gan_weight * gan + self.hinge_weight * hinge
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars))
        return g_loss


class GAPAttack(GeneratorAttack):
    """Generative Adversarial Perturbations (Poursaeed et al., CVPR 2018), image-dependent,
    fitted to the classifier under attack.

    δ = eps · G(x) / max|G(x)| per image (GAP sec. 3.1: the generator output is scaled to the
    L∞ budget), x_adv = clip(x + δ). G minimises, with Adam (lr 2e-4, β₁ 0.5):

        loss="ll": log CE(f(x_adv), y_ll), y_ll the least-likely class of the clean prediction
                   (GAP's non-targeted image-dependent objective);
        loss="ce": −log CE(f(x_adv), y) (fooling loss on the true label).

    Args:
        loss: ``ll`` or ``ce``.
        base_filters, num_res_blocks: widths of the ResNet generator (64 and 6 in GAP).
    """

    name = "gap"
    default_learning_rate = 2e-4
    LOSSES = ("ll", "ce")

    def __init__(self, *, eps, loss: str = "ll", base_filters: int = 64, num_res_blocks: int = 6,
                 **params):
        super().__init__(eps=eps, **params)
        if loss not in self.LOSSES:
            raise ValueError(f"Unknown GAP loss. Expected one of {self.LOSSES}. Received: loss={loss!r}.")
        self.loss = loss
        self.base_filters = checks.check_int(base_filters, "base_filters", 1)
        self.num_res_blocks = checks.check_int(num_res_blocks, "num_res_blocks", 0)

    def get_config(self) -> dict:
        return {**super().get_config(), "loss": self.loss, "base_filters": self.base_filters,
                "num_res_blocks": self.num_res_blocks}

    def model_calls_per_example(self) -> int:
        return 0

    def _build(self, input_shape, num_classes):
        from tfadv.models import attack_generators

        super()._build(input_shape, num_classes)
        self._init_seed()
        self.generator = attack_generators.gap_generator(
            input_shape, base_filters=self.base_filters, num_res_blocks=self.num_res_blocks)
        self.g_optimizer = keras.optimizers.Adam(self.learning_rate, beta_1=0.5)
        self.g_optimizer.build(self.generator.trainable_variables)

    def perturbation(self, x, training=False):
        """δ = eps · G(x) / ‖G(x)‖_∞ per image (GAP sec. 3.1)."""
        g = self.generator(x, training=training)
        peak = tf.reduce_max(tf.abs(tf.reshape(g, [tf.shape(g)[0], -1])), axis=1)
        return self.eps * g / checks.expand_to(tf.maximum(peak, 1e-12), g)

    def _generate(self, model_fn, x, y):
        # max|δ| = eps up to rounding; the clip to ±eps keeps float32 rounding inside the ball.
        delta = tf.clip_by_value(self.perturbation(x, False), -self.eps, self.eps)
        return self._clip(x + delta)

    def _train_step(self, model_fn, x, y):
        targets = None
        if self.loss == "ll":
            targets = tf.argmin(model_fn(x), axis=-1, output_type=tf.int32)
        with tf.GradientTape() as tape:
            x_adv = self._clip(x + self.perturbation(x, True))
            logits = model_fn(x_adv)
            if self.loss == "ll":
                loss = tf.math.log(tf.reduce_mean(losses_lib.ce(logits=logits, labels=targets)))
            else:
                loss = -tf.math.log(tf.reduce_mean(losses_lib.ce(logits=logits, labels=y)))
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss


# ------------------------------------------------------------------------------------------------
@ATTACKS.register("advgan")
def advgan(*, eps, pixel_range="[0,1]", finetune_steps=None, learning_rate=None, seed=None,
           name=None, **params) -> AdvGANAttack:
    """AdvGAN fitted to the classifier under attack (needs ``prepare``)."""
    return AdvGANAttack(eps=eps, pixel_range=pixel_range, finetune_steps=finetune_steps,
                        learning_rate=learning_rate, seed=seed, name=name, **params)


@ATTACKS.register("gap")
def gap(*, eps, pixel_range="[0,1]", finetune_steps=None, learning_rate=None, seed=None,
        name=None, **params) -> GAPAttack:
    """GAP (image-dependent) fitted to the classifier under attack (needs ``prepare``)."""
    return GAPAttack(eps=eps, pixel_range=pixel_range, finetune_steps=finetune_steps,
                     learning_rate=learning_rate, seed=seed, name=name, **params)
