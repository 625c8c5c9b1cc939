"""THE attack loop of tfadv: one graph-safe iterative attack used by training and evaluation.

    x⁰ = start(x)                                   (BAT eq. 3: uniform in the ball; or Gaussian; or x)
    repeat k times, for the examples still active:
        g  = ∇_x Σ_i objective(f(xᵗ)_i)             (summed per-example losses, as every release does)
        d, sᵗ⁺¹ = update(sᵗ, g)                      (d = g; MI-FGSM: momentum, tfadv.attacks.updates)
        xᵗ⁺¹ = clip_range(project_ball(step(xᵗ, d))) (BAT eq. 4 / Madry's PGD)
    keep, over restarts, the per-example worst case (successful first, then the larger objective).

PGD, FGSM, C&W∞ (:mod:`tfadv.attacks.basic`) and MI-FGSM (:mod:`tfadv.attacks.mifgsm`) are this
loop with different sizes, losses, starts and updates; the step objects (:mod:`tfadv.attacks.steps`)
own the geometry (random start, step, projection).

Every attack takes a logits callable ``model_fn(x)``. A Keras model passed instead is called with
``training=self.training`` (``False`` by default: BatchNorm in inference mode, no statistic updates;
``True`` reproduces Madry's train-mode generation). The loop is written with ``tf.while_loop`` so the
same object runs eagerly, inside ``tf.function`` and inside a Keras ``train_step``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks import gradients as gradients_lib
from tfadv.attacks import steps as steps_lib
from tfadv.attacks import targets as targets_lib
from tfadv.attacks import updates as updates_lib
# The base classes and model callables have their own modules; they stay importable from here.
from tfadv.attacks.base import Attack, NoOpAttack  # noqa: F401
from tfadv.attacks.model_fn import ModelFn, as_model_fn, inference_fn, output_classes  # noqa: F401

ATTACK_LOSSES = ("ce", "cw", "kl")
TARGET_KINDS = (None, "given", "mc", "ll", "random")


@dataclasses.dataclass
class StepState:
    """What a per-example stop criterion sees at iteration ``step`` (before the step is taken)."""

    step: tf.Tensor
    x_adv: tf.Tensor
    x_nat: tf.Tensor
    grad: tf.Tensor
    logits: tf.Tensor
    labels: tf.Tensor
    eps: float
    x_start: Optional[tf.Tensor] = None  # the run's start point x⁰ (after the random start)
    update_state: Any = None  # the update's state before this step (MI-FGSM: the momentum g_t)


class IterativeAttack(Attack):
    """Projected gradient attacks (PGD, FGSM, targeted variants, CW/KL objectives), Linf or L2.

    Args:
        eps: radius of the ball, in *input units* (8/255 for 8 pixels in [0,1]; convert pixel flags
            with ``tfadv.ranges.get_range(r).from_pixels``).
        step_size: step a, input units. Default ``2.5 * eps / num_steps``.
        num_steps: k iterations (0 returns the random start; FGSM is one step of size eps).
        norm: ``linf`` or ``l2``.
        random_start: ``uniform`` (in the ball), ``gaussian`` (σ=``gaussian_std``), ``none``.
        loss: ``ce`` (cross-entropy), ``cw`` (Madry's CW margin with κ=``kappa``), ``kl``
            (KL(f(x) ‖ f(x')) to the clean prediction, as TRADES' inner maximisation).
        target: ``None`` (untargeted), ``given`` (``targets=`` passed to the call), ``mc`` (most
            confusing), ``ll`` (least likely), ``random`` (uniform over the other classes). Targeted
            attacks *descend* the target's loss (BAT eq. 24).
        restarts: independent runs; per example the successful/highest-objective one is kept.
        pixel_range: images are clipped to it after every step.
        training: call a Keras model in training mode (Madry's release) instead of inference mode.
        early_stop: stop moving examples as soon as the attack succeeds (evaluation: fewer wasted
            steps; a success is never undone).
        stop_fn: optional per-example criterion ``StepState -> bool``; examples for which it is true
            stop moving for the rest of the run (Dynamic AT's FOSC control).
        seed: op seed for the random start and random targets.
    """

    name = "pgd"

    def __init__(self, *, eps: float, step_size: Optional[float] = None, num_steps: int = 10,
                 norm: str = "linf", random_start: str = "uniform", loss: str = "ce",
                 target: Optional[str] = None, restarts: int = 1, pixel_range="[0,1]",
                 training: bool = False, gaussian_std: float = 1e-3, kappa: float = 50.0,
                 early_stop: bool = False, stop_fn: Optional[Callable] = None,
                 seed: Optional[int] = None, name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        self.norm = norm
        self._step = steps_lib.get(norm)
        self.eps = checks.check_radius(eps, "eps", self._step.name, self.pixel_range,
                                       allow_zero=True)
        if not isinstance(num_steps, (int, np.integer, float)) or int(num_steps) != num_steps \
                or num_steps < 0:
            raise ValueError(f"num_steps must be a non-negative integer. Received: {num_steps!r}.")
        self.num_steps = int(num_steps)
        if step_size is None:
            step_size = 2.5 * self.eps / max(self.num_steps, 1)
        self.step_size = checks.check_radius(step_size, "step_size", self._step.name,
                                             self.pixel_range,
                                             allow_zero=self.num_steps == 0 or self.eps == 0)
        if random_start not in steps_lib.RANDOM_STARTS:
            raise ValueError(f"Unknown random_start. Expected one of {steps_lib.RANDOM_STARTS}. "
                             f"Received: {random_start!r}.")
        self.random_start = random_start
        if loss not in ATTACK_LOSSES:
            raise ValueError(f"Unknown attack loss. Expected one of {ATTACK_LOSSES}. Received: {loss!r}.")
        if target not in TARGET_KINDS:
            raise ValueError(f"Unknown target. Expected one of {TARGET_KINDS}. Received: {target!r}.")
        if target is not None and loss == "kl":
            raise ValueError(f"The kl loss has no targeted form. Received: loss='kl', target={target!r}.")
        self.loss = loss
        self.target = target
        self.restarts = int(restarts)
        if self.restarts < 1 or self.restarts != restarts:
            raise ValueError(f"restarts must be an integer >= 1. Received: {restarts!r}.")
        self.training = bool(training)
        self.gaussian_std = float(gaussian_std)
        self.kappa = float(kappa)
        self.early_stop = bool(early_stop)
        self.stop_fn = stop_fn
        self.seed = seed
        self.update = updates_lib.GradientUpdate()
        if name is not None:
            self.name = name

    def reproducible_per_call(self) -> bool:
        """Without a random start or random targets: the random start and random targets draw
        from stateful, op-seeded ops, whose seed fixes the sequence of draws, not each call's."""
        return self.random_start == "none" and self.target != "random"

    def model_calls_per_example(self) -> int:
        """Model evaluations per example in graph mode: k gradient steps per restart, one scoring
        forward per restart when restarts > 1, and one clean forward for targets/KL."""
        calls = self.num_steps * self.restarts + (self.restarts if self.restarts > 1 else 0)
        return calls + int(self.target in ("mc", "ll", "random") or self.loss == "kl")

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "step_size": self.step_size,
                "num_steps": self.num_steps, "norm": self.norm, "random_start": self.random_start,
                "loss": self.loss, "target": self.target, "restarts": self.restarts,
                "pixel_range": str(self.pixel_range), "training": self.training,
                "early_stop": self.early_stop}

    # ----------------------------------------------------------------------------------------
    def _clip(self, x):
        return tf.clip_by_value(x, self.pixel_range.low, self.pixel_range.high)

    def _objective(self, logits, labels, targets, logits_clean):
        """Per-example quantity the attack increases."""
        if self.target is not None:
            if self.loss == "ce":
                return -losses_lib.ce(logits=logits, labels=targets)  # descend the target's CE
            return losses_lib.cw_target_margin(logits=logits, targets=targets, kappa=self.kappa)
        if self.loss == "ce":
            return losses_lib.ce(logits=logits, labels=labels)
        if self.loss == "cw":
            return losses_lib.cw_margin(logits=logits, labels=labels, kappa=self.kappa)
        return losses_lib.trades_kl(logits_clean=logits_clean, logits_adv=logits)

    def _success(self, logits, labels, targets):
        pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
        if self.target is not None:
            return tf.equal(pred, targets)
        return tf.not_equal(pred, labels)

    #: Whether a call may run fewer iterations than ``num_steps`` (a curriculum's k).
    per_call_num_steps = True

    def __call__(self, model_fn, x, y, *, targets=None, logits_clean=None, eps_scale=None,
                 num_steps=None, x_start=None):
        """Returns adversarial images (stop-gradient) for images ``x`` with labels ``y``.

        ``eps_scale`` (a scalar, possibly a tensor in [0, 1]) multiplies eps and the step size for
        this call: the eps warm-up of a training run (AdversarialModel ``eps_warmup_steps``).
        ``num_steps`` (a Python int or an integer tensor/``tf.Variable``, e.g. a curriculum's k)
        runs this many iterations instead of ``self.num_steps``, which stays the loop's static
        bound: larger tensor values are capped at it. ``x_start`` (images like ``x``) is every
        run's first iterate instead of the random start, projected onto the ball and the range
        (A3's direction-initialised restarts, :mod:`tfadv.attacks.a3`).

        Called eagerly, the batch is checked on the host; from the second call against the same
        model on, the whole attack (clean logits, targets, restarts and the k-step loop) runs as
        one ``tf.function`` traced once per model and input shape (:meth:`compiled_for`). Inside a
        ``tf.function`` (a ``train_step``, the evaluation runner) it is traced into the caller's
        graph. Compiled, the loop never returns to the host between steps.
        """
        if num_steps is not None:
            if not self.per_call_num_steps:
                raise ValueError(f"{type(self).__name__} takes no per-call num_steps (its step "
                                 f"schedule is fixed by num_steps={self.num_steps}). "
                                 f"Received: num_steps={num_steps!r}.")
            if isinstance(num_steps, (int, np.integer)) and not 0 <= num_steps <= self.num_steps:
                raise ValueError(f"num_steps must lie in [0, {self.num_steps}] (the attack's "
                                 f"num_steps). Received: num_steps={num_steps!r}.")
        as_model_fn(model_fn, self.training)  # rejects training=True for plain callables
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.cast(tf.convert_to_tensor(y), tf.int32)
        if self.target == "given" and targets is None:
            raise ValueError("target='given' needs targets=... in the call. Received: None.")
        return checks.unless_empty(x, y, self.pixel_range, lambda: self._call(
            model_fn, x, y, targets, logits_clean, eps_scale, num_steps, x_start))

    def _call(self, model_fn, x, y, targets, logits_clean, eps_scale, num_steps, x_start=None):
        """:meth:`__call__` on a batch with examples."""
        if x_start is not None:
            x_start = tf.convert_to_tensor(x_start, tf.float32)
        if not tf.executing_eagerly():
            return self._attack_graph(model_fn, x, y, targets, logits_clean, eps_scale, num_steps,
                                      x_start)
        compiled = self.compiled_for(model_fn)
        if compiled is None:
            # Op by op: the first call against a model, or an attack with a stop criterion.
            if logits_clean is None:
                logits_clean = tf.stop_gradient(inference_fn(model_fn)(x))
            checks.validate_batch(x, y, logits_clean, self.pixel_range)
            return self._attack_graph(model_fn, x, y, targets, logits_clean, eps_scale, num_steps,
                                      x_start)
        # Host-side checks need the number of classes: the caller's clean logits, else the model's
        # stated or remembered output size (no forward pass per call, see output_classes).
        classes = logits_clean if logits_clean is not None else (
            lambda: self.output_classes(model_fn, x))
        checks.validate_batch(x, y, classes, self.pixel_range)
        # Python numbers become tensors so that new values (an eps warm-up, a curriculum's k) reuse
        # the trace instead of retracing it.
        if eps_scale is not None and not isinstance(eps_scale, (tf.Tensor, tf.Variable)):
            eps_scale = tf.constant(eps_scale, tf.float32)
        if isinstance(num_steps, (int, np.integer)):
            num_steps = tf.constant(int(num_steps), tf.int32)
        if targets is not None:
            targets = tf.cast(targets, tf.int32)
        if logits_clean is not None:
            logits_clean = tf.convert_to_tensor(logits_clean, tf.float32)
        return compiled(x, y, targets, logits_clean, eps_scale, num_steps, x_start)

    def compiled_for(self, model_fn) -> Optional[Callable]:
        """The ``tf.function`` that runs this attack against ``model_fn`` from an eager call, or
        None where the call runs op by op.

        Tracing costs about as much as a few eager runs, so the first eager call against a model
        runs op by op and every later one the compiled attack: one ``tf.function`` per model and
        BN mode from the attack's compile cache (:meth:`Attack.compiled`, ``lazy``), with
        ``reduce_retracing`` (one trace per input shape, a second, shape-relaxed one if the batch
        size changes). An attack with a ``stop_fn`` always runs op by op when called eagerly: the
        criterion may be any Python callable and sees eager tensors once per step (wrap the call
        in ``tf.function`` to compile it, as ``train_step`` does). A shallow copy of the attack
        (e.g. Dynamic AT's ``with_stop_fn``) never reuses the original's functions.
        """
        if self.stop_fn is not None:
            return None

        def build(owner):
            def attack(x, y, targets, logits_clean, eps_scale, num_steps, x_start=None):
                return self._attack_graph(owner, x, y, targets, logits_clean, eps_scale, num_steps,
                                          x_start)

            return tf.function(attack, reduce_retracing=True)

        return self.compiled(model_fn, build, training=self.training, lazy=True)

    def _attack_graph(self, model_fn, x, y, targets, logits_clean, eps_scale, num_steps,
                      x_start=None):
        """The attack as traced into a graph: clean logits (only if targets or the KL loss need
        them), targets, then ``restarts`` runs of :meth:`_run` keeping the per-example worst case."""
        raw_model = model_fn
        model_fn = as_model_fn(raw_model, self.training)
        needs_clean = self.target in ("mc", "ll", "random") or self.loss == "kl"
        if logits_clean is None and needs_clean:
            # Inference-mode clean logits (BAT computes the MC target with BN in inference mode).
            logits_clean = tf.stop_gradient(inference_fn(raw_model)(x))
        if self.target == "given":
            targets = tf.cast(targets, tf.int32)
        elif self.target is not None:
            targets = targets_lib.select(self.target, logits=logits_clean, labels=y, seed=self.seed)

        best = None
        active0 = tf.ones(tf.shape(y), tf.bool)
        for r in range(self.restarts):
            seed = None if self.seed is None else self.seed + 7919 * r
            if best is not None and self.early_stop:
                active0 = tf.logical_not(best[2])
            x_adv = self._run(model_fn, x, y, targets, logits_clean, seed, active0, eps_scale,
                              num_steps, x_start)
            if self.restarts == 1:
                return tf.stop_gradient(x_adv)
            logits = inference_fn(raw_model)(x_adv)  # scoring never touches BN statistics
            obj = self._objective(logits, y, targets, logits_clean)
            succ = self._success(logits, y, targets)
            if best is None:
                best = (x_adv, obj, succ)
                continue
            better = tf.logical_or(
                tf.logical_and(succ, tf.logical_not(best[2])),
                tf.logical_and(tf.equal(succ, best[2]), obj > best[1]))
            best = (tf.where(self._expand(better, x), x_adv, best[0]),
                    tf.where(better, obj, best[1]), tf.logical_or(succ, best[2]))
        return tf.stop_gradient(best[0])

    _expand = staticmethod(checks.expand_to)

    def _start(self, x, seed, active0, eps_scale):
        """The (eps-scaled) eps and step of this call and the start point x⁰ of one run; inactive
        examples start (and stay) at x."""
        eps, step_size = self.eps, self.step_size
        if eps_scale is not None:
            scale = tf.cast(eps_scale, x.dtype)
            eps, step_size = eps * scale, step_size * scale
        x_adv = self._step.random_init(x, eps, self.random_start, gaussian_std=self.gaussian_std,
                                       seed=seed)
        if self.random_start == "uniform":
            x_adv = self._clip(x_adv)
        return tf.where(self._expand(active0, x), x_adv, x), eps, step_size

    #: Early-stopping attacks against an inference-mode model compute every step on the still-active
    #: examples only (issue 8: evaluation stops attacking examples already misclassified).
    compact_frozen = True

    def _compacts(self, model_fn) -> bool:
        """Whether :meth:`_run` may drop frozen examples from the forward/backward: only with
        ``early_stop`` (no ``stop_fn``, which sees whole batches) and BatchNorm in inference mode,
        where every example's logits are independent of the rest of the batch. A plain callable
        counts as inference mode (``as_model_fn`` refuses ``training=True`` for it)."""
        return (self.compact_frozen and self.early_stop and self.stop_fn is None
                and not getattr(model_fn, "training", False))

    def _step_size_at(self, step_size, i):
        """The step size of iteration ``i``: constant here; a schedule in subclasses (A3's cosine
        decay, :class:`tfadv.attacks.a3.MarginSteps`)."""
        return step_size

    def _run(self, model_fn, x, y, targets, logits_clean, seed, active0, eps_scale=None,
             num_steps=None, x_start=None):
        """One run: start point, then ``num_steps`` masked projected steps along the update's
        direction (:mod:`tfadv.attacks.updates`: the gradient, or MI-FGSM's momentum carried as
        loop state); the loop ends early once no example is active (FOSC Algorithm 1's
        ``while ΣV > 0``; frozen examples never move, so this changes no output)."""
        step, update = self._step, self.update
        x_adv, eps, step_size = self._start(x, seed, active0, eps_scale)
        if x_start is not None:
            x_adv = tf.where(self._expand(active0, x), self._clip(step.project(x_start, x, eps)), x)
        x_start = x_adv
        bound = self.num_steps
        if num_steps is not None:
            bound = tf.minimum(tf.cast(num_steps, tf.int32), self.num_steps)

        def advance(xs, x_nat, grad, state, i):
            """The next iterate and update state of the examples ``xs`` (around ``x_nat``)."""
            direction, state = update.next_state(state, grad)
            size = self._step_size_at(step_size, i)
            return self._clip(step.project(step.step(xs, direction, size), x_nat, eps)), state

        def keep(moving, new, old):
            return tf.nest.map_structure(
                lambda a, b: tf.where(self._expand(moving, a), a, b), new, old)

        def body(i, x_adv, state, active):
            logits, _, grad = gradients_lib.input_gradient(
                model_fn, self._objective, x_adv, (y, targets, logits_clean))
            if self.early_stop:
                active = tf.logical_and(active, tf.logical_not(self._success(logits, y, targets)))
            if self.stop_fn is not None:
                stop = self.stop_fn(StepState(step=i, x_adv=x_adv, x_nat=x, grad=grad,
                                              logits=logits, labels=y, eps=eps, x_start=x_start,
                                              update_state=state))
                active = tf.logical_and(active, tf.logical_not(stop))
            x_new, state = advance(x_adv, x, grad, state, i)
            return i + 1, keep(active, x_new, x_adv), state, active

        def compact_body(i, x_adv, state, active):
            # The same step as ``body`` with early stopping, computed on the still-active examples
            # only (gathered, then scattered back): frozen examples cost no forward/backward.
            idx = tf.where(active)

            def take(t):
                return None if t is None else tf.gather_nd(t, idx)

            def put(full, part):
                return tf.tensor_scatter_nd_update(full, idx, part)

            xs, ys, ts, ss = take(x_adv), take(y), take(targets), tf.nest.map_structure(take, state)
            logits, _, grad = gradients_lib.input_gradient(
                model_fn, self._objective, xs, (ys, ts, take(logits_clean)))
            moving = tf.logical_not(self._success(logits, ys, ts))
            x_new, ss = advance(xs, take(x), grad, ss, i)
            return (i + 1, put(x_adv, keep(moving, x_new, xs)),
                    tf.nest.map_structure(put, state, ss), put(active, moving))

        if self._compacts(model_fn):
            body = compact_body
        if self.num_steps > 0:
            _, x_adv, _, _ = tf.while_loop(
                lambda i, _, __, active: tf.logical_and(i < bound, tf.reduce_any(active)), body,
                (tf.constant(0), x_adv, update.init_state(x), active0),
                maximum_iterations=self.num_steps)
        # A Gaussian start is not clipped before the first step (TRADES' release); examples frozen
        # before moving, or num_steps=0, must still come back inside the pixel range.
        return self._clip(x_adv)
