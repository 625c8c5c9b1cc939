"""The logs of a defense: the metrics each phase updates and returns, read across replicas.

:class:`PhaseMetrics` is the metrics side of :class:`tfadv.defenses.base.AdversarialModel`: the
base's trackers (``loss``, ``adv_loss``/``adv_acc``, ``clean_loss``/``clean_acc``, ``eps_scale``)
plus a defense's ``defense_metrics`` make ``training_metrics`` (what ``train_step`` logs) and
``evaluation_metrics`` (what ``test_step`` logs); ``fit()``'s epoch logs and ``evaluate()``'s are
those metrics' results (``get_metrics_result``). :class:`LatestValue` logs a schedule's state.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfadv import distribute as distribute_lib
from tfadv import losses as losses_lib

#: The base's metrics, in log order.
BASE_METRICS = ("loss", "adv_loss", "adv_acc", "clean_loss", "clean_acc")


class LatestValue(keras.metrics.Metric):
    """A metric whose result is the value it was last given: a schedule's state (``eps_scale``,
    Dynamic AT's ``c_t``, the curriculum's ``k``), logged as of the epoch's last step. The value is
    the same on every replica; the first replica's is read."""

    def __init__(self, name: str, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable(shape=(), initializer="zeros", dtype=dtype,
                                       aggregation="only_first_replica", name="value")

    def update_state(self, value):
        self.value.assign(tf.cast(value, self.dtype))

    def result(self):
        return tf.identity(self.value)


def slice_weighted_means(*names: str) -> dict:
    """name -> ``keras.metrics.Mean`` for a defense's batch-mean loss terms; update each with
    :func:`update_slice_weighted`, so the epoch value is the global-batch mean under a strategy."""
    return {name: keras.metrics.Mean(name=name) for name in names}


def update_slice_weighted(trackers: dict, labels, **batch_means) -> None:
    """Adds each batch mean of ``batch_means`` to its tracker, weighted by this replica slice's
    number of examples (slices may be unequal; an empty slice adds nothing, not its NaN mean)."""
    n = tf.cast(tf.shape(labels)[0], tf.float32)
    for name, value in batch_means.items():
        trackers[name].update_state(tf.where(n > 0, tf.cast(value, tf.float32), 0.0),
                                    sample_weight=n)


def base_trackers(eps_warmup: bool) -> dict:
    """name -> metric of :data:`BASE_METRICS` (accuracies ``SparseCategoricalAccuracy``, losses
    ``Mean``), and ``eps_scale`` (a :class:`LatestValue`) with an eps warm-up."""
    trackers = {n: (keras.metrics.SparseCategoricalAccuracy(name=n) if n.endswith("acc")
                    else keras.metrics.Mean(name=n)) for n in BASE_METRICS}
    if eps_warmup:
        trackers["eps_scale"] = LatestValue("eps_scale")
    return trackers


class PhaseMetrics:
    """The metrics side of a ``keras.Model`` defense (a mixin of
    :class:`tfadv.defenses.base.AdversarialModel`, which sets ``_trackers`` from
    :func:`base_trackers`, ``track_clean`` and ``_evaluating``)."""

    @property
    def defense_metrics(self) -> list:
        """The defense's own training metrics (Keras metrics it updates in its hooks, e.g. BAT's
        ``eps_y``); logged by ``train_step`` after the base's. None by default."""
        return []

    @property
    def training_metrics(self) -> list:
        """What ``train_step`` updates and logs: ``loss`` (the minimised objective plus weight
        decay), ``adv_loss``/``adv_acc`` (training mode), ``clean_loss``/``clean_acc`` with
        ``track_clean``, ``eps_scale`` with ``eps_warmup_steps``, then ``defense_metrics``."""
        skip = () if self.track_clean else ("clean_loss", "clean_acc")
        return [m for n, m in self._trackers.items() if n not in skip] + list(self.defense_metrics)

    @property
    def evaluation_metrics(self) -> list:
        """What ``test_step`` updates and logs: loss, adv_loss/adv_acc under ``eval_attack`` and
        clean_loss/clean_acc, all in inference mode."""
        return [self._trackers[n] for n in BASE_METRICS]

    @property
    def metrics(self):
        """Every metric of the model (``reset_metrics`` resets them all)."""
        out = []
        for m in self.training_metrics + self.evaluation_metrics:
            if not any(m is seen for seen in out):
                out.append(m)
        return out

    def get_metrics_result(self):
        """The results of the running phase's metrics (``evaluation_metrics`` inside
        ``evaluate()``, else ``training_metrics``), read across replicas: the epoch logs of
        ``fit()`` and the logs of ``evaluate()`` (Keras uses them whenever a step returns the same
        names, which ``train_step``/``test_step`` do)."""
        return self._results(self.evaluation_metrics if self._evaluating
                             else self.training_metrics)

    def evaluate(self, *args, **kwargs):
        """Keras ``evaluate`` (also ``fit()``'s validation): its logs are the evaluation metrics
        only (no ``val_eps_y``, ...)."""
        outer, self._evaluating = self._evaluating, True
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._evaluating = outer

    @staticmethod
    def _results(metrics):
        return {m.name: m.result() for m in metrics}

    def _step_logs(self, metrics):
        """A step's logs: every metric's result. Across workers Keras averages each step log with
        ``strategy.reduce(MEAN, v, axis=0)``, which rejects scalars: there each is a one-element
        vector, which that reduction turns back into a scalar. Nothing changes on one host."""
        logs = self._results(metrics)
        strategy = self.distribute_strategy
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and distribute_lib.is_multi_worker(strategy)):
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _update_adv(self, y, logits_adv):
        self._trackers["adv_loss"].update_state(losses_lib.ce(logits=logits_adv, labels=y))
        self._trackers["adv_acc"].update_state(y, logits_adv)

    def _update_clean(self, y, logits_clean):
        self._trackers["clean_loss"].update_state(losses_lib.ce(logits=logits_clean, labels=y))
        self._trackers["clean_acc"].update_state(y, logits_clean)

