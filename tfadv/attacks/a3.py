"""Adaptive Auto Attack (A3; Liu et al., CVPR 2022, "Practical Evaluation of Adversarial Robustness
via Adaptive Auto Attack") on the one attack loop, and ``autoattack_fast``, the suite built on it.

A3 spends AutoAttack-grade effort only where it pays (REFERENCE_NOTES section 5, the A3 release):

    pre-stage   one random corner x + eps·s, s ∈ {-1, 1}ᵈ (a forward pass, no gradient)
    restart 0   margin-loss sign steps from a uniform start (``first_steps``, cosine step decay
                from eps to 0.1·eps): the cheap first stage that removes the easy points
    restart r≥1 ADI, adaptive direction initialisation: ``adi_steps`` full-eps sign steps that
                ascend w·f(x) (ODI-style output diversification), then ``steps`` margin-loss steps
                from there (cosine decay to 0.001·eps). Restart 1 draws w ~ U(-1, 1)ᴷ and records
                the true-class entries w_y of the points it fools; from restart 2 on the entry of a
                target class is set to 0.8·K/10, the target cycling through the clean logits'
                ranks 2..K (targets ordered by logit margin), and w_y is drawn from the range the
                recorded entries span.
    OSD         online statistics-based discarding: every restart r≥1 attacks only the top-α
                fraction (at least ``min_keep`` points) of the still-robust points, ranked by the
                best margin loss max_{k≠y} z_k - z_y found so far (the closest to the boundary
                first); α = 1, or ``alpha_low`` (0.03) once restart 1's ADI success rate is below
                ``adi_threshold`` (5%).
    finisher    (not in A3; off unless ``finisher_fraction`` > 0, on in ``autoattack_fast``) APGD-T
                (targeted DLR, the clean logits' top ``finisher_targets`` other classes,
                ``finisher_iter`` iterations, its own random start) on the ``finisher_fraction`` of
                the points still robust that lie closest to the boundary by OSD's best margin: a
                second loss and start where one more try is most likely to pay. Measured on the
                MNIST Madry model (docs/results.md): the points only AutoAttack's ensemble fooled
                were among the closest to the boundary after A3, and spending six of A3's 13
                restarts on APGD-T for the closest three quarters instead matched AutoAttack.
    extra       (not in A3; ``finisher_extra_targets`` > 0, 1 in ``autoattack_fast``) APGD-T over
                the next target class(es) by clean logit (``target_offset``: the finisher's run
                split in two), only on the finisher's points still robust whose best margin loss
                has closed to within ``finisher_extra_ratio`` (0.1) of their clean margin:
                m_best ≥ 0.1·m_clean, both negative. The ratio is free of the logits' scale and
                shift; measured (docs/results.md), the points a fourth target fools on the MNIST
                Madry model had ratios of 0.02, where every point the CIFAR-10 ResNet-20 keeps had
                0.26 or more, so the stage costs nothing where it cannot pay.

Every stage is an :class:`~tfadv.attacks.core.IterativeAttack` (early stopping: a fooled point
costs no further pass); ADI's direction w rides in the loop's per-example clean-logits slot and
the starts are drawn on the host from ``seed`` (the same call gives the same result). The points
fooled early never reach the later restarts, and points OSD discards are not attacked again, which
can only lose points an exhaustive attack would find: ``autoattack_fast`` therefore turns the
finisher on and ends with Square (1,000 queries) on what A3 left robust. Deviations from the
release: docs/deviations.md.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks import steps as steps_lib
from tfadv.attacks.apgd import APGD
from tfadv.attacks.base import Attack
from tfadv.attacks.checks import check_int, check_number
from tfadv.attacks.core import IterativeAttack
from tfadv.attacks.model_fn import inference_fn
from tfadv.attacks.registry import ATTACKS

# autoattack_fast: A3 with 7 restarts (A3: 13), the finisher on the closest three quarters of what
# they leave robust and its fourth target where the margin closed to a tenth, then Square-1000;
# chosen by the measurements in docs/results.md.
FAST_MEMBERS = (("a3", {"n_restarts": 7, "finisher_fraction": 0.75, "finisher_extra_targets": 1}),
                ("square", {"n_queries": 1000}))

TARGET_WEIGHT = 0.8  # the target entry of an ADI direction is 0.8·K/10 (A3 release)
SHORT_RUN = 10  # cosine decay to 0.1·eps for runs of at most 10 steps, to 0.001·eps otherwise


class DirectionSteps(IterativeAttack):
    """ADI: sign steps of size eps ascending w·f(x) per example; ``w`` is passed as
    ``logits_clean`` (the loop gathers it with the still-active examples)."""

    name = "a3_adi"

    def _objective(self, logits, labels, targets, logits_clean):
        return tf.reduce_sum(logits_clean * logits, axis=-1)


class MarginSteps(IterativeAttack):
    """Margin-loss (CW) sign steps whose size decays along a cosine from eps to 0.1·eps (runs of
    at most 10 steps) or 0.001·eps (longer runs), as A3's core."""

    name = "a3_margin"

    def _step_size_at(self, step_size, i):
        floor = 0.1 if self.num_steps <= SHORT_RUN else 0.001
        t = tf.cast(i, tf.float32) / float(max(self.num_steps - 1, 1))
        return step_size * (floor + (1.0 - floor) * 0.5 * (1.0 + tf.cos(math.pi * t)))


def margin_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """max_{k≠y} z_k - z_y per example: > 0 where the point is misclassified (OSD's ranking)."""
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = -np.inf
    return others.max(axis=-1) - logits[rows, labels]


class A3Attack(Attack):
    """Adaptive Auto Attack: random corner, a cheap margin stage, then ADI restarts under OSD.

    Args:
        eps: radius in input units.
        norm: ``linf`` (A3's threat model) or ``l2`` (the same stages in the L2 geometry).
        n_restarts: restarts after the corner (A3: 13, restart 0 included).
        first_steps: margin steps of restart 0 (A3: 8).
        adi_steps: ADI steps of every later restart (A3: 7).
        steps: margin steps after ADI (A3 release: 15 in restart 1; we use it for every restart).
        alpha_low: OSD's fraction once ADI rarely succeeds (A3: 0.03).
        adi_threshold: restart 1's ADI success rate below which α drops (A3: 5%).
        min_keep: OSD attacks at least this many points (A3: 100).
        corner: run the pre-stage's random corner.
        finisher_fraction: fraction (rounded up) of the points still robust after the restarts,
            the closest to the boundary by best margin, that APGD-T attacks once more; 0 (the
            default, A3 as published) turns the finisher off.
        finisher_targets: APGD-T's target classes (at most K - 1 are used).
        finisher_iter: APGD-T's iterations per target.
        finisher_extra_targets: target classes after the finisher's that APGD-T tries on the
            points still robust whose best margin has closed to within ``finisher_extra_ratio``
            of their clean margin; 0 (the default) turns the stage off.
        finisher_extra_ratio: that ratio, in (0, 1].
        pixel_range: images are clipped to it.
        seed: seed of the host-side starts, corners and directions (deterministic per call).

    After a call, ``last_run`` lists per stage: ``stage``, ``attacked``, ``fooled`` (and
    ``alpha`` for the restarts, ``fraction`` for the finisher, ``ratio`` for its extra stage).
    """

    name = "a3"
    graph_safe = False

    def __init__(self, *, eps: float, norm: str = "linf", n_restarts: int = 13,
                 first_steps: int = 8, adi_steps: int = 7, steps: int = 15,
                 alpha_low: float = 0.03, adi_threshold: float = 0.05, min_keep: int = 100,
                 corner: bool = True, finisher_fraction: float = 0.0, finisher_targets: int = 3,
                 finisher_iter: int = 100, finisher_extra_targets: int = 0,
                 finisher_extra_ratio: float = 0.1, pixel_range="[0,1]",
                 seed: Optional[int] = 0, name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        if norm not in ("linf", "l2"):
            raise ValueError(f"A3 norm must be 'linf' or 'l2'. Received: {norm!r}.")
        self.norm = norm
        self._ball = steps_lib.get(norm)
        self.eps = checks.check_radius(eps, "eps", norm, self.pixel_range)
        self.n_restarts = check_int(n_restarts, "n_restarts", 1)
        self.first_steps = check_int(first_steps, "first_steps", 1)
        self.adi_steps = check_int(adi_steps, "adi_steps", 1)
        self.steps = check_int(steps, "steps", 1)
        self.alpha_low = check_number(alpha_low, "alpha_low", upper=1.0)
        self.adi_threshold = check_number(adi_threshold, "adi_threshold", positive=False,
                                          upper=1.0)
        self.min_keep = check_int(min_keep, "min_keep", 1)
        if not isinstance(corner, (bool, np.bool_)):
            raise ValueError(f"corner must be True or False. Received: {corner!r}.")
        self.corner = bool(corner)
        self.finisher_fraction = check_number(finisher_fraction, "finisher_fraction",
                                              positive=False, upper=1.0)
        self.finisher_targets = check_int(finisher_targets, "finisher_targets", 1)
        self.finisher_iter = check_int(finisher_iter, "finisher_iter", 1)
        self.finisher_extra_targets = check_int(finisher_extra_targets,
                                                "finisher_extra_targets", 0)
        self.finisher_extra_ratio = check_number(finisher_extra_ratio, "finisher_extra_ratio",
                                                 upper=1.0)
        self._finishers = {}  # APGD-T per (target offset, target count): compiled once
        self.seed = None if seed is None else check_int(seed, "seed", 0)
        common = dict(eps=self.eps, step_size=self.eps, norm=norm, random_start="none",
                      pixel_range=str(self.pixel_range), early_stop=True)
        self._first = MarginSteps(num_steps=self.first_steps, loss="cw", **common)
        self._adi = DirectionSteps(num_steps=self.adi_steps, **common)
        self._main = MarginSteps(num_steps=self.steps, loss="cw", **common)
        self.last_run = []
        if name is not None:
            self.name = name

    def reproducible_per_call(self) -> bool:
        """With a seed: every call draws its starts, corners and directions from a new host
        generator of ``seed`` (its inner steps take no random start)."""
        return self.seed is not None

    def model_calls_per_example(self) -> int:
        """Upper bound: the clean and corner forwards, then every restart's steps and scoring,
        then the finisher's APGD-T (its own count, at all ``finisher_targets``) and scoring."""
        later = (self.n_restarts - 1) * (self.adi_steps + self.steps + 1)
        finisher = 0
        if self.finisher_fraction > 0:
            finisher = self._finisher(self.finisher_targets + 1).model_calls_per_example() + 1
            extra = self._extra(self.finisher_targets + self.finisher_extra_targets + 1)
            if extra is not None:
                finisher += extra.model_calls_per_example() + 1
        return 1 + int(self.corner) + self.first_steps + 1 + later + finisher

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "norm": self.norm,
                "n_restarts": self.n_restarts, "first_steps": self.first_steps,
                "adi_steps": self.adi_steps, "steps": self.steps, "alpha_low": self.alpha_low,
                "adi_threshold": self.adi_threshold, "min_keep": self.min_keep,
                "corner": self.corner, "finisher_fraction": self.finisher_fraction,
                "finisher_targets": self.finisher_targets, "finisher_iter": self.finisher_iter,
                "finisher_extra_targets": self.finisher_extra_targets,
                "finisher_extra_ratio": self.finisher_extra_ratio,
                "pixel_range": str(self.pixel_range), "seed": self.seed}

    # ------------------------------------------------------------------------------ helpers
    def _in_ball(self, points, x):
        return np.asarray(tf.clip_by_value(self._ball.project(tf.constant(points), tf.constant(x),
                                                              self.eps),
                                           self.pixel_range.low, self.pixel_range.high))

    def _uniform_start(self, x, rng):
        return self._in_ball(x + rng.uniform(-self.eps, self.eps, x.shape).astype(np.float32), x)

    def _directions(self, restart, logits, labels, true_range, rng):
        """ADI's w per example (K classes): U(-1, 1)ᴷ; from restart 2 the target entry (clean
        logit rank 2 + (restart - 2) mod (K - 1)) is 0.8·K/10 and w_y ~ U(true_range)."""
        n, k = logits.shape
        w = rng.uniform(-1.0, 1.0, (n, k))
        if restart >= 2:
            rows = np.arange(n)
            order = np.argsort(-logits, axis=-1, kind="stable")
            masked = order[order != labels[:, None]].reshape(n, k - 1)  # other classes by logit
            targets = masked[:, (restart - 2) % (k - 1)]
            w[rows, targets] = TARGET_WEIGHT * k / 10.0
            w[rows, labels] = rng.uniform(true_range[0], true_range[1], n)
        return w.astype(np.float32)

    def _keep(self, idx, best_margin, alpha, min_keep=None):
        """OSD: the top-α fraction (at least ``min_keep``) of ``idx`` by best margin loss."""
        min_keep = self.min_keep if min_keep is None else min_keep
        count = min(idx.size, max(min_keep, int(math.ceil(alpha * idx.size))))
        order = np.argsort(-best_margin[idx], kind="stable")
        return np.sort(idx[order[:count]])

    def _finisher(self, num_classes):
        """The finisher's APGD-T for ``num_classes`` classes (at most K - 1 targets)."""
        return self._apgd_t(0, min(self.finisher_targets, num_classes - 1))

    def _extra(self, num_classes):
        """APGD-T over the ``finisher_extra_targets`` classes ranked after the finisher's (at most
        K - 1 targets in all; None when there are none: the stage is off, or the finisher's
        targets already cover the K - 1 classes)."""
        offset = min(self.finisher_targets, num_classes - 1)
        targets = min(self.finisher_extra_targets, num_classes - 1 - offset)
        return self._apgd_t(offset, targets) if targets >= 1 else None

    def _apgd_t(self, offset, targets):
        """APGD-T (targeted DLR, ``finisher_iter`` iterations) over the ``targets`` classes after
        the first ``offset``; one per (offset, targets), so each compiles once."""
        if (offset, targets) not in self._finishers:
            self._finishers[offset, targets] = APGD(
                eps=self.eps, norm=self.norm, loss="dlr", targeted=True,
                n_iter=self.finisher_iter, n_target_classes=targets, target_offset=offset,
                pixel_range=str(self.pixel_range), seed=self.seed)
        return self._finishers[offset, targets]

    def _close(self, idx, best_margin, clean_margin):
        """The points of ``idx`` whose best margin loss has closed to within
        ``finisher_extra_ratio`` of their clean margin: m_best ≥ ratio · m_clean (both < 0)."""
        return idx[best_margin[idx] >= self.finisher_extra_ratio * clean_margin[idx]]

    # ------------------------------------------------------------------------------ the attack
    def __call__(self, model_fn, x, y, **kwargs):
        if kwargs:
            raise ValueError(f"A3 takes no call options. Received: {sorted(kwargs)}.")
        fn = inference_fn(model_fn)
        x = np.asarray(tf.convert_to_tensor(x, tf.float32))
        y = np.asarray(tf.cast(tf.convert_to_tensor(y), tf.int32))
        logits = checks.validate_batch(x, y, (lambda: np.asarray(fn(x))) if len(x) else 0,
                                       self.pixel_range)
        x_adv = x.copy()
        self.last_run = []
        if len(x) == 0:
            return tf.constant(x_adv)
        logits = np.asarray(logits)
        clean_margin = margin_loss(logits, y)
        best_margin = clean_margin.copy()
        robust = np.argmax(logits, axis=-1) == y
        rng = np.random.default_rng(self.seed)

        def score(idx, candidates, stage, **extra):
            scores = np.asarray(fn(tf.constant(candidates)))
            m = margin_loss(scores, y[idx])
            fooled = np.argmax(scores, axis=-1) != y[idx]
            best_margin[idx] = np.maximum(best_margin[idx], m)
            x_adv[idx[fooled]] = candidates[fooled]
            robust[idx[fooled]] = False
            self.last_run.append({"stage": stage, "attacked": int(idx.size),
                                  "fooled": int(fooled.sum()), **extra})
            return fooled

        if self.corner and robust.any():
            idx = np.flatnonzero(robust)
            signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=x[idx].shape)
            score(idx, self._in_ball(x[idx] + self.eps * signs, x[idx]), "corner")
        alpha, true_range = 1.0, (-1.0, 1.0)
        for restart in range(self.n_restarts):
            idx = np.flatnonzero(robust)
            if idx.size == 0:
                break
            if restart >= 1:
                idx = self._keep(idx, best_margin, alpha)
            xs, ys = x[idx], y[idx]
            start = self._uniform_start(xs, rng)
            if restart == 0:
                adv = self._first(model_fn, xs, ys, x_start=start)
                score(idx, np.asarray(adv), "restart 0", alpha=1.0)
                continue
            w = self._directions(restart, logits[idx], ys, true_range, rng)
            start = self._adi(model_fn, xs, ys, logits_clean=w, x_start=start)
            adv = self._main(model_fn, xs, ys, x_start=start)
            fooled = score(idx, np.asarray(adv), f"restart {restart}", alpha=alpha)
            if restart == 1:
                # A3's statistics: the fooled points' true-class entries bound w_y from now on,
                # and a low ADI success rate shrinks α.
                if fooled.any():
                    true_w = w[np.flatnonzero(fooled), ys[fooled]]
                    true_range = (float(true_w.min()), float(true_w.max()))
                if fooled.mean() < self.adi_threshold:
                    alpha = self.alpha_low
        idx = np.flatnonzero(robust)
        if self.finisher_fraction > 0 and idx.size and logits.shape[-1] > 1:
            idx = self._keep(idx, best_margin, self.finisher_fraction, min_keep=1)
            adv = self._finisher(logits.shape[-1])(model_fn, x[idx], y[idx])
            score(idx, np.asarray(adv), "finisher", fraction=self.finisher_fraction)
            extra = self._extra(logits.shape[-1])
            if extra is not None:
                idx = self._close(idx[robust[idx]], best_margin, clean_margin)
                if idx.size:
                    adv = extra(model_fn, x[idx], y[idx])
                    score(idx, np.asarray(adv), "finisher extra",
                          ratio=self.finisher_extra_ratio)
        return tf.constant(x_adv)


@ATTACKS.register("a3")
def a3(*, eps, norm="linf", n_restarts=13, first_steps=8, adi_steps=7, steps=15, alpha_low=0.03,
       adi_threshold=0.05, min_keep=100, corner=True, finisher_fraction=0.0, finisher_targets=3,
       finisher_iter=100, finisher_extra_targets=0, finisher_extra_ratio=0.1,
       pixel_range="[0,1]", seed=0, name=None) -> A3Attack:
    """Adaptive Auto Attack (Liu et al., CVPR 2022): corner, margin stage, ADI restarts with OSD."""
    return A3Attack(eps=eps, norm=norm, n_restarts=n_restarts, first_steps=first_steps,
                    adi_steps=adi_steps, steps=steps, alpha_low=alpha_low,
                    adi_threshold=adi_threshold, min_keep=min_keep, corner=corner,
                    finisher_fraction=finisher_fraction, finisher_targets=finisher_targets,
                    finisher_iter=finisher_iter, finisher_extra_targets=finisher_extra_targets,
                    finisher_extra_ratio=finisher_extra_ratio, pixel_range=pixel_range,
                    seed=seed, name=name)


@ATTACKS.register("autoattack_fast", "autoattack-fast")
def autoattack_fast(*, eps, norm="linf", seed=0, pixel_range="[0,1]", attack_params=None,
                    name="autoattack_fast") -> Attack:
    """The fast AutoAttack-grade ensemble (issue 20): A3 (corner, margin stage, ADI restarts with
    OSD: 7 restarts, then the APGD-T finisher on the closest three quarters of the points they
    left robust, and a fourth target on those of its points whose margin closed to within a tenth
    of the clean one), then Square with 1,000 queries on the points A3 left robust (the black-box
    check that gradient masking would need). Each member runs only on the points still robust;
    robust accuracy is the pointwise worst case, as AutoAttack's."""
    from tfadv.attacks.autoattack import AutoAttack  # deferred: a sibling registering itself

    members = [(label, {**params, "seed": seed}) for label, params in FAST_MEMBERS]
    return AutoAttack(eps=eps, norm=norm, version="custom", attacks=members,
                      attack_params=attack_params, seed=seed, pixel_range=pixel_range, name=name)
