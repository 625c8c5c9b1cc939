"""Pure, keyword-only loss functions, chosen by name through :data:`LOSSES`.

Every function returns a **per-example** vector (shape ``(B,)``); callers reduce. Attacks maximise
these (or their targeted counterparts); defenses average them over the batch.
"""

from __future__ import annotations

import tensorflow as tf

from tfadv.registry import Registry

LOSSES = Registry("loss")


def _as_probability_targets(labels, num_classes: int, dtype):
    """Integer labels (B,) -> one-hot; soft labels (B, K) are passed through."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 1:
        return tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=dtype)
    return tf.cast(labels, dtype)


def ce(*, logits, labels):
    """Softmax cross-entropy per example, ``-Σ_k y_k log softmax(z)_k``.

    ``labels`` are integer classes (B,) or soft labels (B, K) (BAT's adversarial labels, eq. 14).
    The inner loss L of Madry et al.'s saddle-point problem (BAT eq. 1).
    """
    logits = tf.convert_to_tensor(logits)
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 1:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.int32), logits=logits)
    return tf.nn.softmax_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype), logits=logits)


def _true_and_best_other(logits, labels):
    """Returns (z_y, max_{k != y} z_k) per example."""
    num_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=logits.dtype)
    true_logit = tf.reduce_sum(onehot * logits, axis=-1)
    # Mask the true class with a very negative number (Madry's release uses -1e4 * onehot).
    other = tf.reduce_max(logits - onehot * tf.constant(1e9, logits.dtype), axis=-1)
    return true_logit, other


def margin(*, logits, labels):
    """Untargeted margin ``z_y − max_{k≠y} z_k`` per example (the Square Attack's loss,
    Andriushchenko et al. 2020, sec. 3): positive exactly when the example is classified
    correctly."""
    true_logit, other = _true_and_best_other(logits, labels)
    return true_logit - other


def cw_margin(*, logits, labels, kappa: float = 50.0):
    """Carlini-Wagner margin loss as in Madry et al.'s release: ``-relu(z_y - max_{k≠y} z_k + κ)``.

    Increasing it drives the true logit below the best other logit (by up to κ=50).
    """
    true_logit, other = _true_and_best_other(logits, labels)
    return -tf.nn.relu(true_logit - other + tf.cast(kappa, true_logit.dtype))


def cw_target_margin(*, logits, targets, kappa: float = 50.0):
    """Targeted CW margin ``-relu(max_{k≠t} z_k - z_t + κ)``: increasing it raises the target logit."""
    target_logit, other = _true_and_best_other(logits, targets)
    return -tf.nn.relu(other - target_logit + tf.cast(kappa, target_logit.dtype))


def trades_kl(*, logits_clean, logits_adv):
    """``KL(softmax(f(x)) ‖ softmax(f(x')))`` per example (TRADES eq. 5 surrogate, argument order
    clean ‖ adversarial as in the authors' release)."""
    log_p = tf.nn.log_softmax(logits_clean, axis=-1)
    log_q = tf.nn.log_softmax(logits_adv, axis=-1)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


# The stabilisers of MART's release (YisenWang/MART, ``mart.py``): log(1.0001 - p + 1e-12) for the
# boosted term, log(p' + 1e-12) inside the KL and a weight 1.0000001 - p_y.
MART_BOOST_ONE = 1.0001
MART_WEIGHT_ONE = 1.0000001
MART_LOG_EPS = 1e-12


def mart(*, logits_clean, logits_adv, labels):
    """MART's two per-example terms (Wang et al., ICLR 2020: the paper's final objective
    L^MART), as the authors' release computes them: ``(bce, weighted_kl)``, each of shape (B,).

        bce(x', y)   = CE(p(x'), y) − log(1 − max_{k≠y} p_k(x'))                 (boosted CE)
        weighted_kl  = KL(p(x) ‖ p(x')) · (1 − p_y(x))   (misclassification-aware KL)

    with p = softmax. The release's stabilisers are kept: ``−log(1.0001 − max_{k≠y} p_k(x') +
    1e-12)``, ``KL = Σ_k p_k(x)·(log p_k(x) − log(p_k(x') + 1e-12))`` and the weight
    ``1.0000001 − p_y(x)``. The training objective is ``mean(bce) + β·mean(weighted_kl)``
    (the release: ``loss_adv + beta * sum(kl · w) / batch_size``); nothing is detached.
    """
    logits_clean = tf.convert_to_tensor(logits_clean)
    logits_adv = tf.cast(logits_adv, logits_clean.dtype)
    labels = tf.cast(labels, tf.int32)
    onehot = tf.one_hot(labels, tf.shape(logits_adv)[-1], dtype=logits_adv.dtype)
    probs_adv = tf.nn.softmax(logits_adv, axis=-1)
    best_other = tf.reduce_max(probs_adv - 2.0 * onehot, axis=-1)  # probabilities lie in [0, 1]
    boost = -tf.math.log(MART_BOOST_ONE - best_other + MART_LOG_EPS)
    bce = ce(logits=logits_adv, labels=labels) + boost
    log_p = tf.nn.log_softmax(logits_clean, axis=-1)
    probs_clean = tf.exp(log_p)
    kl = tf.reduce_sum(probs_clean * (log_p - tf.math.log(probs_adv + MART_LOG_EPS)), axis=-1)
    true_prob = tf.reduce_sum(onehot * probs_clean, axis=-1)
    return bce, kl * (MART_WEIGHT_ONE - true_prob)


def _sorted_logits(logits, k: int, what: str):
    """The ``k`` largest logits per example, descending (z_π1 ≥ z_π2 ≥ ...); needs K ≥ k classes."""
    logits = tf.convert_to_tensor(logits)
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes < k:
        raise ValueError(f"The {what} loss needs at least {k} classes (it uses z_π{k}). "
                         f"Received: logits with {num_classes} classes.")
    return logits, tf.math.top_k(logits, k=k, sorted=True).values


def dlr(*, logits, labels):
    """Difference of Logits Ratio (Croce & Hein 2020, sec. 4), per example:

        DLR(z, y) = -(z_y - max_{i≠y} z_i) / (z_π1 - z_π3 + 1e-12),

    with π the permutation sorting z in decreasing order. Invariant to shifting and (positive)
    rescaling of the logits. Sign as in the reference release: the attack *maximises* it, so it
    is positive exactly when the example is misclassified. Needs at least 3 classes.
    """
    logits, top = _sorted_logits(logits, 3, "dlr")
    is_true = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1]) > 0.5
    true_logit = tf.reduce_sum(tf.where(is_true, logits, tf.zeros_like(logits)), axis=-1)
    best_other = tf.reduce_max(
        tf.where(is_true, tf.constant(-float("inf"), logits.dtype), logits), axis=-1)
    return -(true_logit - best_other) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(*, logits, labels, targets):
    """Targeted DLR (Croce & Hein 2020, sec. 4, used by APGD-T), per example:

        DLR-T(z, y, t) = -(z_y - z_t) / (z_π1 - ½(z_π3 + z_π4) + 1e-12).

    Maximised by APGD-T: it grows as the target logit z_t overtakes the true logit z_y. Needs at
    least 4 classes.
    """
    logits, top = _sorted_logits(logits, 4, "targeted dlr")
    num_classes = tf.shape(logits)[-1]
    true_logit = tf.reduce_sum(
        tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=logits.dtype) * logits, axis=-1)
    target_logit = tf.reduce_sum(
        tf.one_hot(tf.cast(targets, tf.int32), num_classes, dtype=logits.dtype) * logits, axis=-1)
    return -(true_logit - target_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def l2lda_diversity(*, x_adv_1, x_adv_2, z_1, z_2, stability: float = 1e-8):
    """L2L-DA's diversity ratio (Jang et al. 2019, eq. 7) at one step t, per pair of examples:

        ‖x_adv⁽ᵗ⁾(z₁) − x_adv⁽ᵗ⁾(z₂)‖₁ / ‖z₁ − z₂‖₁,

    with both L1 norms taken as means over their elements and 1e-8 added to the denominator, as
    the authors' release computes it (``_dsgan_loss``; λ = 0.02 / 0.5 are calibrated to this
    form). ``x_adv_*``: (B, ...) adversarial images of the same clean images under z₁ and z₂;
    ``z_*``: (B, D) latents. Returns (B,); eq. 7's 1/T Σ_t is the caller's (see
    :func:`l2lda_generator_objective`).
    """
    x_adv_1 = tf.convert_to_tensor(x_adv_1)
    x_adv_2 = tf.cast(x_adv_2, x_adv_1.dtype)
    z_1 = tf.cast(z_1, x_adv_1.dtype)
    z_2 = tf.cast(z_2, x_adv_1.dtype)
    if z_1.shape.rank is not None and z_1.shape[-1] == 0:
        raise ValueError("The diversity loss needs a latent z with at least one dimension. "
                         f"Received: z_1 of shape {z_1.shape}.")
    x_axes = tf.range(1, tf.rank(x_adv_1))
    z_axes = tf.range(1, tf.rank(z_1))
    numerator = tf.reduce_mean(tf.abs(x_adv_1 - x_adv_2), axis=x_axes)
    denominator = tf.reduce_mean(tf.abs(z_1 - z_2), axis=z_axes)
    return numerator / (denominator + tf.cast(stability, x_adv_1.dtype))


def l2lda_generator_objective(*, ce_1, ce_2, diversity, lam: float, step_reduction: str = "mean"):
    """The L2L-DA generator's objective (Jang et al. 2019, eq. 8), per pair of examples:

        L_g = L_cls + λ · L_div,   L_cls = 1/T Σ_t ½(CE(x_adv⁽ᵗ⁾(z₁)) + CE(x_adv⁽ᵗ⁾(z₂)))   (eq. 6)
                                    L_div = 1/T Σ_t diversity⁽ᵗ⁾                            (eq. 7)

    ``ce_1``, ``ce_2``: (T, B) per-step, per-example cross-entropies of the trajectories under z₁
    and z₂ (the doubled batch of Algorithm 1, line 2); ``diversity``: (T, B) per-step
    :func:`l2lda_diversity`. The batch mean of the result is eq. 8 (the mean CE over the doubled
    batch plus λ times the mean ratio). ``step_reduction="mean"`` is the paper's 1/T Σ_t;
    ``"sum"`` is the release's (``g_mini_update_style=2`` accumulates both terms over the T steps
    without dividing). The generator *maximises* this. Returns (B,).
    """
    if step_reduction not in ("mean", "sum"):
        raise ValueError("step_reduction must be 'mean' (eq. 6-7) or 'sum' (the release). "
                         f"Received: step_reduction={step_reduction!r}.")
    reduce = tf.reduce_mean if step_reduction == "mean" else tf.reduce_sum
    ce_1 = tf.convert_to_tensor(ce_1)
    ce_2 = tf.cast(ce_2, ce_1.dtype)
    diversity = tf.cast(diversity, ce_1.dtype)
    cls = reduce(0.5 * (ce_1 + ce_2), axis=0)
    div = reduce(diversity, axis=0)
    return cls + tf.cast(lam, ce_1.dtype) * div


# Each entry builds the loss function it names (no arguments), so that ``get`` returns what every
# registry's ``get`` returns: the built object (see tfadv.registry).
LOSSES.register("ce", "cross_entropy", "xent")(lambda: ce)
LOSSES.register("cw", "cw_margin")(lambda: cw_margin)
LOSSES.register("trades_kl", "kl")(lambda: trades_kl)
LOSSES.register("dlr")(lambda: dlr)
LOSSES.register("mart")(lambda: mart)


def get(name: str):
    """Returns the loss function registered under ``name`` (``ce``, ``cw``, ``trades_kl``, ``dlr``,
    ``mart``)."""
    return LOSSES.get(name)
