"""Natural (standard) training through the same AdversarialModel path: the attack is a NoOpAttack.

The baseline every robustness table compares against, and the clean pre-training that L2L-DA (and
our MNIST recipe) start adversarial training from.
"""

from __future__ import annotations

from tfadv import attacks as attacks_lib
from tfadv.defenses.base import AdversarialExamples, AdversarialModel


class NaturalTraining(AdversarialModel):
    """CE on clean images; ``make_adversarial`` returns x unchanged (no attack cost)."""

    loss_description = "mean CE on the clean images"

    def make_adversarial(self, x, y):
        return AdversarialExamples(x)


def natural(network, *, attack=None, eval_attack=None, weight_decay: float = 0.0,
            attack_training: bool = False, track_clean: bool = False, **kwargs):
    """Builds a naturally trained model; ``eval_attack`` still measures robustness on validation.

    ``attack`` must be None or a NoOpAttack; train-time clean metrics equal the "adv" ones, so
    ``track_clean`` defaults to False.
    """
    if attack is not None and not isinstance(attack, attacks_lib.NoOpAttack):
        # experiment.train passes its PGD configuration to every defense; natural training
        # deliberately ignores it but keeps it as the default validation attack.
        eval_attack = eval_attack if eval_attack is not None else attack
    return NaturalTraining(network, attack=attacks_lib.get("noop"), eval_attack=eval_attack,
                           weight_decay=weight_decay, track_clean=track_clean, **kwargs)
