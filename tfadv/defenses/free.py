"""Free AT (Shafahi et al., NeurIPS 2019, "Adversarial Training for Free!"): every mini-batch is
replayed m times, and one backward pass per replay gives both the weight gradient and the
perturbation's.

As the releases compute it (ashafahi/free_adv_train, TF; mahyarnajibi/FreeAdversarialTraining,
PyTorch), per replay of a batch x of n examples:

    x' = clip_range(x + δ[:n])
    g_w, g_δ = ∇_w, ∇_δ CE(f(x'), y)                      (one backward pass)
    w ← optimizer step with g_w
    δ[:n] ← clip(δ[:n] + s·sign(g_δ), −ε, ε)              (s = ε in both releases)

δ is a non-trainable variable of the batch's shape, zero once at construction and never reset: it
carries over the m replays, then over batches and epochs. A short batch uses and updates only its
first n rows (the PyTorch release). Under ``tf.distribute`` each replica holds its own δ of the
per-replica batch's shape (a sync-on-read variable). ``g_δ`` is the gradient through the range
clip: zero where x + δ left the pixel range (the release's clamp).

``delta_range="project"`` is the Free AT of Wong et al.'s release (locuslab/fast_adversarial,
CIFAR10/train_free.py) instead: δ[:n] is projected onto the box [low − x, high − x] (x + δ inside
the pixel range) before the forward pass and again after its step, so x' = x + δ[:n] needs no clip
and g_δ is never cut. Under "clip" a δ that took x + δ out of the range gets no gradient and stays
where it is: on MNIST's zero background a pixel whose δ once stepped to −ε is frozen there for
good, an absorbing state the projection does not have (there δ ∈ [0, ε] on a zero pixel). The
release projects after the step only, so a carried δ may leave the range on the first replay of a
new batch; tfadv projects before the forward as well, so every training input is a valid image.
The replays are
:attr:`AdversarialModel.replays` (the base's ``train_step`` runs m updates per batch), the
perturbation step is the base's :meth:`~AdversarialModel.carry_input_gradient` hook; the loss is
AdversarialModel's CE on x'. The paper divides the number of epochs by m; the recipe
:mod:`tfadv.recipes.free` holds the releases' settings in pixel levels.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.defenses.base import AdversarialExamples, AdversarialModel


#: How δ meets the pixel range: "clip" (x + δ clipped, the Shafahi et al. releases) or "project"
#: (δ projected so that x + δ stays inside, Wong et al.'s release).
DELTA_RANGES = ("clip", "project")


def check_delta_range(value) -> str:
    """``value`` if it is one of :data:`DELTA_RANGES`, else a ValueError naming them."""
    if value not in DELTA_RANGES:
        raise ValueError(f"delta_range must be one of {DELTA_RANGES}. Received: "
                         f"delta_range={value!r}.")
    return value


def rows_per_replica(batch_size: int) -> int:
    """The rows of δ on each replica of the current strategy: the largest per-replica slice of a
    global batch of ``batch_size``."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return -(-int(batch_size) // replicas)


class FreeAdversarialTraining(AdversarialModel):
    """Free adversarial training: m replays of each batch, the perturbation carried across them.

    Args (beyond AdversarialModel's; sizes in input units):
        eps: the L∞ radius of δ.
        replays: m, the replays of each mini-batch (>= 1).
        batch_size: the GLOBAL training batch; δ holds ``ceil(batch_size / replicas)`` rows per
            replica (build the model in the strategy's scope).
        step_size: the perturbation's step (default ``eps``, as released).
        pixel_range: the images' range, the clip of x + δ.
        delta_range: ``"clip"`` (the Shafahi et al. releases: x' = clip(x + δ), g_δ zero outside
            the range) or ``"project"`` (Wong et al.'s release: δ projected so x + δ stays in the
            range, g_δ never cut).
    """

    loss_description = "mean CE on x + delta, the delta carried across replays"
    input_gradient = True

    def __init__(self, network: keras.Model, *, eps: float, replays: int, batch_size: int,
                 step_size: Optional[float] = None, pixel_range="[0,1]", delta_range: str = "clip",
                 **kwargs):
        eps = checks.check_number(eps, "eps (Free AT's radius, input units)")
        step_size = eps if step_size is None else checks.check_number(
            step_size, "step_size (Free AT's perturbation step, input units)")
        replays = checks.check_int(replays, "replays (Free AT's m)", 1)
        batch_size = checks.check_int(batch_size, "batch_size (the global training batch)", 1)
        self.pixel_range = ranges_lib.get_range(pixel_range)
        self.delta_range = check_delta_range(delta_range)
        kwargs.setdefault("attack", attacks_lib.get("noop"))
        super().__init__(network, **kwargs)
        self.eps, self.step_size = float(eps), float(step_size)
        self.replays = int(replays)
        self.batch_size = int(batch_size)
        shape = [rows_per_replica(batch_size), *network.input_shape[1:]]
        self.perturbation = tf.Variable(
            tf.zeros(shape, tf.float32), trainable=False, name="free_perturbation",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def _radius(self):
        return self.eps * self.eps_scale()

    def _rows(self, x):
        """This replay's rows of δ (the first n) and the rest."""
        n, rows = tf.shape(x)[0], int(self.perturbation.shape[0])
        message = (f"a replica's batch is larger than the {rows} rows of Free AT's perturbation "
                   f"(built for batch_size={self.batch_size})")
        if x.shape[0] is not None and x.shape[0] > rows:
            raise ValueError(f"{message}. Received: a batch of {x.shape[0]}.")
        tf.debugging.assert_less_equal(n, rows, message=message)
        delta = tf.convert_to_tensor(self.perturbation)
        delta, rest = delta[:n], delta[n:]
        if self.delta_range == "project":
            delta = self._project(x, delta)
        return delta, rest

    def _project(self, x, delta):
        """δ onto [low − x, high − x]: x + δ inside the pixel range."""
        return tf.clip_by_value(delta, self.pixel_range.low - x, self.pixel_range.high - x)

    def make_adversarial(self, x, y) -> AdversarialExamples:
        """x' = clip_range(x + δ[:n]) with δ as the last replay left it (projected first under
        "project", where the clip then only absorbs float rounding)."""
        delta, _ = self._rows(x)
        x_adv = tf.clip_by_value(x + delta, self.pixel_range.low, self.pixel_range.high)
        return AdversarialExamples(tf.stop_gradient(x_adv))

    def carry_input_gradient(self, x, y, examples, gradient) -> None:
        """δ[:n] ← clip(δ[:n] + s·sign(g_δ), ±ε), g_δ the update's gradient through the clip
        ("clip"); under "project" g_δ uncut and δ[:n] projected onto the range's box after."""
        delta, rest = self._rows(x)
        grad = tf.cast(gradient, tf.float32)
        if self.delta_range == "clip":
            moved = x + delta
            inside = tf.logical_and(moved >= self.pixel_range.low,
                                    moved <= self.pixel_range.high)
            grad = tf.where(inside, grad, 0.0)
        radius = self._radius()
        delta = tf.clip_by_value(delta + self.step_size * self.eps_scale() * tf.sign(grad),
                                 -radius, radius)
        if self.delta_range == "project":
            delta = self._project(x, delta)
        self.perturbation.assign(tf.concat([delta, rest], axis=0))


def free(network, *, eps: float, replays: int, batch_size: int, step_size: Optional[float] = None,
         pixel_range="[0,1]", delta_range: str = "clip", eval_attack=None,
         weight_decay: float = 2e-4, **kwargs):
    """Builds a Free AT model (``tfadv.defenses.get("free", network, ...)``); sizes in input units.

    The CIFAR-10 release (m = 8, ε = step = 8 pixel levels, batch 128) is
    ``free(network, **tfadv.recipes.free.defense_kwargs())``. ``eval_attack`` defaults to PGD-10 at
    ε with steps of ε/4 from a uniform start.
    """
    rng = ranges_lib.get_range(pixel_range)
    if eval_attack is None:
        eval_attack = attacks_lib.IterativeAttack(
            eps=checks.check_number(eps, "eps (Free AT's radius, input units)"),
            step_size=eps / 4, num_steps=10, loss="ce", random_start="uniform",
            pixel_range=rng, name="pgd-10")
    return FreeAdversarialTraining(network, eps=eps, replays=replays, batch_size=batch_size,
                                   step_size=step_size, pixel_range=rng, delta_range=delta_range,
                                   eval_attack=eval_attack,
                                   weight_decay=weight_decay, **kwargs)
