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
"""

from __future__ import annotations

import abc
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks.core import Attack, as_model_fn
from tfadv.attacks.registry import ATTACKS

DEFAULT_FINETUNE_STEPS = 500
NUM_Z_SAMPLES = 10  # L2L-DA sec. 4.3 / Fig. 2: 10 z samples per image


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
        self._compiled_generate = None  # a new fit may build new networks: trace again
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
            # One trace per attack object (and model), as Attack._compiled_attack.
            if getattr(self, "_compiled_generate", None) is None:
                self._compiled_generate = tf.function(self._generate, reduce_retracing=True)
            return tf.stop_gradient(self._compiled_generate(model_fn, x, y))
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
        base_filters, num_res_blocks: generator/discriminator widths (models.attack_generators).
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
        from models import attack_generators

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
        from models import attack_generators

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


class L2LDAAttack(GeneratorAttack):
    """A trained L2L-DA generator (Jang et al. 2019) fitted to the classifier under attack, then
    the worst case over ``num_samples`` latent samples per example (sec. 5.2.2, Table 2).

    prepare: Algorithm 1 lines 2-9 with the classifier fixed (no line 10): the batch is doubled
    with z₁, z₂ ~ N(0, I), the recursion of eq. (5) is unrolled for T steps
    (``tfadv.defenses.l2lda.unroll``, generator in training mode, classifier in inference mode)
    and the generator ascends eq. (8), L_cls + λ·L_div, through the unrolled recursion: SGD
    (lr 0.01, momentum 0.9), global gradient-norm clipping 1.0, then weight decay 1e-5·w added to
    the gradient (the release's PyTorch SGD ``weight_decay``).

    attack: for k = 1..K, z_k ~ N(0, I) (``stateless_normal`` seeded with (seed, k) when a seed is
    given, so the first samples do not depend on K), x_adv(z_k) = x_adv⁽ᵀ⁾ of eq. (5) with the
    generator in inference mode; per example the first successful sample is kept, else the one
    with the highest CE. An example is therefore robust only if all K samples fail.

    Args:
        generator_path: an L2L-DA run directory (its ``generator/``) or generator directory
            (``tfadv.defenses.l2lda.save_generator``).
        eps, step_size: ε and ε_step (default ε/4, sec. 5.1), input units.
        num_steps: T (10).
        num_samples: K latent samples per example (10); a deterministic generator
            (latent_dim 0) has one.
        lam: λ of eq. (8); default the release's per-dataset value by image channels (1 channel,
            MNIST: 0.02; 3 channels, CIFAR-10: 0.5), 0 for a deterministic generator.
        recursive, normalize_grad: the generator's training form (eq. 5 vs. one-shot; normalised
            vs. raw gradient input). Default: the L2L* form (one-shot, raw gradient) for a generator
            without z, y and δ inputs, else L2L-DA's.
        weight_decay, clip_norm: of the fine-tuning (1e-5, 1.0).
    """

    name = "l2lda"
    default_learning_rate = 0.01

    def __init__(self, *, generator_path: str, eps, step_size: Optional[float] = None,
                 num_steps: int = 10, num_samples: int = NUM_Z_SAMPLES, lam: Optional[float] = None,
                 recursive: Optional[bool] = None, normalize_grad: Optional[bool] = None,
                 weight_decay: float = 1e-5, clip_norm: float = 1.0, **params):
        super().__init__(eps=eps, **params)
        # Deferred: tfadv.defenses imports tfadv.attacks.
        from tfadv.defenses.l2lda import load_generator, unroll

        if not isinstance(generator_path, str) or not generator_path:
            raise ValueError("l2lda needs generator_path= (an L2L-DA run directory or its "
                             f"generator/ folder). Received: generator_path={generator_path!r}.")
        if not os.path.exists(generator_path):
            raise ValueError(f"The L2L-DA generator path does not exist. "
                             f"Received: generator_path={generator_path!r}.")
        self._unroll = unroll
        self.generator_path = generator_path
        self.generator = load_generator(generator_path)
        config = dict(self.generator.l2lda_config)
        self.latent_dim = int(config["latent_dim"])
        one_shot_form = not (self.latent_dim or config["use_delta"] or config["class_conditional"])
        self.step_size = 0.25 * self.eps if step_size is None else checks.check_radius(
            step_size, "step_size", "linf", self.pixel_range)
        self.num_steps = checks.check_int(num_steps, "num_steps", 1)
        self.num_samples = checks.check_int(num_samples, "num_samples", 1) if self.latent_dim else 1
        channels = int(config["input_shape"][-1])
        if lam is None:
            lam = (0.02 if channels == 1 else 0.5) if self.latent_dim else 0.0
        self.lam = checks.check_number(lam, "lam", positive=False)
        for key, value in (("recursive", recursive), ("normalize_grad", normalize_grad)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false. Received: {key}={value!r}.")
        self.recursive = (not one_shot_form) if recursive is None else recursive
        self.normalize_grad = (not one_shot_form) if normalize_grad is None else normalize_grad
        self.weight_decay = checks.check_number(weight_decay, "weight_decay", positive=False)
        self.clip_norm = checks.check_number(clip_norm, "clip_norm", positive=False)
        self._generator_config = config

    def get_config(self) -> dict:
        return {**super().get_config(), "generator_path": os.path.abspath(self.generator_path),
                "step_size": self.step_size, "num_steps": self.num_steps,
                "num_samples": self.num_samples, "lam": self.lam, "recursive": self.recursive,
                "normalize_grad": self.normalize_grad, "weight_decay": self.weight_decay,
                "clip_norm": self.clip_norm}

    def model_calls_per_example(self) -> int:
        """Per sample: T gradient evaluations in eq. (5) and one scoring forward."""
        return self.num_samples * (self.num_steps + 1)

    def _build(self, input_shape, num_classes):
        expected = tuple(int(d) for d in self._generator_config["input_shape"])
        if input_shape != expected:
            raise ValueError(f"The L2L-DA generator was built for images of shape {expected}. "
                             f"Received: images of shape {input_shape}.")
        if num_classes != int(self._generator_config["num_classes"]):
            raise ValueError(f"The L2L-DA generator is conditioned on "
                             f"{self._generator_config['num_classes']} classes but the classifier "
                             f"has {num_classes} logits. Received: {num_classes} logits.")
        super()._build(input_shape, num_classes)
        self._z_seed = keras.random.SeedGenerator(self.seed)
        self.g_optimizer = keras.optimizers.SGD(self.learning_rate, momentum=0.9)
        self.g_optimizer.build(self.generator.trainable_variables)

    def trajectory(self, model_fn, x, y, z, *, training=False, return_logits=False):
        """Eq. (5) unrolled with this attack's settings: ``[x_adv⁽¹⁾, ..., x_adv⁽ᵀ⁾]``."""
        return self._unroll(self.generator, model_fn, x, y, z, eps=self.eps,
                            step_size=self.step_size, num_steps=self.num_steps,
                            pixel_range=self.pixel_range, recursive=self.recursive,
                            normalize_grad=self.normalize_grad, training=training,
                            return_logits=return_logits)

    def sample_z(self, batch, k):
        """z_k ~ N(0, I) for a batch: seeded by (seed, k) when the attack has a seed."""
        shape = tf.stack([batch, self.latent_dim])
        if self.seed is None:
            return tf.random.normal(shape)
        return tf.random.stateless_normal(shape, seed=tf.stack([tf.constant(self.seed, tf.int32),
                                                                tf.cast(k, tf.int32)]))

    def _train_step(self, model_fn, x, y):
        batch = tf.shape(x)[0]
        xx, yy = tf.concat([x, x], 0), tf.concat([y, y], 0)
        z = keras.random.normal((2 * batch, self.latent_dim), seed=self._z_seed)
        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            x_advs, logits = self.trajectory(model_fn, xx, yy, z, training=True,
                                             return_logits=True)
            ce = tf.stack([losses_lib.ce(logits=lg, labels=yy) for lg in logits])  # (T, 2B), eq. 6
            if self.latent_dim:
                div = tf.stack([losses_lib.l2lda_diversity(x_adv_1=xa[:batch], x_adv_2=xa[batch:],
                                                           z_1=z[:batch], z_2=z[batch:])
                                for xa in x_advs])  # (T, B), eq. 7
            else:
                div = tf.zeros_like(ce[:, :batch])
            objective = tf.reduce_mean(losses_lib.l2lda_generator_objective(
                ce_1=ce[:, :batch], ce_2=ce[:, batch:], diversity=div, lam=self.lam))  # eq. 8
            loss = -objective
        grads = tape.gradient(loss, variables)
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        if self.weight_decay:
            grads = [g + self.weight_decay * v for g, v in zip(grads, variables)]
        self.g_optimizer.apply_gradients(zip(grads, variables))
        return loss

    def _generate(self, model_fn, x, y):
        batch = tf.shape(x)[0]

        def body(k, best_x, best_obj, best_succ):
            z = self.sample_z(batch, k)
            x_adv = self.trajectory(model_fn, x, y, z)[-1]
            logits = model_fn(x_adv)
            obj = losses_lib.ce(logits=logits, labels=y)
            succ = tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y)
            better = tf.logical_or(tf.logical_and(succ, tf.logical_not(best_succ)),
                                   tf.logical_and(tf.equal(succ, best_succ), obj > best_obj))
            return (k + 1, tf.where(checks.expand_to(better, x), x_adv, best_x),
                    tf.where(better, obj, best_obj), tf.logical_or(succ, best_succ))

        init = (tf.constant(0), x, tf.fill([batch], -np.inf), tf.zeros([batch], tf.bool))
        _, best_x, _, _ = tf.while_loop(lambda k, *_: k < self.num_samples, body, init,
                                        maximum_iterations=self.num_samples)
        return best_x


# ------------------------------------------------------------------------------------------------
@ATTACKS.register("l2lda")
def l2lda(*, generator_path, eps, pixel_range="[0,1]", finetune_steps=None, learning_rate=None,
          seed=None, name=None, **params) -> L2LDAAttack:
    """A trained L2L-DA generator fitted to the classifier under attack, worst of ``num_samples``
    z per example (needs ``prepare``)."""
    return L2LDAAttack(generator_path=generator_path, eps=eps, pixel_range=pixel_range,
                       finetune_steps=finetune_steps, learning_rate=learning_rate, seed=seed,
                       name=name, **params)


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
