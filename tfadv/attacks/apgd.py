"""Auto-PGD: APGD-CE, APGD-DLR and APGD-T (Croce & Hein, ICML 2020, "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks", Algorithm 1).

One run of Algorithm 1 (Linf or L2 ball S, pixel range clipped as part of P_S):

    x⁽¹⁾ = P_S(x⁽⁰⁾ + η ∇̂f(x⁽⁰⁾))                             ∇̂: sign (Linf) or ∇/‖∇‖₂ (L2)
    for k = 1 .. N_iter-1:
        z⁽ᵏ⁺¹⁾ = P_S(x⁽ᵏ⁾ + η ∇̂f(x⁽ᵏ⁾))
        x⁽ᵏ⁺¹⁾ = P_S(x⁽ᵏ⁾ + α(z⁽ᵏ⁺¹⁾ - x⁽ᵏ⁾) + (1-α)(x⁽ᵏ⁾ - x⁽ᵏ⁻¹⁾))     α = 0.75
        keep x_max, f_max (highest loss so far)
        at a checkpoint w_j: if Condition 1 or Condition 2, halve η and restart from x_max

with η⁽⁰⁾ = 2·eps and checkpoints w_j = ⌈p_j N_iter⌉, p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (sec. 3.2):

    Condition 1: Σ_{i=w_{j-1}}^{w_j-1} 1[f(x⁽ⁱ⁺¹⁾) > f(x⁽ⁱ⁾)] < ρ·(w_j - w_{j-1})     (ρ = 0.75)
    Condition 2: η⁽ʷʲ⁻¹⁾ ≡ η⁽ʷʲ⁾ and f_max⁽ʷʲ⁻¹⁾ ≡ f_max⁽ʷʲ⁾

The check at w_j runs as soon as x⁽ʷʲ⁾ is computed (so the window of Condition 1 ends with
f(x⁽ʷʲ⁾)); a halving replaces x⁽ʷʲ⁾ by x_max, reusing the gradient already computed there, and
the next step's momentum term is x_max - x⁽ʷʲ⁻¹⁾, as in the reference release.

Everything is per example and written with ``tf.while_loop``, so an attack object runs eagerly
(then compiled once per model and image shape) and inside a caller's ``tf.function``.
Restarts and the targets of APGD-T run only on the points still classified correctly, as in the
reference release (fra31/auto-attack, ``autopgd_base.py``).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import tensorflow as tf

from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import steps as steps_lib
from tfadv.attacks import gradients as gradients_lib
from tfadv.attacks import checks
from tfadv.attacks.base import Attack
from tfadv.attacks.checks import check_int as _check_int, expand_to as _expand, unless_empty
from tfadv.attacks.model_fn import inference_fn
from tfadv.attacks.registry import ATTACKS

APGD_LOSSES = ("ce", "dlr")
MOMENTUM = 0.75  # α of Algorithm 1
INITIAL_STEP = 2.0  # η⁽⁰⁾ = 2·eps
DEFAULT_ITERATIONS = 100


def checkpoints(n_iter: int) -> List[int]:
    """Checkpoints W = {w_0 = 0, w_1, ...} of sec. 3.2 for a budget of ``n_iter`` iterations.

    w_j = ⌈p_j · n_iter⌉ with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
    for every p_j ≤ 1 (computed in exact hundredths, so 0.41·100 is 41, not 42). Checkpoints that
    coincide for small ``n_iter`` appear once. ``checkpoints(100)`` is
    ``[0, 22, 41, 57, 70, 80, 87, 93, 99]``.
    """
    n_iter = _check_int(n_iter, "n_iter", minimum=1)
    hundredths = [0, 22]
    while True:
        nxt = hundredths[-1] + max(hundredths[-1] - hundredths[-2] - 3, 6)
        if nxt > 100:
            break
        hundredths.append(nxt)
    out = []
    for p in hundredths:
        w = -((-p * n_iter) // 100)  # exact ceil(p/100 * n_iter)
        if not out or w != out[-1]:
            out.append(w)
    return out


def halve_step_size(*, num_increases, window, rho, halved_last, best_last, best):
    """Per-example decision at a checkpoint w_j (sec. 3.2): True where η is halved.

    Args:
        num_increases: Σ_{i=w_{j-1}}^{w_j-1} 1[f(x⁽ⁱ⁺¹⁾) > f(x⁽ⁱ⁾)], shape (B,).
        window: w_j - w_{j-1} (scalar).
        rho: ρ of Condition 1.
        halved_last: whether η was halved at w_{j-1}, i.e. not η⁽ʷʲ⁻¹⁾ ≡ η⁽ʷʲ⁾ (False at w_1:
            η never changes before the first checkpoint).
        best_last: f_max at w_{j-1}, (B,).
        best: f_max at w_j, (B,).

    Returns Condition 1 or Condition 2, a bool tensor (B,).
    """
    num_increases = tf.convert_to_tensor(num_increases)
    window = tf.cast(window, tf.float32)
    condition1 = tf.cast(num_increases, tf.float32) < tf.cast(rho, tf.float32) * window
    condition2 = tf.logical_and(tf.logical_not(tf.cast(halved_last, tf.bool)),
                                tf.convert_to_tensor(best) <= tf.convert_to_tensor(best_last))
    return tf.logical_or(condition1, condition2)


class APGD(Attack):
    """Auto-PGD with the cross-entropy or DLR loss, untargeted or targeted (APGD-T).

    Args:
        eps: radius of the Linf/L2 ball, in input units (see :mod:`tfadv.ranges`).
        norm: ``linf`` or ``l2``.
        loss: ``ce`` (APGD-CE) or ``dlr`` (APGD-DLR; sec. 4). With ``targeted=True`` the targeted
            DLR loss (sec. 4) is used and ``loss`` must be ``dlr``.
        targeted: APGD-T: for each of the ``n_target_classes`` classes ranked 2..n_target_classes+1
            by the clean logits, run APGD on the targeted DLR loss (sec. 4; the reference's
            ``APGDAttack_targeted``); success still means "misclassified", as in the reference.
        n_iter: N_iter, iterations of one run (model evaluations: N_iter + 1 per run).
        n_restarts: runs per target (untargeted: runs); each runs only on the points no previous
            run has fooled.
        n_target_classes: targets of APGD-T (9 in the standard AutoAttack).
        target_offset: APGD-T skips the first ``target_offset`` ranked classes: it attacks the
            classes ranked ``target_offset + 2 .. target_offset + n_target_classes + 1``, each run
            seeded as the same run of an APGD-T over all of them (so APGD-T over targets 1-3, then
            one with ``target_offset=3`` over target 4, is the 4-target APGD-T split in two).
        rho: ρ of Condition 1.
        pixel_range: images are clipped to it (part of the projection P_S).
        seed: seed of the random starts; with a seed the attack is deterministic.

    Returns, per example: the input itself if the model already misclassifies it; else the last
    misclassified point any run found (the reference's ``x_best_adv``); else the highest-loss point
    x_max over all runs.
    """

    name = "apgd"
    graph_safe = True

    def __init__(self, *, eps: float, norm: str = "linf", loss: str = "ce", targeted: bool = False,
                 n_iter: int = DEFAULT_ITERATIONS, n_restarts: int = 1, n_target_classes: int = 9,
                 target_offset: int = 0, rho: float = 0.75, pixel_range="[0,1]",
                 seed: Optional[int] = None, name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        if not isinstance(norm, str):
            raise ValueError(f"norm must be 'linf' or 'l2'. Received: {norm!r}.")
        self._step = steps_lib.get(norm)
        self.norm = self._step.name
        self.eps = checks.check_radius(eps, "eps", self.norm, self.pixel_range)
        if loss not in APGD_LOSSES:
            raise ValueError(f"Unknown APGD loss. Expected one of {APGD_LOSSES}. "
                             f"Received: {loss!r}.")
        self.targeted = bool(targeted)
        if self.targeted and loss != "dlr":
            raise ValueError(f"APGD-T uses the targeted DLR loss. Received: loss={loss!r}.")
        self.loss = loss
        self.n_iter = _check_int(n_iter, "n_iter", 1)
        self.n_restarts = _check_int(n_restarts, "n_restarts", 1)
        self.n_target_classes = _check_int(n_target_classes, "n_target_classes", 1)
        self.target_offset = _check_int(target_offset, "target_offset", 0)
        if self.target_offset and not self.targeted:
            raise ValueError(f"target_offset applies to APGD-T (targeted=True). "
                             f"Received: target_offset={target_offset!r}, targeted=False.")
        try:
            rho_value = float(rho)
        except (TypeError, ValueError):
            raise ValueError(f"rho must be a number in (0, 1]. Received: {rho!r}.")
        if not 0.0 < rho_value <= 1.0:
            raise ValueError(f"rho must be a number in (0, 1]. Received: {rho!r}.")
        self.rho = rho_value
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
        self.seed = seed
        if name is None:
            name = "apgd_t" if self.targeted else f"apgd_{loss}"
        self.name = name
        self.checkpoints = checkpoints(self.n_iter)

    #: One compiled function (the last model and image shape): an attack object never holds on to
    #: models it no longer attacks.
    compiled_cache_size = 1

    # ------------------------------------------------------------------------------ reporting
    def reproducible_per_call(self) -> bool:
        """With a seed: every call re-seeds its stateless draws from it."""
        return self.seed is not None

    def model_calls_per_example(self) -> int:
        """Upper bound on model evaluations per example: one clean forward, then N_iter + 1
        (forward + backward) per run, n_restarts runs (times n_target_classes for APGD-T). Points
        fooled early skip the later runs, so the real count is usually lower."""
        runs = self.n_restarts * (self.n_target_classes if self.targeted else 1)
        return 1 + runs * (self.n_iter + 1)

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "loss": self.loss,
                "targeted": self.targeted, "n_iter": self.n_iter, "n_restarts": self.n_restarts,
                "n_target_classes": self.n_target_classes,
                "target_offset": self.target_offset, "rho": self.rho,
                "pixel_range": str(self.pixel_range), "seed": self.seed}

    # ------------------------------------------------------------------------------ calling
    def __call__(self, model_fn, x, y, **kwargs):
        """Returns adversarial images (stop-gradient) for images ``x`` with integer labels ``y``."""
        if kwargs:
            raise ValueError(f"{self.name} takes no call options. Received: {sorted(kwargs)}.")
        fn = inference_fn(model_fn)
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.cast(tf.convert_to_tensor(y), tf.int32)
        return unless_empty(x, y, self.pixel_range, lambda: self._call(fn, x, y))

    def _call(self, fn, x, y):
        if not tf.executing_eagerly():
            return self._attack(fn, x, y)
        self._check_num_classes(checks.validate_batch(x, y, lambda: self.output_classes(fn, x),
                                                      self.pixel_range))
        # One trace per model and image shape; the batch dimension is left open because restarts
        # gather the still-robust points.
        shape = tuple(x.shape[1:])
        return self.compiled(fn, lambda owner: tf.function(
            lambda a, b: self._attack(owner, a, b), input_signature=[
                tf.TensorSpec([None, *shape], tf.float32), tf.TensorSpec([None], tf.int32)]),
            static=shape)(x, y)

    def _check_num_classes(self, num_classes):
        if num_classes is None:
            return
        if self.targeted and self.target_offset + self.n_target_classes > num_classes - 1:
            raise ValueError(f"target_offset + n_target_classes must be at most the number of "
                             f"classes - 1 ({num_classes - 1}). Received: "
                             f"{self.target_offset} + {self.n_target_classes}.")

    # ------------------------------------------------------------------------------ the attack
    def _objective(self, logits, labels, targets):
        if self.targeted:
            return losses_lib.dlr_targeted(logits=logits, labels=labels, targets=targets)
        if self.loss == "dlr":
            return losses_lib.dlr(logits=logits, labels=labels)
        return losses_lib.ce(logits=logits, labels=labels)

    def _attack(self, fn, x, y):
        """Runs every (target, restart) on the points still classified correctly; graph-safe."""
        logits_clean = tf.stop_gradient(fn(x))
        self._check_num_classes(logits_clean.shape[-1])
        fooled = tf.not_equal(tf.argmax(logits_clean, axis=-1, output_type=tf.int32), y)
        x_out = x
        best_loss = tf.fill(tf.shape(y), tf.constant(-np.inf, tf.float32))
        if self.targeted:
            ranked = tf.math.top_k(logits_clean,
                                   k=self.target_offset + self.n_target_classes + 1).indices
        num_runs = self.n_restarts * (self.n_target_classes if self.targeted else 1)
        first_run = self.n_restarts * self.target_offset
        if self.seed is None:
            base_seed = tf.random.uniform([], 0, 2 ** 31 - 1, dtype=tf.int32)
        else:
            base_seed = tf.constant(self.seed, tf.int32)

        # Run r attacks target rank 2 + r // n_restarts (APGD-T; r counts from target_offset's
        # first run, so the seeds are those of the full APGD-T); a tf.while_loop, so the model
        # and Algorithm 1 are traced once however many targets and restarts there are. It stops
        # once every point is fooled: the runs left would attack an empty batch.
        def one_run(r, x_out, best_loss, fooled):
            idx = tf.where(tf.logical_not(fooled))[:, 0]
            xs, ys = tf.gather(x, idx), tf.gather(y, idx)
            if self.targeted:
                ts = tf.gather(tf.gather(ranked, 1 + r // self.n_restarts, axis=1), idx)
            else:
                ts = ys
            x_run, found, f_max = self._run(fn, xs, ys, ts, tf.stack([base_seed, r]))
            old_loss = tf.gather(best_loss, idx)
            replace = tf.logical_or(found, f_max > old_loss)
            x_new = tf.where(_expand(replace, x_run), x_run, tf.gather(x_out, idx))
            scatter_idx = idx[:, None]
            return (r + 1,
                    tf.tensor_scatter_nd_update(x_out, scatter_idx, x_new),
                    tf.tensor_scatter_nd_update(best_loss, scatter_idx,
                                                tf.where(replace, f_max, old_loss)),
                    tf.tensor_scatter_nd_update(fooled, scatter_idx, found))

        _, x_out, _, _ = tf.while_loop(
            lambda r, x_out, best_loss, fooled: tf.logical_and(
                r < first_run + num_runs, tf.logical_not(tf.reduce_all(fooled))),
            one_run, (tf.constant(first_run), x_out, best_loss, fooled),
            maximum_iterations=num_runs)
        return tf.stop_gradient(x_out)

    def _clip(self, x):
        return tf.clip_by_value(x, self.pixel_range.low, self.pixel_range.high)

    def _project(self, x_adv, x):
        """P_S: onto the eps-ball around x, then into the pixel range (which keeps the norm)."""
        return self._clip(self._step.project(x_adv, x, self.eps))

    def _direction(self, grad):
        """∇̂f: sign(∇) for Linf, ∇/‖∇‖₂ for L2 (the step of Algorithm 1 in each geometry)."""
        if self.norm == "linf":
            return tf.sign(grad)
        norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=tf.range(1, tf.rank(grad)),
                                     keepdims=True))
        return grad / (norm + 1e-12)

    def _random_start(self, x, seed):
        """x⁽⁰⁾ as in the reference: Linf: x + eps·t/‖t‖∞ with t ~ U[-1, 1]ᵈ; L2: x + eps·t/‖t‖₂
        with t ~ N(0, I) (a random point on the sphere); then clipped to the pixel range."""
        axes = tf.range(1, tf.rank(x))
        if self.norm == "linf":
            t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
            t = t / (tf.reduce_max(tf.abs(t), axis=axes, keepdims=True) + 1e-12)
        else:
            t = tf.random.stateless_normal(tf.shape(x), seed)
            t = t / (tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True)) + 1e-12)
        return self._clip(x + self.eps * t)

    def _run(self, fn, x, y, targets, seed):
        """One run of Algorithm 1 on a batch. Returns (x_out, found, f_max): the last misclassified
        iterate where one was found, else x_max; whether one was found; the best loss."""
        n_iter = self.n_iter
        ckpt_table = np.zeros([n_iter + 1], bool)
        ckpt_table[[w for w in self.checkpoints if w > 0]] = True
        ckpt_table = tf.constant(ckpt_table)

        def evaluate(x_adv):
            logits, loss, grad = gradients_lib.input_gradient(
                fn, self._objective, x_adv, (y, targets))
            misclassified = tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y)
            return tf.stop_gradient(loss), tf.stop_gradient(grad), misclassified

        # Iteration i evaluates x⁽ⁱ⁾ (i = 0 .. N_iter: N_iter + 1 model calls, one traced call
        # site), updates x_max/f_max and the checkpoint statistics, then computes x⁽ⁱ⁺¹⁾ (the
        # last one is never evaluated and not returned).
        x0 = self._random_start(x, seed)
        batch = tf.shape(y)
        zeros = tf.zeros(batch, tf.float32)
        state = dict(
            i=tf.constant(0), x_cur=x0, x_prev=x0, loss_prev=zeros,
            x_max=x0, f_max=zeros, grad_max=tf.zeros_like(x0),
            eta=tf.fill(batch, tf.constant(INITIAL_STEP * self.eps, tf.float32)),
            x_found=x0, found=tf.zeros(batch, tf.bool),
            n_inc=tf.zeros(batch, tf.int32), f_max_last=zeros,
            halved_last=tf.zeros(batch, tf.bool), last_w=tf.constant(0))

        def body(s):
            i, x_cur = s["i"], s["x_cur"]
            first = tf.equal(i, 0)
            loss, grad, mis = evaluate(x_cur)
            x_found = tf.where(_expand(mis, x_cur), x_cur, s["x_found"])
            found = tf.logical_or(s["found"], mis)
            n_inc = s["n_inc"] + tf.cast(
                tf.logical_and(tf.logical_not(first), loss > s["loss_prev"]), tf.int32)
            better = tf.logical_or(first, loss > s["f_max"])  # x_max starts at x⁽⁰⁾
            x_max = tf.where(_expand(better, x_cur), x_cur, s["x_max"])
            grad_max = tf.where(_expand(better, x_cur), grad, s["grad_max"])
            f_max = tf.where(better, loss, s["f_max"])
            f_max_last = tf.where(first, loss, s["f_max_last"])

            at_ckpt = tf.gather(ckpt_table, i)  # i = w_j: x⁽ʷʲ⁾ has just been evaluated
            halve = tf.logical_and(at_ckpt, halve_step_size(
                num_increases=n_inc, window=i - s["last_w"], rho=self.rho,
                halved_last=s["halved_last"], best_last=f_max_last, best=f_max))
            # Halving restarts from x_max (its gradient is known: no extra model call).
            eta = tf.where(halve, s["eta"] / 2.0, s["eta"])
            x_cur = tf.where(_expand(halve, x_cur), x_max, x_cur)
            grad = tf.where(_expand(halve, x_cur), grad_max, grad)
            loss = tf.where(halve, f_max, loss)

            # i = 0 is line 3 of Algorithm 1 (no momentum); i >= 1 are lines 7-8.
            alpha = tf.where(first, 1.0, MOMENTUM)
            z = self._project(x_cur + _expand(eta, x_cur) * self._direction(grad), x)
            momentum = (1.0 - alpha) * (x_cur - s["x_prev"])
            x_next = self._project(x_cur + alpha * (z - x_cur) + momentum, x)
            return (dict(
                i=i + 1, x_cur=x_next, x_prev=x_cur, loss_prev=loss,
                x_max=x_max, f_max=f_max, grad_max=grad_max, eta=eta,
                x_found=x_found, found=found,
                n_inc=tf.where(at_ckpt, tf.zeros_like(n_inc), n_inc),
                f_max_last=tf.where(at_ckpt, f_max, f_max_last),
                halved_last=tf.where(at_ckpt, halve, s["halved_last"]),
                last_w=tf.where(at_ckpt, i, s["last_w"])),)

        final = tf.while_loop(lambda s: s["i"] <= n_iter, body, (state,),
                              maximum_iterations=n_iter + 1)[0]
        found = final["found"]
        x_out = tf.where(_expand(found, x), final["x_found"], final["x_max"])
        return x_out, found, final["f_max"]


def _iterations(n_iter, num_steps):
    """``num_steps`` is accepted as an alias of ``n_iter`` (the ``NAME-K`` evaluation specs)."""
    if num_steps is None:
        return n_iter
    if n_iter not in (DEFAULT_ITERATIONS, num_steps):
        raise ValueError(f"n_iter and its alias num_steps disagree. Received: n_iter={n_iter!r}, "
                         f"num_steps={num_steps!r}.")
    return num_steps


@ATTACKS.register("apgd_ce", "apgd-ce")
def apgd_ce(*, eps, norm="linf", n_iter=DEFAULT_ITERATIONS, n_restarts=1, rho=0.75,
            pixel_range="[0,1]", seed=None, num_steps=None, name="apgd_ce") -> Attack:
    """APGD on the cross-entropy loss (the first attack of AutoAttack)."""
    return APGD(eps=eps, norm=norm, loss="ce", n_iter=_iterations(n_iter, num_steps),
                n_restarts=n_restarts, rho=rho, pixel_range=pixel_range, seed=seed, name=name)


@ATTACKS.register("apgd_dlr", "apgd-dlr")
def apgd_dlr(*, eps, norm="linf", n_iter=DEFAULT_ITERATIONS, n_restarts=1, rho=0.75,
             pixel_range="[0,1]", seed=None, num_steps=None, name="apgd_dlr") -> Attack:
    """APGD on the DLR loss (sec. 4), invariant to shifts and rescalings of the logits."""
    return APGD(eps=eps, norm=norm, loss="dlr", n_iter=_iterations(n_iter, num_steps),
                n_restarts=n_restarts, rho=rho, pixel_range=pixel_range, seed=seed, name=name)


@ATTACKS.register("apgd_t", "apgd-t")
def apgd_t(*, eps, norm="linf", n_iter=DEFAULT_ITERATIONS, n_restarts=1, n_target_classes=9,
           target_offset=0, rho=0.75, pixel_range="[0,1]", seed=None, num_steps=None,
           name="apgd_t") -> Attack:
    """APGD-T: APGD on the targeted DLR loss (sec. 4) for the top-``n_target_classes`` other
    classes of the clean prediction (AutoAttack's standard version: 9 targets, 1 restart each),
    after the first ``target_offset`` of them."""
    return APGD(eps=eps, norm=norm, loss="dlr", targeted=True,
                n_iter=_iterations(n_iter, num_steps),
                n_restarts=n_restarts, n_target_classes=n_target_classes,
                target_offset=target_offset, rho=rho, pixel_range=pixel_range, seed=seed,
                name=name)
