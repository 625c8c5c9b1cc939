"""MART (Wang et al., ICLR 2020): misclassification-aware adversarial training.

The paper's final objective L^MART, as the authors' release (YisenWang/MART, ``mart.py``)
computes it:

    min_θ  mean_i [ BCE(p(x'_i), y_i) + β · KL(p(x_i) ‖ p(x'_i)) · (1 − p_{y_i}(x_i)) ]

    BCE(p(x'), y) = CE(p(x'), y) − log(1 − max_{k≠y} p_k(x'))      (boosted cross-entropy)

* inner maximisation: the network in **inference mode** (the release's ``model.eval()``), PGD on
  the **cross-entropy** from x + 0.001·N(0, I) (not clipped before the first step), K sign steps,
  projection to the ε-ball and the pixel range after each step: the library's single
  ``IterativeAttack`` with ``loss="ce"`` and ``random_start="gaussian"``.
* outer minimisation: the network in **training mode** on x and x', the per-example terms of
  :func:`tfadv.losses.mart` averaged over the batch, nothing detached (the release's
  ``loss_adv + beta * sum(kl · (1.0000001 − p_y)) / batch_size``).

Sizes are input units. The release's settings (ε 0.031, step 0.007, K 10, β 6, WRN-34-10) are the
recipe :mod:`tfadv.recipes.mart`.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.defenses import metrics as metrics_lib
from tfadv.defenses import trades as trades_lib
from tfadv.defenses.base import AdversarialModel

# The release's train_wideresnet.py: K = 10 PGD steps, beta = 6.0.
NUM_STEPS = 10
BETA = 6.0


def check_beta(beta) -> float:
    """β of L^MART (weight of the misclassification-aware KL): a finite number >= 0."""
    return checks.check_at_least(beta, "beta (MART's KL weight)")


def mart_loss(*, logits_clean, logits_adv, labels, beta: float):
    """L^MART on one batch: ``(loss, bce, kl)``, all batch means; ``kl`` is the weighted KL term
    before multiplying by β, so ``loss = bce + β·kl``."""
    bce, weighted_kl = losses_lib.mart(logits_clean=logits_clean, logits_adv=logits_adv,
                                       labels=labels)
    bce, kl = tf.reduce_mean(bce), tf.reduce_mean(weighted_kl)
    return bce + tf.cast(beta, bce.dtype) * kl, bce, kl


def mart_attack(*, eps: float, step_size: float, num_steps: int = NUM_STEPS, norm: str = "linf",
                pixel_range="[0,1]", random_start: str = "gaussian", seed: Optional[int] = None):
    """MART's inner maximisation in input units: ``num_steps`` projected steps of ``step_size``
    ascending the cross-entropy from x + 0.001·N(0, I) (the release's start)."""
    return attacks_lib.IterativeAttack(eps=eps, step_size=step_size, num_steps=num_steps,
                                       norm=norm, random_start=random_start, loss="ce",
                                       pixel_range=ranges_lib.get_range(pixel_range), seed=seed,
                                       name="mart_pgd")


class MartAdversarialTraining(AdversarialModel):
    """MART: boosted CE on x' plus β·KL(p(x) ‖ p(x'))·(1 − p_y(x)), training mode throughout.

    Args (beyond AdversarialModel's):
        beta: β of L^MART (the release: 6.0 for WRN-34-10), >= 0; 0 trains on the boosted CE only.

    ``train_step`` also logs ``bce_loss`` (the batch-mean boosted CE on x') and ``kl_loss`` (the
    batch-mean misclassification-weighted KL before multiplying by β); ``loss`` is
    ``bce_loss + β·kl_loss`` plus weight decay.
    """

    loss_description = "mean BCE(f(x'), y) + beta * mean KL(f(x) || f(x')) * (1 - p_y(x))"

    def __init__(self, network: keras.Model, *, attack, beta: float = BETA, **kwargs):
        beta = check_beta(beta)
        super().__init__(network, attack=attack, **kwargs)
        self.beta, self._parts = beta, metrics_lib.slice_weighted_means("bce_loss", "kl_loss")

    @property
    def defense_metrics(self):
        return list(self._parts.values())

    def defense_loss(self, x, y, examples):
        """L^MART in training mode on x and x' (the release calls the model on x, then x')."""
        logits_clean = self.network(x, training=True)  # x first, then x' (BN order)
        logits_adv = self.network(examples.x_adv, training=True)
        loss, bce_loss, kl_loss = mart_loss(logits_clean=logits_clean, logits_adv=logits_adv,
                                            labels=y, beta=self.beta)
        metrics_lib.update_slice_weighted(self._parts, y, bce_loss=bce_loss, kl_loss=kl_loss)
        return loss, logits_adv


def mart(network, *, beta: float = BETA, attack=None, eps: Optional[float] = None,
         step_size: Optional[float] = None, num_steps: int = NUM_STEPS, norm: str = "linf",
         random_start: str = "gaussian", pixel_range="[0,1]", eval_attack=None,
         weight_decay: float = 7e-4, seed: Optional[int] = None, **kwargs):
    """Builds a MART model (``tfadv.defenses.get("mart", network, ...)``): pass ``attack=`` or
    the PGD's ``eps`` and ``step_size`` in input units (the release's CIFAR-10 setting is
    ``mart(network, **tfadv.recipes.mart.defense_kwargs())``).

    Defaults as released: K = 10 CE steps from x + 0.001·N(0, I), β = 6, weight decay
    7e-4·Σ½‖W‖² (train_wideresnet.py's SGD ``weight_decay=7e-4``). ``eval_attack`` defaults to CE
    PGD with the training attack's ε, K and step from a uniform start.
    """
    beta = check_beta(beta)
    sizes = (eps, step_size)
    if (attack is None and None in sizes) or (attack is not None and sizes != (None, None)):
        raise ValueError("mart takes attack= or both eps= and step_size= in input units (the "
                         "release's values are tfadv.recipes.mart.defense_kwargs()), not both. "
                         f"Received: attack={attack!r}, eps={eps!r}, step_size={step_size!r}.")
    if attack is None:
        attack = mart_attack(eps=eps, step_size=step_size, num_steps=num_steps, norm=norm,
                             pixel_range=pixel_range, random_start=random_start, seed=seed)
    if eval_attack is None:
        eval_attack = trades_lib.default_eval_attack(attack)
    return MartAdversarialTraining(network, attack=attack, beta=beta, eval_attack=eval_attack,
                                   weight_decay=weight_decay, **kwargs)
