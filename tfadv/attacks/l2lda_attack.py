"""The L2L-DA attack of the paper's evaluation (Jang et al., ICCV 2019, sec. 5.2.2, Table 2): a
trained L2L-DA generator fine-tuned to the classifier under attack (``prepare``), then the worst of
``num_samples`` latent samples per example.

A generator attack (:class:`tfadv.attacks.generators.GeneratorAttack`); the recursion of eq. (5),
the objective of eq. (8), the generator update and the generator's files are
:mod:`tfadv.attacks.l2lda_generator`'s, shared with the defense (``tfadv.defenses.l2lda``).
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import losses as losses_lib
from tfadv.attacks import checks
from tfadv.attacks import l2lda_generator as generator_lib
from tfadv.attacks.generators import GeneratorAttack
from tfadv.attacks.registry import ATTACKS

NUM_Z_SAMPLES = 10  # L2L-DA sec. 4.3 / Fig. 2: 10 z samples per image


class L2LDAAttack(GeneratorAttack):
    """A trained L2L-DA generator (Jang et al. 2019) fitted to the classifier under attack, then
    the worst case over ``num_samples`` latent samples per example (sec. 5.2.2, Table 2).

    prepare: Algorithm 1 lines 2-9 with the classifier fixed (no line 10): the batch is doubled
    with z₁, z₂ ~ N(0, I), the recursion of eq. (5) is unrolled for T steps
    (:func:`~tfadv.attacks.l2lda_generator.unroll`, generator in training mode, classifier in
    inference mode) and the generator ascends eq. (8), L_cls + λ·L_div with the paper's mean over
    the T steps (:func:`~tfadv.attacks.l2lda_generator.generator_objective`, the defense's own),
    through the unrolled recursion: SGD (lr 0.01, momentum 0.9), global gradient-norm clipping
    1.0, then weight decay 1e-5·w added to the gradient (the release's PyTorch SGD
    ``weight_decay``; :func:`~tfadv.attacks.l2lda_generator.apply_generator_update`).

    attack: for k = 1..K, z_k ~ N(0, I) (``stateless_normal`` seeded with (seed, k) when a seed is
    given, so the first samples do not depend on K), x_adv(z_k) = x_adv⁽ᵀ⁾ of eq. (5) with the
    generator in inference mode; per example the first successful sample is kept, else the one
    with the highest CE. An example is therefore robust only if all K samples fail.

    Args:
        generator_path: an L2L-DA run directory (its ``generator/``) or generator directory
            (:func:`tfadv.attacks.l2lda_generator.save_generator`).
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
        if not isinstance(generator_path, str) or not generator_path:
            raise ValueError("l2lda needs generator_path= (an L2L-DA run directory or its "
                             f"generator/ folder). Received: generator_path={generator_path!r}.")
        if not os.path.exists(generator_path):
            raise ValueError(f"The L2L-DA generator path does not exist. "
                             f"Received: generator_path={generator_path!r}.")
        self.generator_path = generator_path
        self.generator = generator_lib.load_generator(generator_path)
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
        return generator_lib.unroll(self.generator, model_fn, x, y, z, eps=self.eps,
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
        """Algorithm 1, lines 2-9 against the fixed classifier: one ascent of eq. (8)."""
        z = keras.random.normal((2 * tf.shape(x)[0], self.latent_dim), seed=self._z_seed)
        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            objective, _, _, _ = generator_lib.generator_objective(
                self.generator, model_fn, x, y, z, eps=self.eps, step_size=self.step_size,
                num_steps=self.num_steps, pixel_range=self.pixel_range, lam=self.lam,
                recursive=self.recursive, normalize_grad=self.normalize_grad)
            loss = -objective
        generator_lib.apply_generator_update(self.g_optimizer, tape.gradient(loss, variables),
                                             variables, clip_norm=self.clip_norm,
                                             weight_decay=self.weight_decay)
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


@ATTACKS.register("l2lda")
def l2lda(*, generator_path, eps, pixel_range="[0,1]", finetune_steps=None, learning_rate=None,
          seed=None, name=None, **params) -> L2LDAAttack:
    """A trained L2L-DA generator fitted to the classifier under attack, worst of ``num_samples``
    z per example (needs ``prepare``)."""
    return L2LDAAttack(generator_path=generator_path, eps=eps, pixel_range=pixel_range,
                       finetune_steps=finetune_steps, learning_rate=learning_rate, seed=seed,
                       name=name, **params)
