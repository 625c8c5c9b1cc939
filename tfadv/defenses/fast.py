"""Fast AT (Wong, Rice & Kolter, ICLR 2020, "Fast is better than free"): FGSM from a random start.

As the authors' release (locuslab/fast_adversarial, ``CIFAR10/train_fgsm.py``) computes it:

    δ₀ ~ U(−ε, ε)ⁿ, x₀ = clip_range(x + δ₀)
    x' = clip_range(x + clip(x₀ − x + α·sign(∇ₓ CE(f(x₀), y)), −ε, ε)),   α = 1.25·ε
    min_θ mean CE(f(x'), y)

The attack is the library's single ``IterativeAttack`` with one step of α from a uniform start
(its start is clipped to the pixel range, its step projected to the ε-ball, then clipped to the
range: the release's order); the loss is AdversarialModel's (CE on x'). The release's cyclic
learning rate is the run's optimizer (``tfadv.optimizers.CyclicLR``, ``--lr_schedule=cyclic``), and
its early stop against catastrophic overfitting the callback
:class:`tfadv.callbacks.CatastrophicOverfittingGuard`, listed in ``required_callbacks`` when a guard
batch is given. Sizes are input units; the release's settings are :mod:`tfadv.recipes.fast`.
"""

from __future__ import annotations

from typing import Optional

from tfadv import attacks as attacks_lib
from tfadv import callbacks as callbacks_lib
from tfadv import ranges as ranges_lib
from tfadv.defenses.base import AdversarialModel

#: α / ε of the release (10/255 at 8/255 on CIFAR-10, 0.375 at 0.3 on MNIST).
ALPHA_RATIO = 1.25
#: The release's guard: PGD-5, step 2/255 at ε = 8/255 (ε/4), and a tolerated fall of 0.2.
GUARD_STEPS = 5
GUARD_STEP_RATIO = 0.25
GUARD_DROP = 0.2


#: FGSM-RS's starts: clipped to the pixel range before the gradient (the CIFAR-10 release) or not
#: (the MNIST release).
STARTS = ("uniform", "uniform_unclipped")


def fgsm_rs_attack(*, eps: float, alpha: Optional[float] = None, pixel_range="[0,1]",
                   seed: Optional[int] = None, random_start: str = "uniform"):
    """FGSM-RS in input units: one signed step of ``alpha`` (default 1.25·ε) on the CE from a
    uniform start in the ε-ball (``uniform``: clipped to the pixel range first, as the CIFAR-10
    release; ``uniform_unclipped``: as the MNIST release), projected to the ball and the range."""
    if random_start not in STARTS:
        raise ValueError(f"FGSM-RS starts uniformly in the eps-ball: random_start must be one of "
                         f"{STARTS}. Received: {random_start!r}.")
    alpha = ALPHA_RATIO * eps if alpha is None else alpha
    return attacks_lib.IterativeAttack(eps=eps, step_size=alpha, num_steps=1, loss="ce",
                                       random_start=random_start,
                                       pixel_range=ranges_lib.get_range(pixel_range), seed=seed,
                                       name="fgsm_rs")


def release_guard_attack(attack):
    """The release's guard PGD for the training attack ``attack``: 5 CE steps of ε/4 from a
    uniform start, the same ε and range."""
    return attacks_lib.IterativeAttack(eps=attack.eps, step_size=GUARD_STEP_RATIO * attack.eps,
                                       num_steps=GUARD_STEPS, loss="ce", random_start="uniform",
                                       pixel_range=attack.pixel_range, name="guard_pgd")


class FastAdversarialTraining(AdversarialModel):
    """FGSM-RS adversarial training: CE on x' (AdversarialModel's loss), with the catastrophic-
    overfitting guard when ``guard_batch`` is given.

    Args (beyond AdversarialModel's):
        guard_batch: ``(images, labels)``, the fixed training mini-batch of the guard, or None.
        guard_attack: the PGD it measures (default :func:`release_guard_attack` of ``attack``).
        guard_drop: the fall of its accuracy that stops training (0.2).
        guard_reference: the fall from the ``previous`` check (the release's) or the ``best``.
    """

    def __init__(self, network, *, attack, guard_batch=None, guard_attack=None,
                 guard_drop: float = GUARD_DROP, guard_reference: str = "previous", **kwargs):
        super().__init__(network, attack=attack, **kwargs)
        self._guard = None
        if guard_batch is not None:
            measure = guard_attack if guard_attack is not None else release_guard_attack(attack)
            self._guard = callbacks_lib.CatastrophicOverfittingGuard(
                guard_batch, measure, drop=guard_drop, reference=guard_reference)

    @property
    def guard(self):
        """The :class:`~tfadv.callbacks.CatastrophicOverfittingGuard` of this model, or None."""
        return self._guard

    def required_callbacks(self) -> list:
        return [self._guard] if self._guard is not None else []


def fast(network, *, attack=None, eps: Optional[float] = None, alpha: Optional[float] = None,
         pixel_range="[0,1]", eval_attack=None, weight_decay: float = 5e-4, guard_batch=None,
         guard_attack=None, guard_drop: float = GUARD_DROP, guard_reference: str = "previous",
         seed: Optional[int] = None, **kwargs):
    """Builds a Fast AT model (``tfadv.defenses.get("fast", network, ...)``): pass ``attack=`` or
    ``eps`` (and optionally ``alpha``, default 1.25·ε) in input units. The release's CIFAR-10
    setting is ``fast(network, **tfadv.recipes.fast.defense_kwargs())``.

    ``weight_decay`` defaults to the release's 5e-4 (on kernels only, see docs/deviations.md);
    ``eval_attack`` to PGD-10 with step ε/4 from a uniform start. ``guard_batch`` turns the
    catastrophic-overfitting guard on.
    """
    if attack is None:
        if eps is None:
            raise ValueError("fast needs attack= or eps= in input units; the release's values are "
                             f"tfadv.recipes.fast.defense_kwargs(). Received: eps=None, "
                             f"alpha={alpha!r}.")
        attack = fgsm_rs_attack(eps=eps, alpha=alpha, pixel_range=pixel_range, seed=seed)
    elif eps is not None or alpha is not None:
        raise ValueError("fast takes attack= or eps/alpha, not both. Received: "
                         f"attack={attack!r}, eps={eps!r}, alpha={alpha!r}.")
    if eval_attack is None:
        eval_attack = attacks_lib.IterativeAttack(
            eps=attack.eps, step_size=GUARD_STEP_RATIO * attack.eps, num_steps=10, loss="ce",
            random_start="uniform", pixel_range=attack.pixel_range, name="pgd-10")
    return FastAdversarialTraining(network, attack=attack, eval_attack=eval_attack,
                                   weight_decay=weight_decay, guard_batch=guard_batch,
                                   guard_attack=guard_attack, guard_drop=guard_drop,
                                   guard_reference=guard_reference, **kwargs)
