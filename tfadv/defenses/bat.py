"""Bilateral Adversarial Training (BAT; Wang & Zhang, sec. 4, eq. 10-24, appendix A/B).

min_θ max_{x'∈S_x, y'∈S_y} L(x', y'; θ) (eq. 10), split into two conditional sub-problems:

* the adversarial image x' (eq. 22-24): one (or n) projected sign steps from a random start (eq. 3);
  untargeted steps ascend CE(f(x'), y), targeted steps *descend* CE(f(x'), t) toward the most
  confusing class t = argmax_{k≠y} z_k (MC, eq. 24), the least likely class (LL, eq. 23) or a random
  class — the library's single ``IterativeAttack``;
* the adversarial label y' (eq. 11-21, appendix A/B): ``tfadv.labels.adversarial_labels`` (``la``),
  label smoothing (``ls``, eq. 15) or the one-hot label (``none``).

The network is then trained on (x', y') only with the soft-label cross-entropy. As in the authors'
release, BatchNorm is in inference mode for the clean logits, the target class, the labels and the
attack; one clean inference forward feeds both the MC target and the labels.

Sizes are input units. The paper's named configurations (Table 3, Table 5, appendix B; the ImageNet
paper's two-step MC attack), in pixel levels, are recipes: :mod:`tfadv.recipes.bat`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import labels as labels_lib
from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.defenses.base import AdversarialExamples, AdversarialModel

LABEL_ADVERSARIES = ("la", "ls", "none")


def bat_image_attack(*, eps: float, step_size: Optional[float] = None, num_steps: int = 1,
                     target: Optional[str] = "mc", random_start: bool = True, pixel_range="[-1,1]",
                     seed: Optional[int] = None):
    """BAT's image adversary in input units: ``num_steps`` sign steps of ``step_size`` (default eps)
    from a uniform random start in the eps-ball (eq. 3) or from x; targeted kinds descend the target's
    CE (eq. 24), ``target=None`` ascends the true class's CE (FGSM / PGD)."""
    rng = ranges_lib.get_range(pixel_range)
    label = ("r-" if random_start else "") + (target or ("fgsm" if num_steps == 1 else "pgd"))
    return attacks_lib.IterativeAttack(eps=eps, step_size=eps if step_size is None else step_size,
                           num_steps=num_steps, random_start="uniform" if random_start else "none",
                           target=target, pixel_range=rng, seed=seed, name=label)


class BilateralAdversarialTraining(AdversarialModel):
    """BAT: trains on (x', y') only, x' from ``attack`` and y' from the label adversary.

    Args (beyond AdversarialModel's):
        label_adversary: ``la`` (eq. 14/18 or 26/28), ``ls`` (eq. 15 with ``eps_y``), ``none``.
        beta, gamma, variant, top_k: of ``tfadv.labels.adversarial_labels`` (``la``).
        eps_y: label-smoothing budget (``ls``).

    ``train_step`` logs ``eps_y`` (mean label budget 1 - y'_c) and ``true_mass`` (mean y'_c);
    evaluation (``test_step``) is AdversarialModel's, on hard labels, without them.
    ``make_adversarial`` returns :class:`BilateralAdversarialTraining.Examples`: x' and y'.
    """

    @dataclasses.dataclass(frozen=True)
    class Examples(AdversarialExamples):
        """BAT's training pair: the adversarial images x' and their adversarial labels y' (B, n),
        both from one inference-mode clean forward, gradients stopped."""

        labels: Any = None

    loss_description = "mean CE(f(x'), y') on the adversarial images and labels"

    def __init__(self, network: keras.Model, *, attack, label_adversary: str = "la", beta: float = 9.0,
                 gamma: float = 0.01, eps_y: Optional[float] = None, top_k: Optional[int] = None,
                 variant: str = "main", **kwargs):
        super().__init__(network, attack=attack, **kwargs)
        if label_adversary not in LABEL_ADVERSARIES:
            raise ValueError(f"Unknown label_adversary. Expected one of {LABEL_ADVERSARIES}. "
                             f"Received: {label_adversary!r}.")
        if label_adversary == "ls" and eps_y is None:
            raise ValueError("label_adversary='ls' needs eps_y (Table 5 uses 0.5). Received: None.")
        if label_adversary != "ls" and eps_y is not None:
            raise ValueError(f"eps_y is the label-smoothing budget; it is only used with "
                             f"label_adversary='ls'. Received: eps_y={eps_y!r}, "
                             f"label_adversary={label_adversary!r}.")
        if label_adversary != "la" and top_k is not None:
            raise ValueError(f"top_k applies to label_adversary='la'. Received: top_k={top_k!r}, "
                             f"label_adversary={label_adversary!r}.")
        self.label_adversary = label_adversary
        self.beta, self.gamma, self.variant, self.top_k = beta, gamma, variant, top_k
        self.eps_y = eps_y
        # Validate the label parameters once, on a dummy batch (errors at construction, not in fit).
        self.soft_labels(tf.zeros([1, self.num_classes]), tf.zeros([1], tf.int32))
        self._bat_trackers = {"eps_y": keras.metrics.Mean(name="eps_y"),
                              "true_mass": keras.metrics.Mean(name="true_mass")}

    @property
    def defense_metrics(self):
        return list(self._bat_trackers.values())

    def soft_labels(self, logits_clean, y):
        """y' (B, n) from the clean logits (gradients stopped)."""
        if self.label_adversary == "la":
            return labels_lib.adversarial_labels(logits_clean, y, beta=self.beta, gamma=self.gamma,
                                                 variant=self.variant, top_k=self.top_k)
        if self.label_adversary == "ls":
            return labels_lib.label_smoothing(y, self.num_classes, self.eps_y)
        return tf.one_hot(tf.cast(y, tf.int32), self.num_classes, dtype=tf.float32)

    def adversarial_pair(self, x, y):
        """(x', y') from ONE inference-mode clean forward shared by the target and the labels."""
        x = tf.convert_to_tensor(x, tf.float32)
        logits_clean = tf.stop_gradient(self.logits(x))
        kwargs = {"eps_scale": self.eps_scale()} if self.eps_warmup_steps else {}
        x_adv = self.attack(self.model_fn(self.attack_training), x, y, logits_clean=logits_clean,
                            **kwargs)
        return tf.stop_gradient(x_adv), tf.stop_gradient(self.soft_labels(logits_clean, y))

    def make_adversarial(self, x, y):
        """The adversarial pair (x', y') of :meth:`adversarial_pair`."""
        x_adv, y_soft = self.adversarial_pair(x, y)
        return self.Examples(x_adv, labels=y_soft)

    def defense_loss(self, x, y, examples):
        """CE(f(x'), y') on the adversarial pair only (eq. 10), BN in training mode."""
        y_soft = examples.labels
        logits_adv = self.network(examples.x_adv, training=True)
        mass = labels_lib.true_class_mass(y_soft, y)
        self._bat_trackers["true_mass"].update_state(mass)
        self._bat_trackers["eps_y"].update_state(1.0 - mass)
        return tf.reduce_mean(losses_lib.ce(logits=logits_adv, labels=y_soft)), logits_adv


def bat(network, *, image_attack=None, attack=None, label_adversary: str = "la", beta: float = 9.0,
        gamma: float = 0.01, eps_y: Optional[float] = None, top_k: Optional[int] = None,
        variant: str = "main", pixel_range="[-1,1]", eval_attack=None, weight_decay: float = 2e-4,
        attack_training: bool = False, track_clean: bool = True, **kwargs):
    """Builds a BAT model (``tfadv.defenses.get("bat", network, ...)``).

    ``image_attack`` (alias ``attack``, in input units; e.g. :func:`bat_image_attack`) is required:
    the paper's models, R-MC-LA's one MC-targeted step of 8 pixel levels from a uniform random start
    among them, are ``bat(network, **tfadv.recipes.bat.defense_kwargs("R-MC-LA9", beta=11))``.
    ``pixel_range`` is validated only: the image attack carries the range it works in.
    ``eval_attack`` defaults to the paper's one-step evaluation: untargeted FGSM without random start
    at the training eps. Weight decay 2e-4 · Σ ½‖W‖² as released.
    """
    if image_attack is not None and attack is not None and image_attack is not attack:
        raise ValueError(f"Pass the image attack once (image_attack= or attack=). "
                         f"Received: image_attack={image_attack!r}, attack={attack!r}.")
    ranges_lib.get_range(pixel_range)
    image_attack = image_attack if image_attack is not None else attack
    if image_attack is None:
        raise ValueError("bat needs its image attack in input units: image_attack= (e.g. "
                         "bat_image_attack(eps=..., step_size=...)); the paper's models are "
                         "tfadv.recipes.bat.defense_kwargs(name). Received: image_attack=None.")
    if eval_attack is None and getattr(image_attack, "eps", None) is not None:
        eval_attack = attacks_lib.get("fgsm", eps=image_attack.eps, norm=image_attack.norm,
                                      pixel_range=image_attack.pixel_range)
    return BilateralAdversarialTraining(
        network, attack=image_attack, label_adversary=label_adversary, beta=beta, gamma=gamma,
        eps_y=eps_y, top_k=top_k, variant=variant, eval_attack=eval_attack,
        weight_decay=weight_decay, attack_training=attack_training, track_clean=track_clean,
        **kwargs)
