"""L2L-DA (Jang et al., ICCV 2019): adversarial training against a learned recursive, stochastic
generator of attacks; and the L2L baseline (Chen et al. 2018, the paper's L2L*).

One training step (Algorithm 1), in ``make_adversarial`` (hook 2) and ``defense_loss`` (hook 1):

1. the batch is doubled, x ← [x; x], y ← [y; y], z ← [z₁; z₂] with z ~ N(0, I) drawn per example
   (line 2);
2. the generator's recursion (eq. 5, lines 3-6,
   :func:`tfadv.attacks.l2lda_generator.unroll`), δ⁽⁰⁾ = 0, t = 0..T-1:
       δ⁽ᵗ⁺¹⁾     = Proj_S(δ⁽ᵗ⁾ + ε_step · g_φ(x, y, z, δ⁽ᵗ⁾, ∇̂ₓL(x_adv⁽ᵗ⁾)))
       x_adv⁽ᵗ⁺¹⁾ = Proj_X(x + δ⁽ᵗ⁺¹⁾)
   with x_adv⁽⁰⁾ = x, ∇̂ the CE gradient normalised per example and channel
   (:func:`tfadv.attacks.l2lda_generator.normalize_gradient`), the classifier in inference mode;
3. the generator ascends eq. (8), L_cls (eq. 6) + λ·L_div (eq. 7), back-propagating through the
   whole unrolled recursion (line 9): SGD momentum 0.9, gradient-norm clipping 1.0, weight decay
   1e-5, its own optimizer;
4. the classifier descends one mean CE over [x; x_adv⁽ᵀ⁾(z₁); x_adv⁽ᵀ⁾(z₂)] in training mode
   (line 10, as the release's ``f_update_style=1``), through AdversarialModel's update with the
   compiled optimizer (global-norm clipping 1.0 added at ``compile``) and weight decay 1e-5.

What the authors' release (YunseokJANG/l2l-da, ``adv_defence/trainer.py``) does where the paper is
silent, and is followed here:

* the gradient fed to the generator is **detached** (computed on a detached copy of x_adv⁽ᵗ⁾ and
  ``.detach()``-ed), while the accumulated perturbation δ is **not**: the generator's gradient
  reaches earlier steps through δ⁽ᵗ⁾ and x_adv⁽ᵗ⁾, never through ∇̂;
* the classifier is in **eval mode** (BN moving statistics) while the examples are generated and
  for L_cls; the generator is in train mode (BN batch statistics over the doubled batch);
* ∇̂ = ∇ / ‖∇ + 1e-15‖₂ over H×W per example and channel; L_div uses means of absolute values
  (``_dsgan_loss``) and the raw z (not its MLP code);
* the classifier's update sees [x; x_adv(z₁); x_adv(z₂)] from the generator *before* its update.

Ablations (Table 1): ``recursive=False`` is the one-shot generator (R X): every step restarts from
δ = 0, so with T = 1 and ε_step = ε it is eq. (4), x_adv = Proj_X(x + ε·g(x, ∇)) (the factory's
defaults for ``recursive=False``); ``diversity=False`` drops L_div (D X). ``use_delta`` and
``class_conditional`` are the generator's Table 1(b) switches. ``l2l`` is Chen et al.'s L2L as the
paper reproduced it (L2L*): one-shot, deterministic (no z), no y, no δ, no gradient normalisation,
no L_div, with the same U-Net.

The recursion, eq. (8) on the doubled batch, the generator's update step and its files are
:mod:`tfadv.attacks.l2lda_generator`'s, shared with the evaluation attack ``l2lda``
(``tfadv.attacks.l2lda_attack``); this module adds the classifier's side and the training loop.
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import batches as batches_lib
from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks import l2lda_generator as generator_lib
from tfadv.callbacks import GeneratorCheckpoint
from tfadv.defenses.base import AdversarialExamples, AdversarialModel

# Sec. 5.1 / the release's run commands: λ per dataset (the config default 4.0 is not used).
LAMBDA = {"mnist": 0.02, "cifar10": 0.5}
# Sec. 5.1: ε_step = ε/4; T = 10 (ε per dataset, in pixel levels, is tfadv.recipes.l2lda's).
NUM_STEPS = 10
STEP_FRACTION = 0.25
WEIGHT_DECAY = 1e-5
CLIP_NORM = 1.0


# ------------------------------------------------------------------------------------------------
# The defense


def _check_number(value, name):
    return checks.check_at_least(value, name, received=f"{name}={value!r}")


class L2LDA(AdversarialModel):
    """L2L-DA / L2L adversarial training (module docstring; Algorithm 1).

    Args (beyond AdversarialModel's, whose ``attack`` is here only the validation attack and
    the source of the pixel range; ``weight_decay`` applies to every classifier variable, as
    PyTorch's SGD ``weight_decay`` in the release):
        generator: the generator g_φ (``tfadv.models.unet_generator.build_generator``).
        eps, step_size: ε and ε_step of eq. (5) in input units.
        num_steps: T of eq. (5).
        lam: λ of eq. (8) (used only with ``diversity``).
        recursive: eq. (5) (True) or the one-shot generator (False).
        diversity: include L_div (eq. 7) in the generator's objective.
        normalize_grad: normalise the gradient input
            (:func:`tfadv.attacks.l2lda_generator.normalize_gradient`).
        generator_optimizer: the generator's optimizer; default at ``compile`` a copy of the
            classifier's optimizer configuration (the release: both SGD, LR 0.01, momentum 0.9,
            the same step schedule).
        generator_weight_decay: PyTorch-style weight decay c·w added to every generator gradient
            after clipping (the release's ``weight_decay=1e-5``).
        clip_norm: global gradient-norm clip of both networks (``clip_grad_norm_(…, 1.0)``);
            0 disables it. The classifier's is set on the compiled optimizer unless it clips already.
        step_reduction: ``mean`` (eq. 6-7, 1/T Σ_t) or ``sum`` (the release).
        seed: seed of the z sampler.

    ``train_step`` also logs ``gen_cls_loss`` (L_cls), ``gen_div`` (L_div, also without
    ``diversity``), ``gen_objective`` (eq. 8 as optimised) and ``gen_grad_norm`` (the generator's
    gradient norm before clipping). ``adv_loss``/``adv_acc`` are on x_adv⁽ᵀ⁾(z₁), training mode.
    """

    loss_description = "one mean CE over [x; x_adv(z1); x_adv(z2)]; the generator optimises eq. (8)"

    def __init__(self, network: keras.Model, *, generator: keras.Model, attack, eps: float,
                 step_size: float, num_steps: int = NUM_STEPS, lam: float = LAMBDA["cifar10"],
                 recursive: bool = True, diversity: bool = True, normalize_grad: bool = True,
                 generator_optimizer=None, generator_weight_decay: float = WEIGHT_DECAY,
                 clip_norm: float = CLIP_NORM, step_reduction: str = "mean",
                 seed: Optional[int] = None, **kwargs):
        if not isinstance(generator, keras.Model) or not hasattr(generator, "l2lda_config"):
            raise TypeError("generator must be an L2L-DA generator from "
                            f"tfadv.models.unet_generator.build_generator. Received: {generator!r}.")
        generator_lib.check_step_args(eps, step_size, num_steps)
        for name, value in (("recursive", recursive), ("diversity", diversity),
                            ("normalize_grad", normalize_grad)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool. Received: {name}={value!r}.")
        lam = _check_number(lam, "lam")
        generator_weight_decay = _check_number(generator_weight_decay, "generator_weight_decay")
        clip_norm = _check_number(clip_norm, "clip_norm")
        generator_lib.check_step_reduction(step_reduction)
        config = generator.l2lda_config
        if diversity and int(config["latent_dim"]) == 0:
            raise ValueError("The diversity loss (eq. 7) needs a stochastic generator; this one "
                             "has latent_dim=0. Received: diversity=True, latent_dim=0.")
        super().__init__(network, attack=attack, **kwargs)
        if int(config["num_classes"]) != self.num_classes:
            raise ValueError(f"The generator is conditioned on {config['num_classes']} classes but "
                             f"the network has {self.num_classes} logits. Received: "
                             f"generator num_classes={config['num_classes']!r}.")
        net_shape = tuple(int(d) for d in network.input_shape[1:])
        if tuple(config["input_shape"]) != net_shape:
            raise ValueError(f"The generator's input_shape must be the network's {net_shape}. "
                             f"Received: input_shape={tuple(config['input_shape'])!r}.")
        if getattr(self.attack, "pixel_range", None) is None:
            raise ValueError("L2L-DA projects to the attack's pixel range; pass an attack with a "
                             f"pixel_range (e.g. PGD). Received: attack={attack!r}.")
        self.pixel_range = self.attack.pixel_range
        if float(eps) > self.pixel_range.width:
            raise ValueError(f"eps={eps!r} exceeds the width of {self.pixel_range}: sizes are input "
                             f"units (8 pixel levels are {self.pixel_range.from_pixels(8):.6g}). "
                             f"Received: eps={eps!r}.")
        self.generator = generator
        self.latent_dim = int(config["latent_dim"])
        self.eps = float(eps)
        self.step_size = float(step_size)
        self.num_steps = int(num_steps)
        self.lam = lam
        self.recursive = recursive
        self.diversity = diversity
        self.normalize_grad = normalize_grad
        self.generator_optimizer = generator_optimizer
        self.generator_weight_decay = generator_weight_decay
        self.clip_norm = clip_norm
        self.step_reduction = step_reduction
        self._z_seed = keras.random.SeedGenerator(seed)
        self._gen_trackers = {n: keras.metrics.Mean(name=n) for n in
                              ("gen_cls_loss", "gen_div", "gen_objective", "gen_grad_norm")}

    @property
    def defense_metrics(self):
        return list(self._gen_trackers.values())

    def decay_variables(self):
        """Every trainable classifier variable: the release's PyTorch ``weight_decay`` decays
        biases and BN parameters too (c·Σ½w² has gradient c·w, PyTorch's convention)."""
        return list(self.network.trainable_variables)

    def compile(self, optimizer="rmsprop", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        opt = self.optimizer
        if self.generator_optimizer is None:
            # The release: g_lr = f_lr, g_momentum = f_momentum, both StepLR'd together.
            self.generator_optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
            for attr in ("clipnorm", "clipvalue", "global_clipnorm"):
                setattr(self.generator_optimizer, attr, None)  # clipped by hand, before decay
        if self.clip_norm and not (opt.clipnorm or opt.clipvalue or opt.global_clipnorm):
            opt.global_clipnorm = self.clip_norm
        self.generator_optimizer.build(self.generator.trainable_variables)

    def training_callbacks(self, logdir: Optional[str] = None) -> list:
        """Saves the generator under ``logdir/generator/`` every epoch
        (:class:`tfadv.callbacks.GeneratorCheckpoint`)."""
        out = super().training_callbacks(logdir)
        if logdir:
            out.append(GeneratorCheckpoint(os.path.join(logdir, generator_lib.GENERATOR_DIR),
                                           self.generator))
        return out

    # ---------------------------------------------------------------------------------- hooks
    def sample_z(self, batch_size):
        """z ~ N(0, I), one row per example (sec. 4.1)."""
        return keras.random.normal((batch_size, self.latent_dim), seed=self._z_seed)

    def generator_objective(self, x, y, z, *, eps=None, step_size=None):
        """Eq. (8) on the doubled batch (Algorithm 1, lines 2-8) with this defense's settings
        (:func:`tfadv.attacks.l2lda_generator.generator_objective`): returns ``(objective, l_cls,
        l_div, x_adv⁽ᵀ⁾)``, the scalars differentiable w.r.t. the generator's variables.
        ``x``, ``y``: the single batch (B); ``z``: (2B, latent_dim) = [z₁; z₂]."""
        return generator_lib.generator_objective(
            self.generator, self.model_fn(self.attack_training), x, y, z,
            eps=self.eps if eps is None else eps,
            step_size=self.step_size if step_size is None else step_size,
            num_steps=self.num_steps, pixel_range=self.pixel_range,
            lam=self.lam if self.diversity else 0.0, recursive=self.recursive,
            normalize_grad=self.normalize_grad, step_reduction=self.step_reduction)

    def make_adversarial(self, x, y):
        """Algorithm 1, lines 2-9: one generator update ascending eq. (8) through the unrolled
        recursion; returns AdversarialExamples with the stop-gradient'ed x_adv⁽ᵀ⁾ of the doubled
        batch, (2B, H, W, C), generated before the update (as the release trains the classifier on
        ``update_list[-1]``)."""
        scale = self.eps_scale() if self.eps_warmup_steps else 1.0
        eps, step_size = self.eps * scale, self.step_size * scale
        z = self.sample_z(2 * tf.shape(x)[0])
        variables = self.generator.trainable_variables
        def run():
            out = self.generator_objective(x, y, z, eps=eps, step_size=step_size)
            return tuple(tf.cast(v, tf.float32) for v in out[:3]) + (out[3],)

        def empty():  # an empty replica slice runs no model: zero objective and gradients
            return (tf.constant(0.0),) * 3 + (tf.zeros_like(x),)

        with tf.GradientTape() as tape:
            objective, l_cls, l_div, x_adv = batches_lib.if_nonempty(x, run, empty)
            # Maximise eq. (8): descend its negative; scaled per replica as AdversarialModel does.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = -objective / tf.cast(replicas, objective.dtype)
        grad_norm = generator_lib.apply_generator_update(
            self.generator_optimizer, tape.gradient(loss, variables), variables,
            clip_norm=self.clip_norm, weight_decay=self.generator_weight_decay)
        for name, value in (("gen_cls_loss", l_cls), ("gen_div", l_div),
                            ("gen_objective", objective), ("gen_grad_norm", grad_norm)):
            self._gen_trackers[name].update_state(
                value, sample_weight=tf.cast(tf.shape(x)[0] > 0, tf.float32))
        return AdversarialExamples(tf.stop_gradient(x_adv))

    def defense_loss(self, x, y, examples):
        """Algorithm 1, line 10 as released (``f_update_style=1``): one mean CE over
        [x; x_adv(z₁); x_adv(z₂)] in training mode (one forward, so BN sees the 3B batch)."""
        batch = tf.shape(x)[0]
        logits = self.network(tf.concat([x, examples.x_adv], 0), training=True)
        labels = tf.concat([y, y, y], 0)
        loss = tf.reduce_mean(losses_lib.ce(logits=logits, labels=labels))
        return loss, logits[batch:2 * batch]


def _defaults(pixel_range, eps, step_size, num_steps, recursive):
    rng = ranges_lib.get_range(pixel_range)
    if eps is None:
        raise ValueError("l2lda needs eps= (ε of eq. 5) in input units; the paper's values are "
                         "tfadv.recipes.l2lda.defense_kwargs(dataset). Received: eps=None.")
    if num_steps is None:
        num_steps = NUM_STEPS if recursive else 1
    if step_size is None:
        step_size = STEP_FRACTION * eps if recursive else eps
    return rng, eps, step_size, num_steps


def l2lda(network, *, generator=None, eps: Optional[float] = None, step_size: Optional[float] = None,
          num_steps: Optional[int] = None, lam: float = LAMBDA["cifar10"], recursive: bool = True,
          diversity: bool = True, latent_dim: int = 8, use_delta: bool = True,
          class_conditional: bool = True, normalize_grad: bool = True, base_filters: int = 64,
          pixel_range="[0,1]", attack=None, eval_attack=None, weight_decay: float = WEIGHT_DECAY,
          generator_weight_decay: float = WEIGHT_DECAY, clip_norm: float = CLIP_NORM,
          generator_optimizer=None, step_reduction: str = "mean", seed: Optional[int] = None,
          **kwargs):
    """Builds an L2L-DA model (``tfadv.defenses.get("l2lda", network, ...)``).

    Sizes are input units of ``pixel_range``: ``eps`` is required (the paper's ε per dataset, in
    pixel levels, with its λ: ``l2lda(network, **tfadv.recipes.l2lda.defense_kwargs("cifar10"))``).
    Defaults are the CIFAR-10 setting of sec. 5.1: ε_step = ε/4, T = 10, λ = 0.5 (MNIST's 0.02:
    see :data:`LAMBDA`), weight decay 1e-5 on both networks, clipping 1.0. With
    ``recursive=False`` T defaults to 1 and ε_step to ε (eq. 4). ``generator`` defaults to a fresh
    ``build_generator`` with ``latent_dim``, ``use_delta``, ``class_conditional``,
    ``base_filters``. ``attack`` (the validation attack; the training script passes the PGD of its
    flags) defaults to PGD-T with ε_step = ε/4 from a uniform start, ``eval_attack`` to ``attack``.
    """
    from tfadv.models.unet_generator import build_generator

    if not isinstance(recursive, bool):
        raise ValueError(f"recursive must be a bool. Received: recursive={recursive!r}.")
    if not recursive and num_steps is not None and num_steps != 1 and step_size is None:
        raise ValueError("The one-shot generator (recursive=False) is eq. (4) with T=1 and a step "
                         "of eps; pass step_size= to run it for several steps. Received: "
                         f"num_steps={num_steps!r}, recursive=False.")
    rng, eps, step_size, num_steps = _defaults(pixel_range, eps, step_size, num_steps, recursive)
    if attack is None:
        attack = attacks_lib.get("pgd", eps=eps, step_size=STEP_FRACTION * eps,
                                 num_steps=NUM_STEPS, random_start="uniform", pixel_range=rng)
    elif getattr(attack, "pixel_range", None) is not None and attack.pixel_range != rng:
        raise ValueError(f"The attack's pixel range {attack.pixel_range} differs from "
                         f"pixel_range={rng}. Received: attack={attack!r}.")
    if generator is None:
        if not isinstance(network, keras.Model):
            raise TypeError(f"network must be a keras.Model returning logits. Received: {network!r}.")
        generator = build_generator(int(network.output_shape[-1]),
                                    tuple(int(d) for d in network.input_shape[1:]),
                                    latent_dim=latent_dim, use_delta=use_delta,
                                    class_conditional=class_conditional,
                                    base_filters=base_filters)
    return L2LDA(network, generator=generator, attack=attack, eval_attack=eval_attack, eps=eps,
                 step_size=step_size, num_steps=num_steps, lam=lam, recursive=recursive,
                 diversity=diversity, normalize_grad=normalize_grad,
                 generator_optimizer=generator_optimizer, weight_decay=weight_decay,
                 generator_weight_decay=generator_weight_decay, clip_norm=clip_norm,
                 step_reduction=step_reduction, seed=seed, **kwargs)


def l2l(network, *, generator=None, eps: Optional[float] = None, pixel_range="[0,1]",
        base_filters: int = 64, **kwargs):
    """Chen et al.'s L2L as the paper reproduces it (L2L*, Table 1-2): the one-shot eq. (4),
    x_adv = Proj_X(x + ε·g(x, ∇ₓL(x))), with a deterministic U-Net fed the raw gradient (no z, y,
    δ, gradient normalisation or L_div). Other keyword arguments are :func:`l2lda`'s."""
    fixed = {"recursive": False, "diversity": False, "latent_dim": 0, "use_delta": False,
             "class_conditional": False, "normalize_grad": False}
    clash = {k: kwargs[k] for k in fixed if k in kwargs and kwargs[k] != fixed[k]}
    if clash:
        raise ValueError(f"L2L fixes {sorted(fixed)}; use l2lda for other settings. "
                         f"Received: {clash!r}.")
    kwargs.update(fixed)
    return l2lda(network, generator=generator, eps=eps, pixel_range=pixel_range,
                 base_filters=base_filters, **kwargs)


__all__ = ["L2LDA", "LAMBDA", "l2l", "l2lda"]
