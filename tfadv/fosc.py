"""First-Order Stationary Condition (FOSC) of an adversarial example (Wang et al., ICML 2019).

For the inner maximisation ``max_{x ∈ X} f(x)`` over the Linf ball ``X = {x : ‖x − x⁰‖∞ ≤ ε}``,
the FOSC of a point ``xᵏ`` is the Frank-Wolfe gap (eq. 4 and its closed form)::

    c(xᵏ) = max_{x ∈ X} ⟨x − xᵏ, ∇ₓf(xᵏ)⟩ = ε‖∇ₓf(xᵏ)‖₁ − ⟨xᵏ − x⁰, ∇ₓf(xᵏ)⟩

It is non-negative for every ``xᵏ`` in the ball and zero exactly at first-order stationary points
(an interior point with zero gradient, or a boundary vertex aligned with the gradient's sign).
The set ``X`` is the ball alone, as in the paper: the pixel-range box is not part of it. For an
L2 ball the same derivation gives ``ε‖g‖₂ − ⟨xᵏ − x⁰, g⟩`` (the dual norm; footnote 1 of the paper:
"our algorithms and theory apply to other norms").

**x⁰.** The paper's x⁰ is the natural example. The authors' release
(``YisenWang/dynamic_adv_training``, ``pgd_attack.py``) subtracts the *random-start point* instead
(``original_batch_x`` is copied after the uniform start); :func:`fosc_of_state` with
``reference="start"`` reproduces that. That variant is not a Frank-Wolfe gap of the ball (it can be
negative: ``xᵏ − x_start`` reaches 2ε), which is why the paper's definition is the default.

Also here: :func:`fosc_and_loss` (FOSC and CE of a batch under a model), :class:`FoscRecorder` (the
FOSC of every training example of an epoch, inside a compiled ``train_step``) and
:class:`FoscLogger` (TensorBoard histograms and the per-epoch distribution PNG of Figures 3 and 5).
"""

from __future__ import annotations

import os
from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from tfadv.attacks import gradients as gradients_lib

NORMS = ("linf", "l2")
REFERENCES = ("natural", "start")


def fosc(grad, x_adv, x_nat, eps, *, norm: str = "linf"):
    """Per-example FOSC ``eps·‖g‖₁ − ⟨x_adv − x_nat, g⟩`` (Linf ball of radius ``eps`` around x_nat;
    ``norm="l2"``: ``eps·‖g‖₂ − ⟨x_adv − x_nat, g⟩``).

    Args:
        grad: gradient of the maximised loss at ``x_adv``, shape (B, ...).
        x_adv: the point being assessed, shape (B, ...).
        x_nat: the centre of the ball (the natural example, as in the paper), shape (B, ...).
        eps: radius in input units: a scalar or a per-example vector of shape (B,).
        norm: ``linf`` (the paper) or ``l2``.

    Returns:
        float32 tensor of shape (B,).
    """
    if norm not in NORMS:
        raise ValueError(f"Unknown norm. Expected one of {NORMS}. Received: {norm!r}.")
    g = tf.convert_to_tensor(grad, tf.float32)
    x_adv = tf.convert_to_tensor(x_adv, tf.float32)
    x_nat = tf.convert_to_tensor(x_nat, tf.float32)
    if g.shape.rank is not None and g.shape.rank < 1:
        raise ValueError(f"fosc needs a batch of gradients (B, ...). Received shape: {g.shape}.")
    if g.shape.is_fully_defined() and (x_adv.shape != g.shape or x_nat.shape != g.shape):
        raise ValueError("grad, x_adv and x_nat must have the same shape. Received: "
                         f"grad {g.shape}, x_adv {x_adv.shape}, x_nat {x_nat.shape}.")
    eps = tf.convert_to_tensor(eps, tf.float32)
    if eps.shape.rank not in (None, 0, 1):
        raise ValueError(f"eps must be a scalar or a (B,) vector. Received shape: {eps.shape}.")
    batch = tf.shape(g)[0]
    g = tf.reshape(g, [batch, -1])
    delta = tf.reshape(x_adv - x_nat, [batch, -1])
    dual = (tf.reduce_sum(tf.abs(g), axis=1) if norm == "linf"
            else tf.sqrt(tf.reduce_sum(tf.square(g), axis=1)))
    return eps * dual - tf.reduce_sum(delta * g, axis=1)


def check_reference(reference: str) -> str:
    if reference not in REFERENCES:
        raise ValueError(f"Unknown FOSC reference point x0. Expected one of {REFERENCES} ('natural': "
                         f"the paper; 'start': the release's random-start point). "
                         f"Received: {reference!r}.")
    return reference


def fosc_of_state(state, *, reference: str = "natural", norm: str = "linf"):
    """FOSC of the iterate a per-example stop criterion sees (``tfadv.attacks.StepState``).

    ``reference="natural"`` centres the ball's inner product at the clean image (the paper);
    ``"start"`` at the run's random-start point (the release).
    """
    check_reference(reference)
    center = state.x_nat
    if reference == "start":
        if state.x_start is None:
            raise ValueError("reference='start' needs the attack's start point (StepState.x_start). "
                             "Received: x_start=None.")
        center = state.x_start
    return fosc(state.grad, state.x_adv, center, state.eps, norm=norm)


def fosc_and_loss(model_fn, x_adv, x_nat, y, eps, *, norm: str = "linf"):
    """(FOSC, per-example CE, logits) at ``x_adv`` from one forward/backward of ``model_fn``, with
    g = ∇ₓ CE(f(x_adv), y) (the per-example loss the paper's PGD maximises)."""
    x_adv = tf.convert_to_tensor(x_adv, tf.float32)
    logits, ce, grad = gradients_lib.input_gradient(model_fn, gradients_lib.ce_objective, x_adv,
                                                    (y,))
    return fosc(grad, x_adv, x_nat, eps, norm=norm), ce, logits


class FoscRecorder:
    """Keeps the FOSC of the training examples of the current epoch in a ring buffer of
    ``capacity`` values (the last ``capacity`` examples when an epoch has more), so that a compiled
    ``train_step`` can record them and a callback can read them at the end of the epoch.

    Under a multi-replica strategy each replica keeps its own buffer and the first replica's is read
    (a subsample of the epoch's examples).
    """

    def __init__(self, capacity: int = 65536):
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be a positive integer. Received: {capacity!r}.")
        self.capacity = int(capacity)
        sync = dict(synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA, trainable=False)
        self.values = tf.Variable(tf.zeros([self.capacity], tf.float32), name="fosc_values", **sync)
        self.count = tf.Variable(tf.constant(0, tf.int64), name="fosc_count", **sync)

    def record(self, values):
        values = tf.reshape(tf.cast(values, tf.float32), [-1])
        n = tf.shape(values, out_type=tf.int64)[0]
        index = (self.count + tf.range(n, dtype=tf.int64)) % self.capacity
        # assign (not scatter_nd_update): the per-replica (ON_READ) variables of a distribution
        # strategy support only whole assignments in replica context.
        self.values.assign(tf.tensor_scatter_nd_update(self.values, index[:, None], values))
        self.count.assign_add(n)

    def reset(self):
        self.count.assign(0)

    def read(self) -> np.ndarray:
        n = int(min(int(self.count.numpy()), self.capacity))
        return np.array(self.values.numpy()[:n])


def plot_distributions(values_by_epoch: Dict[int, np.ndarray], path: str, *, max_curves: int = 6,
                       bins: int = 40, title: str = "FOSC of the training adversarial examples") -> str:
    """The paper's Figures 3/5: the distribution of FOSC (share of examples per bin, %) at a few
    epochs (at most ``max_curves``, evenly spaced, always including the first and the last)."""
    from tfadv.evaluation import plots

    plt = plots._pyplot()
    epochs = sorted(values_by_epoch)
    if len(epochs) > max_curves:
        picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, max_curves)).astype(int))
        epochs = [epochs[i] for i in picks]
    finite = [np.asarray(values_by_epoch[e], np.float64) for e in epochs]
    finite = [v[np.isfinite(v)] for v in finite]
    pooled = np.concatenate([v for v in finite if v.size] or [np.zeros(1)])
    high = float(np.quantile(pooled, 0.99)) if pooled.size else 1.0
    low = min(0.0, float(pooled.min()))
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for epoch, v in zip(epochs, finite):
        counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
        share = 100.0 * counts / max(v.size, 1)
        ax.plot(0.5 * (edges[1:] + edges[:-1]), share, label=f"epoch {epoch + 1} (n={v.size})")
    ax.set_title(title)
    ax.set_xlabel("FOSC")
    ax.set_ylabel("examples (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return plots._save(fig, path)


class FoscLogger(keras.callbacks.Callback):
    """Logs the FOSC distribution of the training examples every epoch (Figures 3 and 5):

    * ``tf.summary.histogram("fosc_distribution", ...)`` into ``LOGDIR/tensorboard/train`` (beside Keras'
      TensorBoard scalars of the same run), step = epoch;
    * ``LOGDIR/fosc/epoch_NNNN.npy`` with the values (as the release saves ``*_fosc.npy``);
    * ``LOGDIR/fosc.png``: the distributions at up to six epochs (:func:`plot_distributions`).

    ``recorder`` is the defense's :class:`FoscRecorder`; it is reset at the start of every epoch.
    """

    def __init__(self, recorder: FoscRecorder, logdir: str, *, plot: bool = True):
        super().__init__()
        self.recorder = recorder
        self.logdir = logdir
        self.plot = plot
        self.history: Dict[int, np.ndarray] = {}
        self._writer = None

    def on_epoch_begin(self, epoch, logs=None):
        self.recorder.reset()

    def on_epoch_end(self, epoch, logs=None):
        values = self.recorder.read()
        self.history[int(epoch)] = values
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.logdir, "tensorboard",
                                                                      "train"))
        if values.size:
            with self._writer.as_default():
                tf.summary.histogram("fosc_distribution", values, step=int(epoch))
            self._writer.flush()
        from tfadv import atomic

        out = os.path.join(self.logdir, "fosc")
        os.makedirs(out, exist_ok=True)
        with atomic.atomic_path(os.path.join(out, f"epoch_{int(epoch):04d}.npy")) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, values)
        if self.plot:
            plot_distributions(self.history, os.path.join(self.logdir, "fosc.png"))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

