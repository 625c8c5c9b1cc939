"""Dynamic adversarial training (Wang et al., ICML 2019, sec. 4.1, Algorithm 1).

PGD adversarial training in which the convergence quality of the training examples grows during
training: at epoch t (counted from 0) the FOSC criterion is

    c_t = max(c_max − t·c_max/T′, 0)                                   (sec. 4.1)

and within every batch's PGD each example stops moving once its FOSC (eq. 4, closed form;
:mod:`tfadv.attacks.fosc`) is ≤ c_t — Algorithm 1's control vector V, implemented as the attack core's
per-example ``stop_fn`` (the one PGD loop of tfadv; a frozen example is never moved again within
that batch's attack, and the loop ends once every example is frozen, Algorithm 1's ``ΣV > 0``). The
first step is always taken (V = 1 before it), as in Algorithm 1 and the release. After T′, c_t = 0
and the attack is plain PGD.

Paper defaults (sec. 5.1): c_max = 0.5, T′ = 40 of 50 epochs (MNIST) and 100 of 120 (CIFAR-10);
10-step PGD with step ε/4 from a uniform random start, ε = 0.3 / 8/255 (sizes are input units
here; the paper's are the recipes); SGD 0.01 momentum 0.9,
weight decay 1e-4, LR ÷10 at epochs 20/40 (MNIST) and 60/100 (CIFAR-10): the recipes ``fosc_mnist``
and ``fosc_cifar10`` of :mod:`tfadv.recipes.fosc` (shared with the Curriculum baseline).

Release facts reproduced behind options (``../shared/REFERENCE_NOTES.md``):

* ``fosc_reference="start"``: the release measures ⟨xᵏ − x⁰, g⟩ from the random-start point, not the
  natural image (the paper's definition, the default).
* ``release_loss_weighting=True``: from the second epoch on, the release trains with Keras
  ``sample_weight`` = each adversarial example's own CE (inference mode, no gradient through it),
  i.e. the loss mean_i(CE_i · stop_gradient(CE_i)); not in the paper, off by default.

Logged each epoch: ``c_t``; ``fosc`` (mean FOSC of the training adversarial examples, paper's
definition, from one extra inference-mode forward/backward per batch) and, through
``training_callbacks(logdir)``, their distribution as a TensorBoard histogram, ``fosc/epoch_*.npy``
and ``fosc.png`` (Figures 3 and 5). ``record_fosc=False`` skips that extra pass.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Optional

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import fosc as fosc_lib
from tfadv.callbacks import FoscLogger, FoscRecorder
from tfadv.defenses.base import AdversarialExamples, AdversarialModel
from tfadv.defenses.metrics import LatestValue


def fosc_threshold(epoch, c_max: float, t_prime: float):
    """c_t = max(c_max − t·c_max/T′, 0) (sec. 4.1), written c_max·max(1 − t/T′, 0) so that it is
    exactly 0 at t = T′ in float32. ``epoch`` may be a Python number or a tensor."""
    if isinstance(epoch, (tf.Tensor, tf.Variable)):
        t = tf.cast(epoch, tf.float32)
        return tf.constant(c_max, tf.float32) * tf.maximum(1.0 - t / tf.constant(t_prime, tf.float32),
                                                           0.0)
    return float(c_max) * max(1.0 - float(epoch) / float(t_prime), 0.0)


def estimate_c_max(network, x, y, *, eps: float, pixel_range="[0,1]", norm: str = "linf") -> float:
    """Sec. 4.1: "c_max can be estimated by the average FOSC value on a batch of weak adversarial
    examples such as FGSM" — the mean FOSC (paper's definition) of FGSM outputs on (x, y)."""
    fgsm = attacks_lib.get("fgsm", eps=eps, norm=norm, pixel_range=pixel_range)
    model_fn = attacks_lib.ModelFn(network, False)
    x = tf.convert_to_tensor(x, tf.float32)
    x_adv = fgsm(model_fn, x, y)
    values, _, _ = fosc_lib.fosc_and_loss(model_fn, x_adv, x, y, eps, norm=norm)
    return float(tf.reduce_mean(values))


def with_stop_fn(attack, stop_fn: Callable):
    """A shallow copy of an ``IterativeAttack`` that also freezes the examples ``stop_fn`` selects
    (OR-ed with the attack's own criterion, if any). The original attack is left unchanged."""
    if not isinstance(attack, attacks_lib.IterativeAttack):
        raise ValueError("This defense controls the attack core's per-example stop criterion and "
                         f"needs an IterativeAttack (pgd, fgsm, ...). Received: {attack!r}.")
    out = copy.copy(attack)
    previous = attack.stop_fn
    out.stop_fn = stop_fn if previous is None else (
        lambda state: tf.logical_or(previous(state), stop_fn(state)))
    return out


class _FoscLogging:
    """``training_callbacks`` of the defenses that record FOSC (Dynamic AT, the curriculum)."""

    def training_callbacks(self, logdir: Optional[str] = None) -> list:
        """The schedule callbacks (``required_callbacks``), plus the per-epoch FOSC logger
        (TensorBoard histogram, .npy, PNG) when the defense records FOSC (``record_fosc`` /
        ``fosc_recorder``) and a run directory is given."""
        out = super().training_callbacks(logdir)
        if self.record_fosc and logdir:
            out.append(FoscLogger(self.fosc_recorder, logdir))
        return out


class DynamicSchedule(keras.callbacks.Callback):
    """Sets the model's epoch counter (a tf.Variable read by the compiled attack) at the start of
    every epoch: c_t follows the epoch index Keras reports, ``initial_epoch`` included."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch_counter.assign(int(epoch))


class DynamicAdversarialTraining(_FoscLogging, AdversarialModel):
    """Algorithm 1: PGD training whose examples stop at FOSC ≤ c_t.

    Args (beyond AdversarialModel's):
        attack: the PGD attack (an ``IterativeAttack``); the model trains with a copy of it that
            carries the FOSC stop criterion. ``eval_attack`` defaults to the plain attack.
        c_max: maximum FOSC value (0.5 in the paper).
        t_prime: FOSC control epoch T′ (c_t = 0 from epoch T′ on).
        fosc_reference: ``natural`` (paper) or ``start`` (release: the random-start point as x⁰).
        release_loss_weighting: the release's per-example CE weighting of the loss (epochs ≥ 1).
        record_fosc: record the FOSC of every training example (logs ``fosc``; histograms and PNG
            through ``training_callbacks``).
        fosc_capacity: examples kept per epoch for the histograms.

    c_t follows ``epoch_counter``, which :class:`DynamicSchedule` sets at every epoch's start:
    ``fit()`` adds that callback unless one is passed (``required_callbacks``), so a plain
    ``model.fit(...)`` follows the schedule, ``initial_epoch`` included; a custom loop sets
    ``epoch_counter`` itself. ``train_step`` logs ``c_t`` and, with ``record_fosc``, ``fosc``.
    """

    @dataclasses.dataclass(frozen=True)
    class Examples(AdversarialExamples):
        """The examples and, when the FOSC pass ran (``record_fosc`` or
        ``release_loss_weighting``), each one's CE under the inference-mode network (no
        gradient): the release's loss weight."""

        inference_ce: Any = None

    def __init__(self, network: keras.Model, *, attack, c_max: float = 0.5, t_prime: float = 100,
                 fosc_reference: str = "natural", release_loss_weighting: bool = False,
                 record_fosc: bool = True, fosc_capacity: int = 65536,
                 eval_attack=None, **kwargs):
        if not isinstance(attack, attacks_lib.IterativeAttack):
            raise ValueError("Dynamic adversarial training needs an IterativeAttack (PGD). "
                             f"Received: {attack!r}.")
        if attack.norm not in fosc_lib.NORMS:
            raise ValueError(f"FOSC is defined for {fosc_lib.NORMS} balls. Received: "
                             f"norm={attack.norm!r}.")
        try:
            c_max_value, t_prime_value = float(c_max), float(t_prime)
        except (TypeError, ValueError):
            raise ValueError(f"c_max and t_prime must be numbers. Received: c_max={c_max!r}, "
                             f"t_prime={t_prime!r}.") from None
        if not math.isfinite(c_max_value) or c_max_value < 0:
            raise ValueError(f"c_max must be a finite number >= 0. Received: c_max={c_max!r}.")
        if not math.isfinite(t_prime_value) or t_prime_value <= 0:
            raise ValueError(f"t_prime (T', the FOSC control epoch) must be > 0. "
                             f"Received: t_prime={t_prime!r}.")
        fosc_lib.check_reference(fosc_reference)
        super().__init__(network, attack=attack,
                         eval_attack=eval_attack if eval_attack is not None else attack, **kwargs)
        self.c_max, self.t_prime = c_max_value, t_prime_value
        self.fosc_reference = fosc_reference
        self.release_loss_weighting = bool(release_loss_weighting)
        self.record_fosc = bool(record_fosc)
        self.plain_attack = attack
        self.attack = with_stop_fn(attack, self.fosc_stop)
        self.epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.fosc_recorder = FoscRecorder(fosc_capacity) if self.record_fosc else None
        self._fosc_mean = keras.metrics.Mean(name="fosc")
        self._c_t_log = LatestValue("c_t")

    @property
    def defense_metrics(self):
        return [self._c_t_log] + ([self._fosc_mean] if self.record_fosc else [])

    # ----------------------------------------------------------------------------- schedule
    def c_t(self):
        """The FOSC criterion of the current epoch (a float32 scalar tensor)."""
        return fosc_threshold(self.epoch_counter, self.c_max, self.t_prime)

    def fosc_stop(self, state):
        """Algorithm 1's control: freeze an example once its FOSC ≤ c_t (never before step 1)."""
        value = fosc_lib.fosc_of_state(state, reference=self.fosc_reference, norm=self.attack.norm)
        return tf.logical_and(state.step > 0, value <= self.c_t())

    def required_callbacks(self) -> list:
        return [DynamicSchedule()]

    # ----------------------------------------------------------------------------- steps
    def make_adversarial(self, x, y):
        """PGD stopped per example at FOSC <= c_t; with ``record_fosc`` or
        ``release_loss_weighting``, one inference-mode pass at the examples gives their FOSC
        (recorded) and CE (carried on the result)."""
        self._c_t_log.update_state(self.c_t())
        x_adv = super().make_adversarial(x, y).x_adv
        if not (self.record_fosc or self.release_loss_weighting):
            return self.Examples(x_adv)
        eps = self.attack.eps * self.eps_scale()
        values, ce, _ = self.fosc_and_loss(x_adv, x, y, eps)
        if self.record_fosc:
            self.fosc_recorder.record(values)
            self._fosc_mean.update_state(values)
        return self.Examples(x_adv, inference_ce=tf.stop_gradient(ce))

    def defense_loss(self, x, y, examples):
        """CE on the adversarial examples (eq. 1); with ``release_loss_weighting`` each example's CE
        is weighted by its own inference-mode CE (``examples.inference_ce``) from the second epoch
        on (the release)."""
        logits_adv = self.network(examples.x_adv, training=True)
        ce = losses_lib.ce(logits=logits_adv, labels=y)
        if not self.release_loss_weighting:
            return tf.reduce_mean(ce), logits_adv
        weight = getattr(examples, "inference_ce", None)
        if weight is None:
            raise ValueError("release_loss_weighting weights each example's CE by its "
                             "inference-mode CE, carried by make_adversarial's result. Received: "
                             f"{examples!r}.")
        weight = tf.where(self.epoch_counter > 0, weight, tf.ones_like(weight))
        return tf.reduce_mean(weight * ce), logits_adv


def paper_attack(attack=None, *, eps: Optional[float] = None, step_size: Optional[float] = None,
                 num_steps: int = 10, random_start: str = "uniform", norm: str = "linf",
                 pixel_range="[0,1]", defense: str = "dynamic"):
    """``attack``, or the PGD of the FOSC paper's setting for all its defenses (sec. 5.1) from the
    given parameters in input units: ``eps`` (required without ``attack``), ``step_size``
    defaulting to ε/4, 10 steps from a uniform random start (Dynamic and Curriculum; the paper's
    ε in pixel levels is the recipe :mod:`tfadv.recipes.fosc`). ``defense`` names the caller in
    errors."""
    rng = ranges_lib.get_range(pixel_range)
    if attack is not None:
        if eps is not None or step_size is not None:
            raise ValueError("Pass either attack=... or eps/step_size, not both. "
                             f"Received: attack={attack!r}, eps={eps!r}, step_size={step_size!r}.")
        return attack
    if eps is None:
        raise ValueError(f"{defense} needs attack= or eps= in input units; the paper's values are "
                         "tfadv.recipes.fosc.defense_kwargs(). Received: attack=None, eps=None.")
    return attacks_lib.get("pgd", eps=eps, step_size=eps / 4 if step_size is None else step_size,
                           num_steps=num_steps, random_start=random_start, norm=norm,
                           pixel_range=rng)


def dynamic(network, *, c_max: float = 0.5, t_prime: float = 100, attack=None,
            eps: Optional[float] = None, step_size: Optional[float] = None, num_steps: int = 10,
            random_start: str = "uniform", norm: str = "linf", pixel_range="[0,1]",
            eval_attack=None, weight_decay: float = 1e-4, attack_training: bool = False,
            track_clean: bool = True, fosc_reference: str = "natural",
            release_loss_weighting: bool = False, record_fosc: bool = True,
            fosc_capacity: int = 65536, **kwargs):
    """Builds a Dynamic AT model (``tfadv.defenses.get("dynamic", network, ...)``).
    Either pass ``attack=`` or the PGD parameters in input units: ``eps`` and ``step_size``
    (default ε/4), 10 steps from a uniform random start (sec. 5.1); the paper's CIFAR-10 ε is
    ``tfadv.recipes.fosc.defense_kwargs()``."""
    attack = paper_attack(attack, eps=eps, step_size=step_size, num_steps=num_steps,
                          random_start=random_start, norm=norm, pixel_range=pixel_range)
    return DynamicAdversarialTraining(
        network, attack=attack, c_max=c_max, t_prime=t_prime, fosc_reference=fosc_reference,
        release_loss_weighting=release_loss_weighting, record_fosc=record_fosc,
        fosc_capacity=fosc_capacity, eval_attack=eval_attack, weight_decay=weight_decay,
        attack_training=attack_training, track_clean=track_clean, **kwargs)
