"""The L2L-DA generator as an attack (Jang et al., ICCV 2019): its recursion (eq. 5), its objective
(eq. 8) on the doubled batch, its one update, and its files.

Both users build on these, so there is one of each: the defense (``tfadv.defenses.l2lda``, the
generator trained against a classifier that is trained too) and the evaluation attack
(``tfadv.attacks.l2lda_attack``, a trained generator fine-tuned against a fixed classifier).

* :func:`unroll` — eq. (5), δ⁽⁰⁾ = 0, t = 0..T-1:
      δ⁽ᵗ⁺¹⁾     = Proj_S(δ⁽ᵗ⁾ + ε_step · g_φ(x, y, z, δ⁽ᵗ⁾, ∇̂ₓL(x_adv⁽ᵗ⁾)))
      x_adv⁽ᵗ⁺¹⁾ = Proj_X(x + δ⁽ᵗ⁺¹⁾)
  with the gradient input detached (the release's ``f_grad.detach()``) and δ not, so the
  generator's gradient reaches earlier steps through δ⁽ᵗ⁾, never through ∇̂;
* :func:`generator_objective` — Algorithm 1, lines 2-8: eq. (8) = L_cls (eq. 6) + λ·L_div (eq. 7)
  over [x; x] with z = [z₁; z₂], reduced over the T steps by their mean (the paper) or their sum
  (the release, ``step_reduction="sum"``; docs/deviations.md "L2L-DA step reduction");
* :func:`apply_generator_update` — line 9's optimizer step: global gradient-norm clipping, then
  PyTorch-style weight decay c·w added to the gradient, then the optimizer;
* :func:`save_generator` / :func:`load_generator` — ``generator.weights.h5`` and ``config.json``
  (the ``tfadv.models.unet_generator.build_generator`` arguments), written atomically.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import keras
import tensorflow as tf

from tfadv import atomic
from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks import gradients as gradients_lib
from tfadv.attacks.model_fn import as_model_fn

GRADIENT_STABILIZER = 1e-15  # the release's "DO NOT EDIT! Need a stabilizer in here!!!"
STEP_REDUCTIONS = ("mean", "sum")

GENERATOR_DIR = "generator"
GENERATOR_WEIGHTS = "generator.weights.h5"
GENERATOR_CONFIG = "config.json"


# ------------------------------------------------------------------------------------------------
# The recursion


def normalize_gradient(g):
    """The generator's gradient input (sec. 5.2.1, "normalizes the input gradient"): per example
    and channel, ∇ / ‖∇ + 1e-15‖₂ with the norm over H×W (the release's ``g_normalize_grad``).
    ``g``: (B, H, W, C)."""
    g = tf.convert_to_tensor(g, tf.float32)
    if g.shape.rank is not None and g.shape.rank != 4:
        raise ValueError("normalize_gradient expects image gradients of shape (B, H, W, C). "
                         f"Received: shape={g.shape}.")
    norm = tf.sqrt(tf.reduce_sum(tf.square(g + GRADIENT_STABILIZER), axis=[1, 2], keepdims=True))
    return g / norm


def _input_gradient(model_fn, x, y, normalize):
    """∇ₓ Σᵢ CE(f(xᵢ), yᵢ) at ``x``, detached (the release's ``f_grad.detach()``), optionally
    normalised; also the logits of ``x`` (differentiable w.r.t. whatever produced x)."""
    logits, _, grad = gradients_lib.input_gradient(model_fn, gradients_lib.ce_objective, x, (y,))
    grad = tf.stop_gradient(grad)
    return (normalize_gradient(grad) if normalize else grad), logits


def check_step_args(eps, step_size, num_steps):
    """ValueError unless T = ``num_steps`` is an int >= 1 and ``eps``, ``step_size`` are finite
    numbers >= 0 (tensors pass: a warm-up schedule scales them in the graph)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps (T of eq. 5) must be an int >= 1. Received: num_steps={num_steps!r}.")
    for name, value in (("eps", eps), ("step_size", step_size)):
        if not tf.is_tensor(value):
            checks.check_at_least(value, f"{name} (in input units)", received=f"{name}={value!r}")


def check_step_reduction(step_reduction: str) -> str:
    if step_reduction not in STEP_REDUCTIONS:
        raise ValueError("step_reduction must be 'mean' (eq. 6-7) or 'sum' (the release). "
                         f"Received: step_reduction={step_reduction!r}.")
    return step_reduction


def unroll(generator, model_fn, x, y, z, *, eps, step_size, num_steps, pixel_range, recursive=True,
           normalize_grad=True, training=False, return_logits=False):
    """Eq. (5) unrolled for T = ``num_steps`` steps; returns ``[x_adv⁽¹⁾, ..., x_adv⁽ᵀ⁾]``.

        base⁽ᵗ⁾    = δ⁽ᵗ⁾ if recursive else 0                      (δ⁽⁰⁾ = 0)
        δ⁽ᵗ⁺¹⁾     = clip(base⁽ᵗ⁾ + ε_step · g(x, ∇̂L(x_adv⁽ᵗ⁾), base⁽ᵗ⁾, z, y), −ε, ε)   (Proj_S)
        x_adv⁽ᵗ⁺¹⁾ = clip(x + δ⁽ᵗ⁺¹⁾, pixel range)                                  (Proj_X)

    x_adv⁽⁰⁾ = x. ``recursive=False`` is the one-shot generator (each step restarts from δ = 0;
    with T = 1 and ``step_size=eps`` it is eq. 4, L2L). The gradient input is detached and
    normalised (:func:`normalize_gradient`, unless ``normalize_grad=False``: L2L*'s raw gradient
    of the summed CE); δ is not detached, so every x_adv⁽ᵗ⁾ is differentiable w.r.t. the
    generator's variables through all earlier steps.

    Args:
        generator: from ``tfadv.models.unet_generator.build_generator``.
        model_fn: the classifier's logits callable; a Keras model is called in inference mode (the
            release's ``Classifier.eval()`` during generation).
        x, y, z: images (B, H, W, C) in ``pixel_range``, int labels (B,), latents (B, latent_dim).
        eps, step_size: ε and ε_step in input units (sec. 5.1: ε_step = ε/4).
        num_steps: T >= 1.
        pixel_range: the range of x (tfadv.ranges).
        training: the generator's BN mode (True while training it, as the release).
        return_logits: also return the classifier's logits at every x_adv⁽ᵗ⁾ (one forward per step
            serves both the next gradient input and L_cls).
    """
    check_step_args(eps, step_size, num_steps)
    rng = ranges_lib.get_range(pixel_range)
    model_fn = as_model_fn(model_fn, False)
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    z = tf.cast(z, tf.float32)
    eps = tf.cast(eps, tf.float32)
    step_size = tf.cast(step_size, tf.float32)
    grad, _ = _input_gradient(model_fn, x, y, normalize_grad)
    delta = tf.zeros_like(x)
    x_advs, logits_list = [], []
    for t in range(num_steps):
        base = delta if recursive else tf.zeros_like(x)
        g = tf.cast(generator([x, grad, base, z, y], training=training), tf.float32)
        delta = tf.clip_by_value(base + step_size * g, -eps, eps)
        x_adv = tf.clip_by_value(x + delta, rng.low, rng.high)
        x_advs.append(x_adv)
        if t + 1 < num_steps:
            grad, logits = _input_gradient(model_fn, x_adv, y, normalize_grad)
            logits_list.append(logits)
        elif return_logits:
            logits_list.append(model_fn(x_adv))
    return (x_advs, logits_list) if return_logits else x_advs


# ------------------------------------------------------------------------------------------------
# The objective and the update


def generator_objective(generator, model_fn, x, y, z, *, eps, step_size, num_steps, pixel_range,
                        lam, recursive=True, normalize_grad=True, step_reduction="mean"):
    """Eq. (8) on the doubled batch (Algorithm 1, lines 2-8), the generator in training mode.

    ``x``, ``y``: the single batch (B); ``z``: (2B, latent_dim) = [z₁; z₂]. The recursion runs on
    [x; x] with [z₁; z₂]; L_cls (eq. 6) is the CE of every step, L_div (eq. 7) the diversity of
    every step (0 for a generator without z), both reduced over the T steps by ``step_reduction``
    (``mean``: the paper, ``sum``: the release). ``lam``: λ (0 drops L_div).

    Returns ``(objective, l_cls, l_div, x_adv⁽ᵀ⁾)``: the batch means of eq. (8), L_cls and L_div,
    differentiable w.r.t. the generator's variables, and the last step's (2B, H, W, C) images.
    """
    check_step_reduction(step_reduction)
    latent_dim = int(generator.l2lda_config["latent_dim"])
    batch = tf.shape(x)[0]
    xx, yy = tf.concat([x, x], 0), tf.concat([y, y], 0)
    x_advs, logits = unroll(generator, model_fn, xx, yy, z, eps=eps, step_size=step_size,
                            num_steps=num_steps, pixel_range=pixel_range, recursive=recursive,
                            normalize_grad=normalize_grad, training=True, return_logits=True)
    ce = tf.stack([losses_lib.ce(logits=lg, labels=yy) for lg in logits])  # (T, 2B), eq. 6
    ce_1, ce_2 = ce[:, :batch], ce[:, batch:]
    if latent_dim:
        div = tf.stack([losses_lib.l2lda_diversity(x_adv_1=xa[:batch], x_adv_2=xa[batch:],
                                                   z_1=z[:batch], z_2=z[batch:])
                        for xa in x_advs])  # (T, B), eq. 7
    else:
        div = tf.zeros_like(ce_1)
    objective = tf.reduce_mean(losses_lib.l2lda_generator_objective(
        ce_1=ce_1, ce_2=ce_2, diversity=div, lam=lam, step_reduction=step_reduction))  # eq. 8
    reduce = tf.reduce_mean if step_reduction == "mean" else tf.reduce_sum
    l_cls = reduce(tf.reduce_mean(ce, axis=1))
    l_div = reduce(tf.reduce_mean(div, axis=1))
    return objective, l_cls, l_div, x_advs[-1]


def apply_generator_update(optimizer, grads, variables, *, clip_norm: float, weight_decay: float):
    """Algorithm 1, line 9's step: clip ``grads`` to the global norm ``clip_norm`` (0: no clip),
    add ``weight_decay``·w (the release's PyTorch SGD ``weight_decay``, after clipping) and apply
    them with ``optimizer``. Returns the gradients' global norm before clipping."""
    grad_norm = tf.linalg.global_norm(grads)
    if clip_norm:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=grad_norm)
    if weight_decay:
        grads = [g + weight_decay * v for g, v in zip(grads, variables)]
    optimizer.apply_gradients(zip(grads, variables))
    return grad_norm


# ------------------------------------------------------------------------------------------------
# The generator's files


def save_generator(generator, directory: str, *, epoch: Optional[int] = None) -> str:
    """Writes ``directory/generator.weights.h5`` and ``directory/config.json`` (the
    ``build_generator`` arguments), atomically: a reader sees the old pair or the new one."""
    from tfadv.models.unet_generator import generator_config

    config = {"builder": "tfadv.models.unet_generator.build_generator",
              "kwargs": generator_config(generator)}
    if epoch is not None:
        config["epoch"] = int(epoch)
    with atomic.atomic_path(directory, directory=True) as tmp:
        os.makedirs(tmp)
        generator.save_weights(os.path.join(tmp, GENERATOR_WEIGHTS))
        with open(os.path.join(tmp, GENERATOR_CONFIG), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
    return directory


def load_generator(path: str) -> keras.Model:
    """Rebuilds a generator saved by :func:`save_generator` (or by a training run: pass the run
    directory or its ``generator/`` folder) and loads its weights."""
    from tfadv.models.unet_generator import build_generator

    candidates = [path, os.path.join(path, GENERATOR_DIR)]
    directory = next((d for d in candidates
                      if os.path.isfile(os.path.join(d, GENERATOR_CONFIG))), None)
    if directory is None:
        raise ValueError(f"No L2L-DA generator here: expected {GENERATOR_CONFIG} and "
                         f"{GENERATOR_WEIGHTS} in the directory or in its {GENERATOR_DIR}/ "
                         f"folder. Received: path={path!r}.")
    try:
        with open(os.path.join(directory, GENERATOR_CONFIG), encoding="utf-8") as f:
            config = json.load(f)
        kwargs = dict(config["kwargs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"Corrupt generator {GENERATOR_CONFIG} ({e!r}). "
                         f"Received: path={directory!r}.") from None
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    generator = build_generator(**kwargs)
    generator.load_weights(os.path.join(directory, GENERATOR_WEIGHTS))
    return generator


__all__ = ["GENERATOR_CONFIG", "GENERATOR_DIR", "GENERATOR_WEIGHTS", "STEP_REDUCTIONS",
           "apply_generator_update", "check_step_args", "check_step_reduction",
           "generator_objective", "load_generator", "normalize_gradient", "save_generator",
           "unroll"]
