"""Curriculum adversarial training (Cai, Liu & Song, IJCAI 2018; the FOSC paper's *Curriculum*
baseline, Wang et al. 2019 sec. 4.3 and 5).

The attack strength is the number k of PGD steps. Training starts at k = 0 (clean images) and, in
"lessons", k grows by one whenever the validation accuracy under PGD-k has not improved for
``patience`` epochs (Cai et al.: 10), up to K; at each increase the weights of the lesson's best
epoch are restored (Cai et al.'s basic curriculum; ``restore_best``). With *batch mixing* (Cai et
al.'s remedy for forgetting; default) every batch is split into k + 1 equal parts attacked with
0, 1, …, k steps (the last part takes the remainder), as the authors' release does.

k is a tf.Variable used as the attack core's loop bound (``IterativeAttack(num_steps=K)`` called with
``num_steps=k``), so a compiled ``train_step`` follows it without retracing; batch mixing is the
core's per-example stop criterion (part j stops after j steps). Strength 0 is the clean image (no
random start). The validation attack (``eval_attack``) is PGD-k with the same variable: the metric
``val_adv_acc`` that :class:`CurriculumSchedule` watches. The current k is logged as ``k``.

In the FOSC paper every defense uses the same 10-step PGD of step ε/4 with random start (sec. 5.1),
so K = 10 with a fixed step; the release of Cai et al. instead draws a step size per call
(``2ε/k · U(1, 10/k)``) and validates on quantized inputs — neither is reproduced.
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv.attacks import checks
from tfadv.attacks import fosc as fosc_lib
from tfadv.callbacks import FoscRecorder
from tfadv.defenses import dynamic as dynamic_lib
from tfadv.defenses.base import AdversarialExamples, AdversarialModel
from tfadv.defenses.metrics import LatestValue
from tfadv.defenses.dynamic import _FoscLogging, with_stop_fn


def mixing_steps(batch_size, k):
    """Per-example step counts of batch mixing: parts of ``batch_size // (k+1)`` examples get
    0, 1, …, k−1 steps and the last part (with the remainder) k steps. A batch smaller than k + 1
    gives 0, 1, 2, … (the release skips such batches). Works on tensors and Python ints."""
    k = tf.cast(k, tf.int32)
    batch_size = tf.cast(batch_size, tf.int32)
    part = tf.maximum(batch_size // (k + 1), 1)
    return tf.minimum(tf.range(batch_size) // part, k)


class StepsOverride(attacks_lib.Attack):
    """An ``IterativeAttack`` run with ``num_steps`` read from a variable at every call; 0 steps is
    the clean image (no random start). The curriculum's validation attack PGD-k."""

    def __init__(self, attack, steps: tf.Variable):
        if not isinstance(attack, attacks_lib.IterativeAttack):
            raise ValueError(f"StepsOverride needs an IterativeAttack. Received: {attack!r}.")
        self.attack = attack
        self.steps = steps
        self.name = f"{attack.name}-k"
        self.pixel_range = attack.pixel_range
        self.eps = attack.eps
        self.norm = attack.norm

    def __call__(self, model_fn, x, y, **kwargs):
        x = tf.convert_to_tensor(x, tf.float32)
        x_adv = self.attack(model_fn, x, y, num_steps=self.steps, **kwargs)
        return tf.where(self.steps > 0, x_adv, x)

    def model_calls_per_example(self) -> int:
        return self.attack.model_calls_per_example()

    def get_config(self) -> dict:
        config = dict(self.attack.get_config())
        config["num_steps"] = f"k (<= {self.attack.num_steps})"
        return config


class CurriculumSchedule(keras.callbacks.Callback):
    """Cai et al.'s lesson logic: after each epoch, read ``monitor`` (accuracy under PGD-k on the
    validation data); when it has not improved for ``patience`` epochs and k < K, restore the best
    weights of the lesson (``restore_best``) and set k ← k + 1. The state (best value, its epoch and
    weights) belongs to one ``fit()`` call; k itself is the model's variable."""

    def __init__(self, patience: Optional[int] = None, monitor: Optional[str] = None,
                 restore_best: Optional[bool] = None):
        super().__init__()
        self._patience, self._monitor, self._restore = patience, monitor, restore_best
        self.increases = []  # epochs at whose end k was increased

    def _options(self):
        m = self.model
        return (m.patience if self._patience is None else int(self._patience),
                m.monitor if self._monitor is None else self._monitor,
                m.restore_best if self._restore is None else bool(self._restore))

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.best_weights = -np.inf, None, None

    def on_epoch_end(self, epoch, logs=None):
        patience, monitor, restore = self._options()
        logs = logs if logs is not None else {}
        if monitor not in logs:
            raise ValueError(f"Curriculum training advances k from '{monitor}' (accuracy under "
                             "PGD-k on validation data): pass validation_data to fit() (scripts: "
                             f"--val_limit > 0). Received logs: {sorted(logs)}.")
        value = float(logs[monitor])
        if self.best_epoch is None:
            self.best_epoch = epoch - 1  # the lesson starts now
        k = int(self.model.k.numpy())
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            if restore:
                self.best_weights = self.model.network.get_weights()
        elif epoch - self.best_epoch >= patience and k < self.model.max_k:
            if restore and self.best_weights is not None:
                self.model.network.set_weights(self.best_weights)
            self.model.k.assign(k + 1)
            self.increases.append(int(epoch))
            self.best, self.best_epoch, self.best_weights = -np.inf, epoch, None


class CurriculumAdversarialTraining(_FoscLogging, AdversarialModel):
    """Curriculum adversarial training with a variable PGD step count k ∈ [0, K].

    Args (beyond AdversarialModel's):
        attack: the PGD-K attack (an ``IterativeAttack``; K = its ``num_steps``).
        patience: epochs without improvement of ``monitor`` before k grows (Cai et al.: 10).
        batch_mixing: split every batch over strengths 0..k (Cai et al. sec. 4; default True).
        restore_best: restore the lesson's best weights when k grows (Cai et al.).
        initial_k: k at construction (0: start from clean training).
        monitor: the validation log that measures PGD-k accuracy.
        record_fosc: record the FOSC of the training examples (FOSC paper Figure 5b).

    k grows in :class:`CurriculumSchedule`, which ``fit()`` adds unless one is passed
    (``required_callbacks``). ``train_step`` logs ``k`` and, with ``record_fosc``, ``fosc``.
    """

    def __init__(self, network: keras.Model, *, attack, patience: int = 10,
                 batch_mixing: bool = True, restore_best: bool = True, initial_k: int = 0,
                 monitor: str = "val_adv_acc", eval_attack=None, record_fosc: bool = False,
                 fosc_capacity: int = 65536, **kwargs):
        if not isinstance(attack, attacks_lib.IterativeAttack):
            raise ValueError("Curriculum training varies the steps of an IterativeAttack (PGD). "
                             f"Received: {attack!r}.")
        if isinstance(patience, bool) or int(patience) != patience or patience < 1:
            raise ValueError(f"patience must be an integer >= 1 (epochs). Received: {patience!r}.")
        if isinstance(initial_k, bool) or int(initial_k) != initial_k or \
                not 0 <= initial_k <= attack.num_steps:
            raise ValueError(f"initial_k must be an integer in [0, K={attack.num_steps}]. "
                             f"Received: {initial_k!r}.")
        if attack.num_steps < 1:
            raise ValueError(f"The curriculum needs K >= 1 PGD steps. Received: "
                             f"num_steps={attack.num_steps!r}.")
        if record_fosc and attack.norm not in fosc_lib.NORMS:
            raise ValueError(f"FOSC is defined for {fosc_lib.NORMS} balls. Received: "
                             f"norm={attack.norm!r}.")
        k = tf.Variable(int(initial_k), dtype=tf.int32, trainable=False, name="curriculum_k")
        if eval_attack is None:
            eval_attack = StepsOverride(attack, k)
        super().__init__(network, attack=attack, eval_attack=eval_attack, **kwargs)
        self.k = k
        self.max_k = int(attack.num_steps)
        self.patience = int(patience)
        self.batch_mixing = bool(batch_mixing)
        self.restore_best = bool(restore_best)
        self.monitor = monitor
        self.plain_attack = attack
        if self.batch_mixing:
            self.attack = with_stop_fn(attack, self.mixing_stop)
        self.record_fosc = bool(record_fosc)
        self.fosc_recorder = FoscRecorder(fosc_capacity) if self.record_fosc else None
        self._fosc_mean = keras.metrics.Mean(name="fosc")
        self._k_log = LatestValue("k", dtype=self.k.dtype.name)

    @property
    def defense_metrics(self):
        return [self._k_log] + ([self._fosc_mean] if self.record_fosc else [])

    def example_steps(self, batch_size):
        """Steps each example of a batch gets at the current k (all k without batch mixing)."""
        if self.batch_mixing:
            return mixing_steps(batch_size, self.k)
        return tf.fill([tf.cast(batch_size, tf.int32)], tf.cast(self.k, tf.int32))

    def mixing_stop(self, state):
        """Batch mixing as a per-example stop criterion: the part with j steps stops at step j."""
        return state.step >= self.example_steps(tf.shape(state.labels)[0])

    def required_callbacks(self) -> list:
        return [CurriculumSchedule()]

    def make_adversarial(self, x, y):
        """PGD-k_i per example (k_i = k, or the batch-mixing part's strength); k_i = 0 is clean."""
        x = tf.convert_to_tensor(x, tf.float32)
        self._k_log.update_state(self.k)
        kwargs = {"eps_scale": self.eps_scale()} if self.eps_warmup_steps else {}
        x_adv = self.attack(self.model_fn(self.attack_training), x, y, num_steps=self.k, **kwargs)
        steps = self.example_steps(tf.shape(x)[0])
        x_adv = tf.stop_gradient(tf.where(checks.expand_to(steps > 0, x), x_adv, x))
        if self.record_fosc:
            eps = self.attack.eps * self.eps_scale()
            values, _, _ = self.fosc_and_loss(x_adv, x, y, eps)
            self.fosc_recorder.record(values)
            self._fosc_mean.update_state(values)
        return AdversarialExamples(x_adv)


def curriculum(network, *, attack=None, eps: Optional[float] = None,
               step_size: Optional[float] = None, num_steps: int = 10, patience: int = 10,
               batch_mixing: bool = True, restore_best: bool = True, initial_k: int = 0,
               random_start: str = "uniform", norm: str = "linf", pixel_range="[0,1]",
               eval_attack=None, weight_decay: float = 1e-4, attack_training: bool = False,
               track_clean: bool = True, record_fosc: bool = False, **kwargs):
    """Builds a Curriculum AT model (``tfadv.defenses.get("curriculum", network, ...)``).
    Either pass ``attack=`` (its ``num_steps`` is K) or the PGD parameters in input units (``eps``
    required); defaults are the FOSC paper's setting for all its defenses (sec. 5.1): K = 10 steps
    of ε/4 with random start (its ε: ``tfadv.recipes.fosc.defense_kwargs()``); patience 10 (Cai et
    al.)."""
    attack = dynamic_lib.paper_attack(attack, eps=eps, step_size=step_size, num_steps=num_steps,
                                      random_start=random_start, norm=norm,
                                      pixel_range=pixel_range, defense="curriculum")
    return CurriculumAdversarialTraining(
        network, attack=attack, patience=patience, batch_mixing=batch_mixing,
        restore_best=restore_best, initial_k=initial_k, eval_attack=eval_attack,
        weight_decay=weight_decay, attack_training=attack_training, track_clean=track_clean,
        record_fosc=record_fosc, **kwargs)
