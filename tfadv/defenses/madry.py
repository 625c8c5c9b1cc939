"""Madry et al. PGD adversarial training (BAT sec. 3.1, eq. 1-4).

min_θ E[max_{x'∈S_x} CE(f(x'), y)], the inner maximisation approximated by PGD from a uniform random
start. Sizes are input units; the released CIFAR code's 7 steps of 2 pixel levels within 8 are the
recipe :mod:`tfadv.recipes.madry`. Defaults: weight decay 2e-4 · Σ ½‖W‖², training on adversarial
examples only. The release generates the
examples with the network in training mode; tfadv defaults to inference mode (``attack_training``
restores the release's behaviour; see BUILD_NOTES.md).
"""

from __future__ import annotations

from typing import Optional

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib
from tfadv.defenses.awp import AdversarialWeightPerturbation
from tfadv.defenses.base import AdversarialModel


class MadryAdversarialTraining(AdversarialWeightPerturbation, AdversarialModel):
    """PGD adversarial training; the loss is AdversarialModel's default (CE on x_adv only).
    ``awp_gamma``/``awp_warmup_epochs`` add AWP (:mod:`tfadv.defenses.awp`; AT-AWP: γ 0.01)."""

    def awp_loss(self, x, y, examples):
        """AT-AWP's proxy objective: the same CE on x_adv, training mode."""
        return self.defense_loss(x, y, examples)[0]


def madry(network, *, attack=None, eps: Optional[float] = None, step_size: Optional[float] = None,
          num_steps: int = 7, random_start: str = "uniform", norm: str = "linf",
          pixel_range="[0,1]", eval_attack=None, weight_decay: float = 2e-4,
          attack_training: bool = False, track_clean: bool = True, **kwargs):
    """Builds a Madry model. Either pass ``attack=`` or the PGD's ``eps`` and ``step_size`` in
    input units of ``pixel_range`` (the released CIFAR configuration, 8 and 2 pixel levels, is
    ``madry(network, **tfadv.recipes.madry.defense_kwargs(pixel_range))``). ``awp_gamma`` and
    ``awp_warmup_epochs`` (in ``kwargs``) turn on AWP (:mod:`tfadv.defenses.awp`).
    """
    rng = ranges_lib.get_range(pixel_range)
    if attack is None:
        if eps is None or step_size is None:
            raise ValueError("madry needs attack= or eps= and step_size= in input units; the "
                             "paper's values are tfadv.recipes.madry.defense_kwargs(). Received: "
                             f"attack=None, eps={eps!r}, step_size={step_size!r}.")
        attack = attacks_lib.get("pgd", eps=eps, step_size=step_size, num_steps=num_steps,
                                 random_start=random_start, norm=norm, pixel_range=rng)
    elif eps is not None or step_size is not None:
        raise ValueError("Pass either attack=... or eps/step_size, not both. "
                         f"Received: attack={attack!r}, eps={eps!r}, step_size={step_size!r}.")
    return MadryAdversarialTraining(network, attack=attack, eval_attack=eval_attack,
                                    weight_decay=weight_decay, attack_training=attack_training,
                                    track_clean=track_clean, **kwargs)
