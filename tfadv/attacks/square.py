"""Square Attack: score-based random search with square updates (Andriushchenko et al., ECCV 2020).

Paper Algorithm 1 with the margin loss of Sec. 3 (untargeted: ``L(x') = z_y(x') − max_{k≠y} z_k``)
and, for Linf, the sampling distribution of Algorithm 2:

    x̂ ← Π_box(x + ε·s),   s a random ±1 sign per column and channel (vertical stripes, Sec. 3.2)
    for i = 0 … N−1, only for the examples with L(x̂) > 0 (still correctly classified):
        h⁽ⁱ⁾ = side of the square, the closest integer to sqrt(p_i · H · W)  (p_i: Sec. 3.2)
        δ    = ±2ε per channel on a random h⁽ⁱ⁾×h⁽ⁱ⁾ window, 0 elsewhere     (Algorithm 2)
        x_new = Π_box(Π_ball(x̂ + δ))
        accept x̂ ← x_new if L(x_new) < L(x̂)                                 (Algorithm 1)

For L2 the start tiles the image with the pattern η of eq. (2) and the proposals follow
Algorithm 3: mass of the perturbation is moved between two windows so that ‖δ‖₂ stays ε
(:meth:`SquareAttack._propose_l2`).

The model is only ever *queried* (no gradients), in inference mode, and each iteration evaluates
one batch holding the still-robust examples; an example stops being queried once it is
misclassified. A restart's whole search (proposals, queries, acceptance) runs as one graph
(``tf.while_loop``): on the few robust points of a batch that reach AutoAttack's last member, the
per-query host round trip cost more than the query itself. Windows and signs come from
TensorFlow's stateless generator, seeded per restart from the NumPy generator of ``seed``.
Restarts rerun the search on the examples that are still robust. The schedule of p is the
authors' ``p_selection``: halvings after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and
8000 of a 10,000-query budget, rescaled to ``n_queries`` (AutoAttack's standard
version: 5,000 queries, p_init=0.8).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks.base import Attack
from tfadv.attacks.model_fn import ModelFn, inference_fn
from tfadv.attacks.checks import check_int as _check_int
from tfadv.attacks.checks import check_number as _check_number
from tfadv.attacks.registry import ATTACKS

SQUARE_NORMS = ("linf", "l2")
WINDOW_POSITIONS = ("paper", "release")

# Iterations (of a 10,000-query run) after which p is halved (the authors' p_selection).
P_BREAKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(iteration: int, p_init: float, n_queries: int) -> float:
    """Fraction p of the image's pixels changed at ``iteration`` (0-based), paper Sec. 3.2.

    The iteration is first rescaled to a 10,000-query budget, ``int(i / n_queries * 10000)``; p is
    ``p_init`` up to and including 10, ``p_init/2`` on (10, 50], ``p_init/4`` on (50, 200], …,
    ``p_init/512`` after 8000.
    """
    it = int(iteration / n_queries * 10000)
    halvings = sum(1 for b in P_BREAKPOINTS if it > b)
    return p_init / (2 ** halvings)


def square_side(p: float, height: int, width: int) -> int:
    """Side of the square window for a fraction ``p`` of the H·W pixel positions (at least 1, at
    most the shorter image side)."""
    side = int(round(math.sqrt(p * height * width)))
    return int(min(max(side, 1), height, width))


def margin(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Untargeted margin ``z_y − max_{k≠y} z_k`` per example (paper Sec. 3; > 0: still correct)."""
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(labels))
    true = logits[rows, labels].copy()
    others = logits.copy()
    others[rows, labels] = -np.inf
    return true - others.max(axis=-1)


class SquareAttack(Attack):
    """Score-based Square Attack (Andriushchenko et al. 2020), Linf or L2, untargeted margin loss.

    Args:
        eps: radius in input units (Linf: at most the width of ``pixel_range``).
        norm: ``linf`` (Algorithm 2) or ``l2`` (Algorithm 3).
        n_queries: iterations (one query each) per restart; AutoAttack's standard value is 5,000.
        p_init: initial fraction of pixels in the square (0.8 in AutoAttack; 0.05 in the paper's
            ImageNet runs).
        n_restarts: runs of the search; each one attacks the examples still robust after the last.
        pixel_range: the box the images live in.
        seed: seed of the NumPy generator drawing the start and each restart's seed of the
            windows and signs (None: nondeterministic).
        window_positions: ``paper`` draws the window's corner from {0, …, H − h} (Algorithm 2);
            ``release`` from {0, …, H − h − 1} as the authors' code, AutoAttack and torchattacks
            do (``randint(0, H − h)``), which never places a small window on the last row or
            column (weaker on small images; for reproducing those releases).

    ``__call__(model_fn, x, y, callback=None)`` returns ``x_adv``: the successful point of the
    examples it fooled, the clean image otherwise (also for examples misclassified from the
    start). ``callback(restart, iteration, index, margins)``, when given, is called for every
    iteration (in order, once the restart's search is done) with the indices (into the batch) of the
    examples of this restart and their best margins after that iteration.
    """

    name = "square"
    graph_safe = False

    def __init__(self, *, eps: float, norm: str = "linf", n_queries: int = 5000,
                 p_init: float = 0.8, n_restarts: int = 1, pixel_range="[0,1]",
                 seed: Optional[int] = None, window_positions: str = "paper",
                 name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        self.norm, self.eps = checks.check_norm_and_radius("the Square Attack", norm,
                                                           SQUARE_NORMS, eps, self.pixel_range)
        self.n_queries = _check_int(n_queries, "n_queries", 1)
        self.p_init = _check_number(p_init, "p_init", upper=1.0)
        self.n_restarts = _check_int(n_restarts, "n_restarts", 1)
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
        self.seed = seed
        if window_positions not in WINDOW_POSITIONS:
            raise ValueError(f"window_positions must be one of {WINDOW_POSITIONS}. "
                             f"Received: {window_positions!r}.")
        self.window_positions = window_positions
        if name is not None:
            self.name = name

    def reproducible_per_call(self) -> bool:
        """With a seed: every call starts its NumPy generator from it."""
        return self.seed is not None

    def model_calls_per_example(self) -> int:
        """At most ``n_restarts · (n_queries + 1) + 1``: one clean forward pass, then per restart
        the initialisation plus one query per iteration (an example fooled early stops being
        queried, so the actual count is usually lower). With one restart: n_queries + 2."""
        return self.n_restarts * (self.n_queries + 1) + 1

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "n_queries": self.n_queries,
                "p_init": self.p_init, "n_restarts": self.n_restarts,
                "pixel_range": str(self.pixel_range), "seed": self.seed,
                "window_positions": self.window_positions}

    # ----------------------------------------------------------------------------------------
    def _logits(self, model_fn, x: np.ndarray) -> np.ndarray:
        return np.asarray(model_fn(tf.constant(x, tf.float32)), np.float64)

    #: The search's compiled function for the last model and image shape, with and without the
    #: callback's record: an attack object never holds on to models it no longer attacks.
    compiled_cache_size = 2

    def _search_fn(self, raw, model_fn, image_shape, record: bool):
        """:meth:`_search` as one ``tf.function`` (any batch size; one trace per image shape and
        ``record``). Keras models, and pass-counted ones, run inside the graph, from the compile
        cache; other callables (they may hold host-side code) eagerly through ``tf.py_function``,
        in a function traced afresh for each call."""
        images = tf.TensorSpec([None, *image_shape], tf.float32)
        signature = [images, tf.TensorSpec([None], tf.int64), images, tf.TensorSpec([2], tf.int32),
                     tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([None, None, None], tf.float64)]

        def build(forward):
            return tf.function(lambda *args: self._search(forward, record, *args),
                               input_signature=signature, autograph=False)

        if isinstance(raw, (keras.layers.Layer, ModelFn)) or getattr(raw, "traceable", False):
            return self.compiled(model_fn, build, static=(tuple(image_shape), record))

        def on_host(t):
            out = tf.py_function(lambda a: tf.cast(model_fn(a), tf.float32), [t], tf.float32)
            out.set_shape([None, None])
            return out

        return build(on_host)

    def __call__(self, model_fn, x, y, *, callback: Optional[Callable] = None, **unused):
        if unused:
            raise ValueError(f"The Square Attack takes no call options besides callback. "
                             f"Received: {sorted(unused)}.")
        raw = model_fn
        model_fn = inference_fn(raw)  # BatchNorm in inference mode, even for a ModelFn
        x = np.asarray(tf.convert_to_tensor(x, tf.float32).numpy(), np.float32)
        y = np.asarray(tf.convert_to_tensor(y).numpy()).astype(np.int64)
        if x.ndim != 4:
            raise ValueError(f"The Square Attack needs a batch of images (B, H, W, C). "
                             f"Received shape: {x.shape}.")
        logits = checks.validate_batch(x, y, (lambda: self._logits(model_fn, x)) if len(x) else 0,
                                       self.pixel_range)
        x_adv = x.copy()
        if len(x) == 0:
            return tf.constant(x_adv)
        search = self._search_fn(raw, model_fn, x.shape[1:], callback is not None)
        schedule = self._schedule(*x.shape[1:3])
        robust = margin(logits, y) > 0
        rng = np.random.default_rng(self.seed)
        for restart in range(self.n_restarts):
            index = np.flatnonzero(robust)
            if index.size == 0:
                break
            x_start = (self._init_linf if self.norm == "linf" else self._init_l2)(x[index], rng)
            seed = rng.integers(0, 2 ** 31 - 1, size=2).astype(np.int32)
            x_best, margin_best, history = search(x[index], y[index], x_start, seed, *schedule)
            if callback is not None:
                for i, margins in enumerate(history.numpy()):
                    callback(restart, i, index.copy(), margins.copy())
            fooled = margin_best.numpy() <= 0
            x_adv[index[fooled]] = x_best.numpy()[fooled]
            robust[index[fooled]] = False
        return tf.constant(x_adv)

    def _schedule(self, height, width):
        """Per iteration the window's side and the index of its L2 pattern η (eq. (2)) in a stack
        of the distinct sides' patterns, zero-padded to the largest side."""
        sides = []
        for i in range(self.n_queries):
            side = square_side(p_schedule(i, self.p_init, self.n_queries), height, width)
            if self.norm == "l2":  # Algorithm 3: an odd side of at least 3 where the image allows
                side = max(side, min(3, height, width))
                if side % 2 == 0 and side < min(height, width):
                    side += 1
            sides.append(side)
        sides = np.array(sides, np.int32)
        if self.norm == "linf":  # no pattern
            return sides, np.zeros(len(sides), np.int32), np.zeros((1, 1, 1))
        distinct = sorted(set(sides.tolist()))
        patterns = np.zeros((len(distinct), distinct[-1], distinct[-1]))
        for k, side in enumerate(distinct):
            patterns[k, :side, :side] = eta_pattern(side)
        return sides, np.searchsorted(distinct, sides).astype(np.int32), patterns

    def _search(self, forward, record, x, y, x_best, seed, sides, stages, patterns):
        """Algorithm 1 on a batch, every query inside one graph: the start's margins, then per
        iteration a proposal for the examples still correctly classified (margin > 0), one query
        of the model on them, and the accepted improvements. Returns (x̂, best margins, the best
        margins after each iteration when ``record``, else an empty history)."""
        margin_best = _margin(forward(x_best), y)
        propose = self._propose_linf if self.norm == "linf" else self._propose_l2
        history = tf.TensorArray(tf.float64, size=0, dynamic_size=True, element_shape=[None])

        def keep_going(i, x_best, margin_best, history):
            return (i < tf.size(sides)) & tf.reduce_any(margin_best > 0)

        def query(i, x_best, margin_best, history):
            active = tf.where(margin_best > 0)[:, 0]
            x_act = tf.gather(x, active)
            x_new = propose(x_act, tf.gather(x_best, active), sides[i],
                            patterns[stages[i]], tf.random.experimental.stateless_fold_in(seed, i))
            margin_new = _margin(forward(x_new), tf.gather(y, active))
            better = margin_new < tf.gather(margin_best, active)  # Algorithm 1: loss decreases
            rows = tf.boolean_mask(active, better)[:, None]
            x_best = tf.tensor_scatter_nd_update(x_best, rows, tf.boolean_mask(x_new, better))
            margin_best = tf.tensor_scatter_nd_update(margin_best, rows,
                                                      tf.boolean_mask(margin_new, better))
            if record:
                history = history.write(i, margin_best)
            return i + 1, x_best, margin_best, history

        _, x_best, margin_best, history = tf.while_loop(
            keep_going, query, [tf.constant(0), x_best, margin_best, history])
        none = tf.zeros([0, tf.shape(y)[0]], tf.float64)
        if not record:
            return x_best, margin_best, none
        # No iteration when the start fooled every example: nothing to stack.
        return x_best, margin_best, tf.cond(history.size() > 0, history.stack, lambda: none)

    def _windows(self, seed, n, height, width, side):
        """(n, H, W) boolean windows of side ``side`` and their corners (top, left), uniform on
        {0, …, H − side} (``release``: {0, …, max(H − side − 1, 0)}, the released code's
        ``randint(0, H − side)``)."""
        release = self.window_positions == "release"
        corners = []
        for part, extent in zip(tf.unstack(tf.random.experimental.stateless_split(seed, 2)),
                                (height, width)):
            end = tf.maximum(extent - side, 1) if release else extent - side + 1
            corners.append(tf.random.stateless_uniform([n], part, 0, end, dtype=tf.int32))
        top, left = corners
        rows, cols = tf.range(height)[None], tf.range(width)[None]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
        return in_rows[:, :, None] & in_cols[:, None, :], top, left

    def _signs(self, seed, shape, dtype):
        bits = tf.random.stateless_uniform(shape, seed, 0, 2, dtype=tf.int32)
        return tf.cast(2 * bits - 1, dtype)

    def _box(self, x_new):
        return tf.clip_by_value(x_new, self.pixel_range.low, self.pixel_range.high)

    # ---------------------------------------------------------------------------------- Linf
    def _init_linf(self, x, rng):
        """Vertical stripes (Sec. 3.2): one ±ε sign per example, column and channel."""
        batch, _, width, channels = x.shape
        stripes = rng.choice(np.array([-1.0, 1.0], np.float32), size=(batch, 1, width, channels))
        return np.clip(x + self.eps * stripes, self.pixel_range.low,
                       self.pixel_range.high).astype(np.float32)

    def _propose_linf(self, x, x_best, side, pattern, seed):
        """Algorithm 2: a window of side h (random position r, s ∈ {0, …, H − h} per example) set to
        x̂ ± 2ε, one sign per channel, then projected onto the ball and the box."""
        del pattern  # L2 only
        n = tf.shape(x)[0]
        _, height, width, channels = x.shape
        at_window, at_signs = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        window = tf.cast(self._windows(at_window, n, height, width, side)[0], tf.float32)[..., None]
        signs = 2.0 * self._signs(at_signs, [n, 1, 1, channels], tf.float32)
        x_new = x_best + self.eps * window * signs
        return self._box(tf.clip_by_value(x_new, x - self.eps, x + self.eps))

    # ------------------------------------------------------------------------------------ L2
    def _init_l2(self, x, rng):
        """L2 initialisation (Sec. 3.2 / Supp.): the image is tiled with blocks of side H // 5 (from
        the offset (H − 5·side) // 2), each holding the pattern η of eq. (2) with a random sign per
        channel; the whole perturbation is rescaled to ‖δ‖₂ = ε."""
        batch, height, width, channels = x.shape
        side = max(min(height, width) // 5, 1)
        pattern = eta_pattern(side)
        delta = np.zeros(x.shape, np.float64)
        start_h, start_w = (height - 5 * side) // 2, (width - 5 * side) // 2
        start_h, start_w = max(start_h, 0), max(start_w, 0)
        for top in range(start_h, height - side + 1, side):
            for left in range(start_w, width - side + 1, side):
                signs = rng.choice(np.array([-1.0, 1.0]), size=(batch, 1, 1, channels))
                delta[:, top:top + side, left:left + side, :] += pattern[None, :, :, None] * signs
        delta *= self.eps / np.maximum(_l2(delta), 1e-12)[:, None, None, None]
        return np.clip(x + delta, self.pixel_range.low, self.pixel_range.high).astype(np.float32)

    def _propose_l2(self, x, x_best, side, pattern, seed):
        """Algorithm 3 (L2 sampling distribution): two windows W1, W2 of side h; per channel the
        mass of ν = x̂ − x on W1 ∪ W2 plus an equal share of the unused budget ε² − ‖ν‖² is moved
        onto W1 as ±η* (eq. (2): ``pattern``, random sign and orientation) added to W1's normalised
        old content; W2 is emptied. ‖ν‖₂ stays ε (rescaled down if rounding exceeds it), then the
        box is applied. In float64, as the norms are."""
        eps = self.eps
        n = tf.shape(x)[0]
        _, height, width, channels = x.shape
        seeds = tf.random.experimental.stateless_split(seed, 4)
        at_w1, at_w2, at_turn, at_signs = tf.unstack(seeds)
        x64 = tf.cast(x, tf.float64)
        nu = tf.cast(x_best, tf.float64) - x64
        unused = tf.maximum(eps ** 2 - _sq_norm(nu), 0.0)                             # (n,)
        w1, top, left = self._windows(at_w1, n, height, width, side)
        w2 = self._windows(at_w2, n, height, width, side)[0]
        union_norm2 = tf.reduce_sum(tf.square(tf.where((w1 | w2)[..., None], nu, 0.0)), [1, 2])
        old = tf.where(w1[..., None], nu, 0.0)
        old /= tf.sqrt(tf.reduce_sum(tf.square(old), [1, 2], keepdims=True)) + 1e-12
        # η* on W1: pattern[r − top, c − left], or its transpose, at random per example.
        rows = tf.clip_by_value(tf.range(height)[None] - top[:, None], 0, tf.shape(pattern)[0] - 1)
        cols = tf.clip_by_value(tf.range(width)[None] - left[:, None], 0, tf.shape(pattern)[1] - 1)
        grid = tf.stack([tf.broadcast_to(rows[:, :, None], [n, height, width]),
                         tf.broadcast_to(cols[:, None, :], [n, height, width])], -1)
        upright = tf.random.stateless_uniform([n, 1, 1], at_turn, dtype=tf.float64) < 0.5
        placed = tf.where(upright, tf.gather_nd(pattern, grid),
                          tf.gather_nd(tf.transpose(pattern), grid))
        new = tf.where(w1, placed, 0.0)[..., None] * self._signs(at_signs, [n, 1, 1, channels],
                                                                 tf.float64) + old
        new /= tf.sqrt(tf.reduce_sum(tf.square(new), [1, 2], keepdims=True)) + 1e-12
        avail = tf.sqrt(union_norm2 + unused[:, None] / channels)                    # (n, c)
        nu = tf.where(w2[..., None], tf.zeros_like(nu), nu)
        nu = tf.where(w1[..., None], new * avail[:, None, None, :], nu)
        norm = tf.maximum(tf.sqrt(_sq_norm(nu)), 1e-12)
        scale = tf.minimum(tf.constant(1.0, tf.float64), eps / norm)
        nu *= scale[:, None, None, None]
        return self._box(tf.cast(x64 + nu, tf.float32))


def eta_pattern(side: int) -> np.ndarray:
    """The L2 window pattern η of the paper's eq. (2), unit L2 norm: the upper half holds
    concentric rectangles with weights Σ_{k ≥ d} 1/(k+1)² at Chebyshev distance d from its
    centre, the lower half the same with a minus sign (the halves push in opposite directions)."""
    def rectangles(rows, cols):
        if rows == 0:
            return np.zeros((0, cols))
        centre_r, centre_c = rows // 2, cols // 2
        levels = max(centre_r + 1, centre_c + 1)
        tail = np.cumsum(1.0 / np.arange(levels, 0, -1) ** 2)[::-1]  # tail[d] = Σ_{k ≥ d} 1/(k+1)²
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        dist = np.maximum(np.abs(r - centre_r), np.abs(c - centre_c))
        block = tail[np.minimum(dist, levels - 1)]
        return block / np.sqrt(np.sum(block ** 2))

    pattern = np.concatenate([rectangles(side // 2, side), -rectangles(side - side // 2, side)], 0)
    return pattern / np.sqrt(np.sum(pattern ** 2))


def _margin(logits, labels):
    """:func:`margin` in the graph, in float64."""
    return losses_lib.margin(logits=tf.cast(logits, tf.float64), labels=labels)


def _sq_norm(t):
    return tf.reduce_sum(tf.square(tf.reshape(t, [tf.shape(t)[0], -1])), axis=-1)


def _l2(t):
    return np.sqrt(np.sum(np.square(t.reshape(len(t), -1)), axis=-1))


@ATTACKS.register("square")
def square(*, eps, norm="linf", n_queries=5000, p_init=0.8, n_restarts=1, pixel_range="[0,1]",
           seed=None, window_positions="paper", name="square") -> Attack:
    """Square Attack (Andriushchenko et al. 2020), margin loss; AutoAttack's standard settings."""
    return SquareAttack(eps=eps, norm=norm, n_queries=n_queries, p_init=p_init,
                        n_restarts=n_restarts, pixel_range=pixel_range, seed=seed,
                        window_positions=window_positions, name=name)
