"""TRADES (Zhang et al., ICML 2019): the trade-off between robustness and accuracy.

Eq. (5) with β = 1/λ, as the authors' release (yaodongyu/TRADES, ``trades.py``) computes it:

    min_θ  mean_i [ CE(f(x_i), y_i) + β · max_{x'_i ∈ B(x_i, ε)} KL(f(x_i) ‖ f(x'_i)) ]

* inner maximisation (Algorithm 1, steps 5-7): the network in **inference mode**,
  x' = x + 0.001·N(0,I) (not clipped before the first step), K sign steps of η₁ ascending the
  **summed** KL(f(x) ‖ f(x')) with the clean prediction fixed, projection to the ε-ball and the
  pixel range after every step (L2: normalised-gradient steps of 2ε/K, the release's
  ``distance='l_2'``). This is the library's single ``IterativeAttack`` with ``loss="kl"`` and
  ``random_start="gaussian"``; the attack computes the clean logits once, in inference mode.
* outer minimisation (Algorithm 1, step 9): the network in **training mode**, CE on the clean batch
  plus β times the batch-mean KL (the release's ``KLDivLoss(sum) / batch_size``), gradients flowing
  through **both** f(x) and f(x') (the clean prediction is not detached).

Sizes are input units. The presets (sec. 5.3, Table 5; the release's scripts) are recipes:
:mod:`tfadv.recipes.trades` (``trades_<dataset>[_beta1]`` with their β).
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.defenses.awp import AdversarialWeightPerturbation
from tfadv.defenses.base import AdversarialModel

# Algorithm 1 / sec. 5.3: K = 10 steps (the sizes, in pixel levels, are tfadv.recipes.trades').
CIFAR_NUM_STEPS = 10


def check_beta(beta) -> float:
    """β = 1/λ of eq. (5): a finite number >= 0 (0 is natural training on the clean batch)."""
    return checks.check_at_least(beta, "beta (1/lambda of TRADES eq. 5)")


def trades_loss(*, logits_clean, logits_adv, labels, beta: float):
    """Eq. (5)'s empirical objective on one batch: ``(loss, ce, kl)``, all batch means.

    ``loss = mean CE(f(x), y) + β · mean KL(softmax f(x) ‖ softmax f(x'))`` (Algorithm 1, step 9).
    The KL's batch mean is the release's ``KLDivLoss(size_average=False)(log q, p) / batch_size``.
    Nothing is detached: gradients reach the weights through both sets of logits.
    """
    ce = tf.reduce_mean(losses_lib.ce(logits=logits_clean, labels=labels))
    kl = tf.reduce_mean(losses_lib.trades_kl(logits_clean=logits_clean, logits_adv=logits_adv))
    return ce + tf.cast(beta, ce.dtype) * kl, ce, kl


def trades_attack(*, eps: float, step_size: Optional[float] = None,
                  num_steps: int = CIFAR_NUM_STEPS, norm: str = "linf", pixel_range="[0,1]",
                  random_start: str = "gaussian", seed: Optional[int] = None):
    """TRADES' inner maximisation (Algorithm 1, steps 5-7) in input units: ``num_steps`` projected
    steps ascending Σ_i KL(f(x_i) ‖ f(x'_i)) from x + 0.001·N(0, I).

    ``step_size`` defaults to 2ε/K for ``norm="l2"`` (the release's
    ``lr=epsilon / perturb_steps * 2``); Linf needs it (sec. 5.3's 0.007 of [0,1] is the recipe
    :mod:`tfadv.recipes.trades`).
    """
    rng = ranges_lib.get_range(pixel_range)
    if step_size is None:
        if norm != "l2":
            raise ValueError("TRADES' Linf attack needs step_size= in input units; the paper's "
                             "values are tfadv.recipes.trades.defense_kwargs(). Received: "
                             f"step_size=None, norm={norm!r}.")
        step_size = 2.0 * eps / max(int(num_steps), 1)
    return attacks_lib.IterativeAttack(eps=eps, step_size=step_size, num_steps=num_steps, norm=norm,
                                       random_start=random_start, loss="kl", pixel_range=rng,
                                       seed=seed, name="trades_kl")


def default_eval_attack(attack):
    """Validation attack for ``attack``: PGD on the cross-entropy (what sec. 5 reports) with the
    same ε, K, step and norm, from a uniform start; non-PGD attacks are used as they are."""
    if not isinstance(attack, attacks_lib.IterativeAttack):
        return attack
    return attacks_lib.IterativeAttack(eps=attack.eps, step_size=attack.step_size,
                                       num_steps=attack.num_steps, norm=attack.norm, loss="ce",
                                       random_start="uniform", pixel_range=attack.pixel_range,
                                       name=f"pgd-{attack.num_steps}")


class TradesAdversarialTraining(AdversarialWeightPerturbation, AdversarialModel):
    """TRADES: CE on the clean batch plus β·KL(f(x) ‖ f(x')) (eq. 5), training mode throughout.

    Args (beyond AdversarialModel's):
        beta: β = 1/λ of eq. (5) (Table 5: 1 or 6), >= 0.
        awp_gamma, awp_warmup_epochs: AWP (:mod:`tfadv.defenses.awp`; TRADES-AWP: γ 0.005 after
            10 epochs), off by default.

    ``train_step`` also logs ``natural_loss`` (the CE term on clean images, training mode) and
    ``kl_loss`` (the batch-mean KL term before multiplying by β). ``adv_loss``/``adv_acc`` are CE
    and accuracy on the attack's x' (training mode) and ``loss`` is the minimised objective plus
    weight decay, as for every defense; evaluation (``test_step``) is AdversarialModel's.
    """

    loss_description = "mean CE(f(x), y) + beta * mean KL(f(x) || f(x'))"

    def __init__(self, network: keras.Model, *, attack, beta: float = 6.0, **kwargs):
        beta = check_beta(beta)
        super().__init__(network, attack=attack, **kwargs)
        self.beta = beta
        self._trades_trackers = {"natural_loss": keras.metrics.Mean(name="natural_loss"),
                                 "kl_loss": keras.metrics.Mean(name="kl_loss")}

    @property
    def defense_metrics(self):
        return list(self._trades_trackers.values())

    def _objective(self, x, y, examples):
        logits_clean = self.network(x, training=True)
        logits_adv = self.network(examples.x_adv, training=True)
        return trades_loss(logits_clean=logits_clean, logits_adv=logits_adv, labels=y,
                           beta=self.beta), logits_adv

    def awp_loss(self, x, y, examples):
        """TRADES-AWP's proxy objective: eq. (5)'s loss at the current weights (no logs)."""
        return self._objective(x, y, examples)[0][0]

    def defense_loss(self, x, y, examples):
        """Algorithm 1, step 9: mean CE(f(x), y) + β · mean KL(f(x) ‖ f(x')) in training mode, the
        clean logits not detached (the release calls the model on x, then x', in train mode)."""
        (loss, ce, kl), logits_adv = self._objective(x, y, examples)
        # Weighted by the slice size, so the epoch value is the global-batch mean under a strategy
        # (replica slices may be unequal; an empty slice adds nothing instead of its NaN mean).
        n = tf.cast(tf.shape(y)[0], tf.float32)
        for name, value in (("natural_loss", ce), ("kl_loss", kl)):
            self._trades_trackers[name].update_state(tf.where(n > 0, value, 0.0), sample_weight=n)
        return loss, logits_adv


def trades(network, *, beta: float = 6.0, attack=None, eps: Optional[float] = None,
           step_size: Optional[float] = None, num_steps: int = CIFAR_NUM_STEPS, norm: str = "linf",
           random_start: str = "gaussian", pixel_range="[0,1]", eval_attack=None,
           weight_decay: float = 2e-4, attack_training: bool = False, track_clean: bool = True,
           seed: Optional[int] = None, **kwargs):
    """Builds a TRADES model (``tfadv.defenses.get("trades", network, ...)``).
    Either pass ``attack=`` or the attack's parameters (input units).

    Sizes are input units: without ``attack``, ``eps`` and (Linf) ``step_size`` are required; the
    CIFAR-10 setting of sec. 5.3 (ε = 8 pixel levels, η₁ = 0.007 of [0,1], K = 10, Gaussian start)
    is ``trades(network, **tfadv.recipes.trades.defense_kwargs())``. The L2 variant's step defaults
    to 2ε/K (the release). Defaults: K = 10, Gaussian start, β = 6 (Table 5) and weight decay
    2e-4·Σ½‖W‖² (the release's SGD ``weight_decay=2e-4``). ``eval_attack`` defaults to CE PGD with
    the training attack's ε, K and step from a uniform start.
    """
    beta = check_beta(beta)
    if attack is None:
        rng = ranges_lib.get_range(pixel_range)
        if eps is None:
            if norm == "l2":
                raise ValueError("TRADES' L2 variant has no default radius (the paper's "
                                 "experiments are Linf); pass eps= in input units, e.g. 0.5 for "
                                 "CIFAR in [0,1]. Received: eps=None, norm='l2'.")
            raise ValueError("trades needs attack= or eps= and step_size= in input units; the "
                             "paper's values are tfadv.recipes.trades.defense_kwargs(). Received: "
                             f"attack=None, eps=None, step_size={step_size!r}.")
        attack = trades_attack(eps=eps, step_size=step_size, num_steps=num_steps, norm=norm,
                               pixel_range=rng, random_start=random_start, seed=seed)
    elif eps is not None or step_size is not None:
        raise ValueError("Pass either attack=... or eps/step_size, not both. "
                         f"Received: attack={attack!r}, eps={eps!r}, step_size={step_size!r}.")
    if eval_attack is None:
        eval_attack = default_eval_attack(attack)
    return TradesAdversarialTraining(network, attack=attack, beta=beta, eval_attack=eval_attack,
                                     weight_decay=weight_decay, attack_training=attack_training,
                                     track_clean=track_clean, **kwargs)
