"""FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020): Linf and L2, (un)targeted.

FAB looks for the *minimally distorted* adversarial example. At the current iterate x⁽ⁱ⁾ it
linearises the decision boundary between the true class y and a class s (paper eq. (4)-(5)),

    π_s(z):  f_s(x⁽ⁱ⁾) − f_y(x⁽ⁱ⁾) + ⟨∇f_s(x⁽ⁱ⁾) − ∇f_y(x⁽ⁱ⁾), z − x⁽ⁱ⁾⟩ = 0,

with s the closest such hyperplane in the dual norm (untargeted, eq. (6): ``|Δf_s| / ‖Δ∇f_s‖_q``,
q = 1 for Linf and 2 for L2) or the given target (FAB-T, AutoAttack's targeted version), and
projects both the current iterate and the original point onto π_s intersected with the image box
(eq. (3), :func:`project_linf`, :func:`project_l2`). The next iterate is the biased combination
(eq. (7)-(8))

    x⁽ⁱ⁺¹⁾ = Π_box((1 − α)(x⁽ⁱ⁾ + η·δ⁽ⁱ⁾) + α(x_orig + η·δ_orig⁽ⁱ⁾)),
    α = min(‖δ⁽ⁱ⁾‖_p / (‖δ⁽ⁱ⁾‖_p + ‖δ_orig⁽ⁱ⁾‖_p), α_max),

with overshoot η. Whenever x⁽ⁱ⁺¹⁾ is misclassified it is recorded if its distance to x_orig is
the smallest so far and the iterate takes the backward step x_orig + β(x⁽ⁱ⁺¹⁾ − x_orig) (paper
Sec. 3.3). Restarts after the first start from x_orig + (ε/2)·u/‖u‖_p with u uniform in
[−1, 1]^d (Linf) or standard normal (L2).

As an evaluation attack FAB reports an example as fooled only when its minimal perturbation lies
in the threat model: ``x_adv`` is the best point if ‖x_adv − x‖_p ≤ ε and the clean image
otherwise. FAB-T runs the targeted search for the classes ranked 2, …, n_target_classes + 1 by
the clean logits, one after the other, on the examples that are still robust (AutoAttack's
standard ``fab-t``: 9 targets, 1 restart, 100 iterations, α_max = 0.1, η = 1.05, β = 0.9).

The iteration runs as one compiled ``tf.function`` per target and restart (the model must be
traceable, as for every gradient attack of tfadv); the loop over targets and restarts is Python
(``graph_safe`` is False).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks.base import Attack
from tfadv.attacks import model_fn as model_fn_lib
from tfadv.attacks.model_fn import inference_fn
from tfadv.attacks.checks import check_int as _check_int
from tfadv.attacks.checks import check_number as _check_number
from tfadv.attacks.registry import ATTACKS

FAB_NORMS = ("linf", "l2")

_NO_SUCCESS = 1e10  # distance of an example with no adversarial point yet (as the reference)


def _oriented_room(points, w, b, low, high):
    """Orients each hyperplane so that c = ⟨w, z⟩ + b ≥ 0 (the iterate must lower ⟨w, ·⟩ by c) and
    returns (dtype, sign(w), |w|, c, room): room_i is the distance from z_i to the box face in the
    direction −sign(w_i), 0 where w_i = 0."""
    z = tf.convert_to_tensor(points)
    dtype = z.dtype
    w = tf.cast(w, dtype)
    c = tf.reduce_sum(w * z, axis=-1) + tf.cast(b, dtype)
    orient = tf.where(c >= 0, tf.ones_like(c), -tf.ones_like(c))
    w = w * orient[:, None]
    abs_w = tf.abs(w)
    room = tf.where(w > 0, z - low, high - z)
    room = tf.where(abs_w > 0, tf.maximum(room, 0.0), tf.zeros_like(room))
    return dtype, tf.sign(w), abs_w, c * orient, room


def _smallest_level(weight, breakpoint, c):
    """Per row, the smallest λ ≥ 0 with D(λ) = Σᵢ weightᵢ·min(λ, breakpointᵢ) = c, and whether
    it exists (D(∞) ≥ c); rows without one get λ = max breakpoint. D is piecewise linear,
    increasing and concave, with kinks at the breakpoints: after sorting them it is read off
    cumulative sums."""
    order = tf.argsort(breakpoint, axis=-1, stable=True)
    r_sorted = tf.gather(breakpoint, order, batch_dims=1)
    a_sorted = tf.gather(weight, order, batch_dims=1)
    cum_ar = tf.cumsum(a_sorted * r_sorted, axis=-1)
    weight_from = tf.cumsum(a_sorted, axis=-1, reverse=True)  # Σ_{j ≥ k} a_j
    # D at the kinks λ = r_(k): Σ_{j ≤ k} a_j r_j + r_(k) Σ_{j > k} a_j.
    d_at = cum_ar + r_sorted * (weight_from - a_sorted)
    feasible = d_at[:, -1] >= c
    k = tf.argmax(tf.cast(d_at >= c[:, None], tf.int32), axis=-1, output_type=tf.int32)
    offset = tf.gather(cum_ar - a_sorted * r_sorted, k, batch_dims=1)  # Σ_{j < k} a_j r_j
    slope = tf.gather(weight_from, k, batch_dims=1)                    # Σ_{j ≥ k} a_j
    tiny = tf.constant(np.finfo(c.dtype.as_numpy_dtype).tiny, c.dtype)
    lam = tf.maximum((c - offset) / tf.maximum(slope, tiny), 0.0)
    return tf.where(feasible, lam, tf.reduce_max(breakpoint, axis=-1)), feasible


def project_linf(points, w, b, low: float, high: float):
    """Box-constrained Linf projection onto a hyperplane (FAB paper eq. (3) for p = ∞).

    For each row solves ``min ‖d‖∞  s.t.  ⟨w, z + d⟩ + b = 0,  low ≤ z + d ≤ high`` with
    z = ``points`` (B, D), w (B, D), b (B,), and returns d (B, D).

    After orienting w so that c = ⟨w, z⟩ + b ≥ 0, a perturbation of Linf size λ lowers ⟨w, z⟩ by
    at most D(λ) = Σᵢ |wᵢ| min(λ, rᵢ), with rᵢ the distance from zᵢ to the box face in the
    direction −sign(wᵢ); the minimiser is dᵢ = −sign(wᵢ)·min(λ*, rᵢ) with λ* the smallest λ with
    D(λ) = c. D is piecewise linear and increasing with breakpoints at the sorted rᵢ, so λ* is
    read off a cumulative sum (O(D log D) per row). When the hyperplane cannot be reached inside
    the box (D(∞) < c) every coordinate with wᵢ ≠ 0 moves to its face, the box point closest to
    the hyperplane (as the reference ``projection_linf`` does).
    """
    _, sign_w, abs_w, c, room = _oriented_room(points, w, b, low, high)
    lam, _ = _smallest_level(abs_w, room, c)
    return -sign_w * tf.minimum(lam[:, None], room)


def project_l2(points, w, b, low: float, high: float):
    """Box-constrained L2 projection onto a hyperplane (FAB paper eq. (3) for p = 2).

    Solves ``min ‖d‖₂  s.t.  ⟨w, z + d⟩ + b = 0,  low ≤ z + d ≤ high`` per row. By the KKT
    conditions the minimiser is dᵢ = clip(−λ wᵢ, low − zᵢ, high − zᵢ) for a multiplier λ ≥ 0
    (w oriented so that c = ⟨w, z⟩ + b ≥ 0): coordinate i lowers ⟨w, z⟩ by wᵢ²·min(λ, rᵢ/|wᵢ|),
    so λ is the smallest root of Σᵢ wᵢ² min(λ, rᵢ/|wᵢ|) = c, the same sorted cumulative sum as
    for Linf. Unreachable hyperplanes send every coordinate with wᵢ ≠ 0 to its face, as in
    :func:`project_linf`. Coordinates with |wᵢ| ≤ 1e-12 are left alone (the reference ignores
    |wᵢ| < 1e-8).
    """
    _, sign_w, abs_w, c, room = _oriented_room(points, w, b, low, high)
    used = abs_w > 1e-12
    safe_w = tf.where(used, abs_w, tf.ones_like(abs_w))
    weight = tf.where(used, tf.square(abs_w), tf.zeros_like(abs_w))
    breakpoint = tf.where(used, room / safe_w, tf.zeros_like(room))
    lam, _ = _smallest_level(weight, breakpoint, c)
    return tf.where(used, -sign_w * tf.minimum(lam[:, None] * abs_w, room), tf.zeros_like(room))


def _norm(t, norm):
    """Per-example Linf or L2 norm of a batch (B, ...) -> (B,)."""
    flat = tf.reshape(t, [tf.shape(t)[0], -1])
    if norm == "l2":
        return tf.sqrt(tf.reduce_sum(tf.square(flat), axis=-1))
    return tf.reduce_max(tf.abs(flat), axis=-1)


class FABAttack(Attack):
    """FAB (Croce & Hein 2020), Linf or L2; untargeted (``targeted=False``) or FAB-T.

    Args:
        eps: radius of the threat model in input units: only perturbations with ‖δ‖_p ≤ eps count,
            and restarts after the first start at distance eps/2.
        norm: ``linf`` or ``l2``.
        n_iter: iterations per run.
        n_restarts: runs per target class (the first from the clean image).
        targeted: FAB-T (targets = the classes ranked 2 … n_target_classes + 1 by the clean logits).
        n_target_classes: targets of FAB-T, at most K − 1 for K classes (clipped to it).
        alpha_max, eta, beta: the step bias bound, overshoot and backward step of the paper.
        pixel_range: the box.
        seed: seed of the random restarts (None: nondeterministic).
    """

    name = "fab"
    graph_safe = False

    def __init__(self, *, eps: float, norm: str = "linf", n_iter: int = 100, n_restarts: int = 1,
                 targeted: bool = False, n_target_classes: int = 9, alpha_max: float = 0.1,
                 eta: float = 1.05, beta: float = 0.9, pixel_range="[0,1]",
                 seed: Optional[int] = None, name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        self.norm, self.eps = checks.check_norm_and_radius("FAB", norm, FAB_NORMS, eps,
                                                           self.pixel_range)
        self.n_iter = _check_int(n_iter, "n_iter", 1)
        self.n_restarts = _check_int(n_restarts, "n_restarts", 1)
        self.targeted = bool(targeted)
        self.n_target_classes = _check_int(n_target_classes, "n_target_classes", 1)
        self.alpha_max = _check_number(alpha_max, "alpha_max", positive=False, upper=1.0)
        self.eta = _check_number(eta, "eta")
        self.beta = _check_number(beta, "beta", upper=1.0)
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
        self.seed = seed
        if name is not None:
            self.name = name
        elif self.targeted:
            self.name = "fab_t"

    #: One compiled iteration (the last model and image shape): an attack object never holds on
    #: to models it no longer attacks.
    compiled_cache_size = 1

    def reproducible_per_call(self) -> bool:
        """With a seed: every call builds its generator from it."""
        return self.seed is not None

    def model_calls_per_example(self) -> int:
        """One clean forward pass, then per run (target class × restart) n_iter iterations of one
        forward/backward pass (the Jacobian of the logits for untargeted FAB, the gradient of one
        logit difference for FAB-T) plus one forward pass to check the new iterate."""
        runs = self.n_restarts * (self.n_target_classes if self.targeted else 1)
        return 1 + 2 * self.n_iter * runs

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "n_iter": self.n_iter,
                "n_restarts": self.n_restarts, "targeted": self.targeted,
                "n_target_classes": self.n_target_classes, "alpha_max": self.alpha_max,
                "eta": self.eta, "beta": self.beta, "pixel_range": str(self.pixel_range),
                "seed": self.seed}

    # ----------------------------------------------------------------------------------------
    def _linearisation(self, model_fn, x1, y, targets):
        """(Δf, Δ∇f) of the chosen boundary at x1: shapes (n,), (n, D)."""
        n = tf.shape(x1)[0]
        if self.targeted:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x1)
                logits = tf.cast(model_fn(x1), tf.float32)
                diff = (tf.gather(logits, targets, batch_dims=1)
                        - tf.gather(logits, y, batch_dims=1))
                total = tf.reduce_sum(diff)
            grad = tape.gradient(total, x1)
            return diff, tf.reshape(grad, [n, -1])
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x1)
            # pfor cannot vectorise a pass counter: the K backward passes are counted by hand.
            logits = tf.cast(model_fn_lib.uncounted(model_fn)(x1), tf.float32)
        jac = tape.batch_jacobian(logits, x1)                       # (n, K, ...)
        num_classes = tf.shape(logits)[-1]
        with tf.control_dependencies(model_fn_lib.add_passes(model_fn, forward=n,
                                                             backward=n * num_classes)):
            jac = tf.identity(jac)
        jac = tf.reshape(jac, [n, num_classes, -1])
        df = logits - tf.gather(logits, y, batch_dims=1)[:, None]   # f_k − f_y
        dg = jac - tf.gather(jac, y, batch_dims=1)[:, None]         # ∇f_k − ∇f_y
        is_true = tf.one_hot(y, num_classes, on_value=True, off_value=False)
        dual = (tf.sqrt(tf.reduce_sum(tf.square(dg), axis=-1)) if self.norm == "l2"
                else tf.reduce_sum(tf.abs(dg), axis=-1))
        dist = tf.abs(df) / (dual + 1e-12)  # eq. (6): distance to π_k in the dual norm
        dist = tf.where(is_true, tf.constant(np.inf, dist.dtype), dist)
        s = tf.argmin(dist, axis=-1, output_type=tf.int32)
        return tf.gather(df, s, batch_dims=1), tf.gather(dg, s, batch_dims=1)

    def _make_run(self, model_fn, image_shape):
        low, high = self.pixel_range.low, self.pixel_range.high
        eta, beta, alpha_max, norm = self.eta, self.beta, self.alpha_max, self.norm
        project = project_l2 if norm == "l2" else project_linf

        spec = tf.TensorSpec([None, *image_shape], tf.float32)
        labels = tf.TensorSpec([None], tf.int32)

        @tf.function(input_signature=[spec, labels, labels, spec])
        def run(x0, y, targets, x_start):
            n = tf.shape(x0)[0]
            x0_flat = tf.reshape(x0, [n, -1])
            best = x0
            best_norm = tf.fill([n], tf.constant(_NO_SUCCESS, tf.float32))
            x1 = x_start
            for _ in tf.range(self.n_iter):
                df, dg = self._linearisation(model_fn, x1, y, targets)
                x1_flat = tf.reshape(x1, [n, -1])
                # Hyperplane ⟨dg, z⟩ + (df − ⟨dg, x1⟩) = 0; project x1 and x0 onto it (eq. (3)).
                bias = df - tf.reduce_sum(dg * x1_flat, axis=-1)
                d = project(tf.concat([x1_flat, x0_flat], 0), tf.concat([dg, dg], 0),
                            tf.concat([bias, bias], 0), low, high)
                d1, d2 = d[:n], d[n:]
                a1 = tf.maximum(_norm(d1, norm), 1e-8)
                a2 = tf.maximum(_norm(d2, norm), 1e-8)
                alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, alpha_max)[:, None]  # eq. (8)
                x1_flat = tf.clip_by_value(
                    (1.0 - alpha) * (x1_flat + eta * d1) + alpha * (x0_flat + eta * d2), low, high)
                x1 = tf.reshape(x1_flat, tf.shape(x0))
                pred = tf.argmax(model_fn(x1), axis=-1, output_type=tf.int32)
                is_adv = tf.not_equal(pred, y)
                dist = _norm(x1 - x0, norm)
                improved = tf.logical_and(is_adv, dist < best_norm)
                mask = tf.reshape(improved, [n] + [1] * len(image_shape))
                best = tf.where(mask, x1, best)
                best_norm = tf.where(improved, dist, best_norm)
                back = tf.reshape(is_adv, [n] + [1] * len(image_shape))
                x1 = tf.where(back, x0 + beta * (x1 - x0), x1)  # backward step (Sec. 3.3)
            return best, best_norm

        return run

    def __call__(self, model_fn, x, y, **unused):
        if unused:
            raise ValueError(f"FAB takes no call options. Received: {sorted(unused)}.")
        model_fn = inference_fn(model_fn)  # BatchNorm in inference mode, even for a ModelFn
        x = tf.convert_to_tensor(x, tf.float32)
        y_np = np.asarray(tf.convert_to_tensor(y).numpy()).astype(np.int32)
        x_np = x.numpy()
        logits = checks.validate_batch(x_np, y_np, (lambda: np.asarray(model_fn(x))) if len(x_np)
                                       else 0, self.pixel_range)
        x_adv = x_np.copy()
        if len(x_np) == 0:
            return tf.constant(x_adv)
        num_classes = logits.shape[-1]
        robust = logits.argmax(-1) == y_np
        ranked = np.argsort(-logits, axis=-1, kind="stable").astype(np.int32)
        if self.targeted:
            ranks = range(1, min(self.n_target_classes, num_classes - 1) + 1)
        else:
            ranks = [None]

        image_shape = tuple(x.shape[1:])
        run = self.compiled(model_fn, lambda owner: self._make_run(owner, image_shape),
                            static=image_shape)
        generator = (tf.random.Generator.from_non_deterministic_state() if self.seed is None
                     else tf.random.Generator.from_seed(self.seed))
        low, high = self.pixel_range.low, self.pixel_range.high
        for rank in ranks:
            targets_all = ranked[:, rank] if rank is not None else y_np
            for restart in range(self.n_restarts):
                index = np.flatnonzero(robust)
                if index.size == 0:
                    break
                x0 = tf.constant(x_np[index])
                if restart == 0:
                    start = x0
                else:
                    if self.norm == "l2":
                        u = generator.normal(tf.shape(x0))
                    else:
                        u = generator.uniform(tf.shape(x0), -1.0, 1.0)
                    u = u / tf.reshape(tf.maximum(_norm(u, self.norm), 1e-12),
                                       [-1] + [1] * (x.shape.rank - 1))
                    start = tf.clip_by_value(x0 + 0.5 * self.eps * u, low, high)
                best, best_norm = run(x0, tf.constant(y_np[index]),
                                      tf.constant(targets_all[index]), start)
                fooled = best_norm.numpy() <= self.eps
                x_adv[index[fooled]] = best.numpy()[fooled]
                robust[index[fooled]] = False
        return tf.constant(x_adv)


@ATTACKS.register("fab_t", "fab-t")
def fab_t(*, eps, norm="linf", n_iter=100, n_restarts=1, n_target_classes=9, alpha_max=0.1,
          eta=1.05, beta=0.9, pixel_range="[0,1]", seed=None, name="fab_t") -> Attack:
    """Targeted FAB as in AutoAttack's standard version (9 targets, 1 restart, 100 iterations)."""
    return FABAttack(eps=eps, norm=norm, n_iter=n_iter, n_restarts=n_restarts, targeted=True,
                     n_target_classes=n_target_classes, alpha_max=alpha_max, eta=eta, beta=beta,
                     pixel_range=pixel_range, seed=seed, name=name)


@ATTACKS.register("fab")
def fab(*, eps, norm="linf", n_iter=100, n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
        pixel_range="[0,1]", seed=None, name="fab") -> Attack:
    """Untargeted FAB: the closest linearised boundary among all classes (paper eq. (6))."""
    return FABAttack(eps=eps, norm=norm, n_iter=n_iter, n_restarts=n_restarts, targeted=False,
                     alpha_max=alpha_max, eta=eta, beta=beta, pixel_range=pixel_range, seed=seed,
                     name=name)
