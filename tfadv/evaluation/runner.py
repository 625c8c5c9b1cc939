"""Runs a list of attacks over a dataset and keeps per-example correctness.

Every attack starts from the clean input (REFERENCE_NOTES trap 7); robust accuracy under several
attacks is the *pointwise worst case*: an example counts as robust only if every attack (and the
clean input) leaves it correctly classified.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks.core import as_model_fn


@dataclasses.dataclass
class AttackResult:
    label: str
    correct: np.ndarray          # bool per example
    seconds: float
    forward_passes: int          # model evaluations (attack + final prediction) over all examples
    max_linf: float              # largest |x_adv - x|_inf over examples, in input units
    nan_count: int
    out_of_range: int

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.correct.size else float("nan")


@dataclasses.dataclass
class EvaluationResult:
    results: Dict[str, AttackResult]
    num_examples: int

    @property
    def worst_case(self) -> np.ndarray:
        return np.logical_and.reduce([r.correct for r in self.results.values()])

    def accuracies(self) -> Dict[str, float]:
        acc = {label: r.accuracy for label, r in self.results.items()}
        if len(self.results) > 1:
            acc["worst case"] = float(self.worst_case.mean())
        return acc


class _Progress:
    """One status line per attack: redrawn in place on a terminal, every 30 s in a log file."""

    def __init__(self, label, total, stream):
        self.label, self.total, self.stream = label, total, stream
        self.start = self.last = time.time()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, done, final=False):
        if self.stream is None:
            return
        now = time.time()
        if not (final or self.tty or now - self.last >= 30):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if self.total and rate > 0 else float("nan")
        text = (f"  {self.label}: {done}/{self.total or '?'} images, {rate:.0f} img/s, "
                f"elapsed {now - self.start:.0f}s, eta {eta:.0f}s")
        self.stream.write(("\r" + text + "   ") if self.tty else text + "\n")
        if final and self.tty:
            self.stream.write("\n")
        self.stream.flush()


def _check_batch(model_fn, x, y, rng):
    """Stops early, with the offending values, on images outside the range or bad labels."""
    rng.check_images(x.numpy(), what="Evaluation images")
    num_classes = int(model_fn(x[:1]).shape[-1])
    yn = y.numpy()
    if yn.ndim != 1 or (yn.size and (yn.min() < 0 or yn.max() >= num_classes)):
        raise ValueError(f"Evaluation labels must be integers in [0, {num_classes}) with shape (B,). "
                         f"Received: shape={yn.shape}, min={yn.min()}, max={yn.max()}.")


def evaluate(model, dataset, specs: Dict[str, "object"], *, pixel_range, num_examples: Optional[int] = None,
             progress=sys.stderr) -> EvaluationResult:
    """Evaluates ``model`` (Keras model or logits callable) under each attack spec.

    Args:
        model: images -> logits; Keras models are called in inference mode.
        dataset: batched ``(images, labels)`` pairs in ``pixel_range``.
        specs: ordered mapping label -> AttackSpec (or anything with ``.attack``) or Attack.
        num_examples: total, for the progress line only.
        progress: a stream for the progress line, or None.
    """
    rng = ranges_lib.get_range(pixel_range)
    model_fn = as_model_fn(model, False)
    results = {}
    checked = False
    for label, spec in specs.items():
        attack = getattr(spec, "attack", spec)
        passes_per_image = attack.model_calls_per_example() + 1  # + the final prediction

        def run(x, y, attack=attack):
            x_adv = attack(model_fn, x, y)
            pred = tf.argmax(model_fn(x_adv), axis=-1, output_type=tf.int32)
            delta = tf.reshape(x_adv - x, [tf.shape(x)[0], -1])
            return (tf.equal(pred, y), tf.reduce_max(tf.abs(delta), axis=1),
                    tf.reduce_sum(tf.cast(tf.math.is_nan(delta), tf.int32), axis=1),
                    tf.reduce_sum(tf.cast(tf.logical_or(x_adv < rng.low - 1e-6, x_adv > rng.high + 1e-6),
                                          tf.int32), axis=[1, 2, 3]))

        correct, linf, nans, oor = [], [], [], []
        start = time.time()
        seen = 0
        bar = _Progress(label, num_examples, progress)
        compiled = None
        for x, y in dataset:
            x = tf.convert_to_tensor(x, tf.float32)
            y = tf.cast(y, tf.int32)
            if compiled is None:
                if not checked:
                    _check_batch(model_fn, x, y, rng)
                    checked = True
                # One trace per attack: the batch dimension is left open for the last batch.
                compiled = tf.function(run, input_signature=[
                    tf.TensorSpec([None, *x.shape[1:]], tf.float32), tf.TensorSpec([None], tf.int32)])
            c, d, n, o = compiled(x, y)
            correct.append(c.numpy()); linf.append(d.numpy()); nans.append(n.numpy()); oor.append(o.numpy())
            seen += int(c.shape[0])
            bar.update(seen)
        bar.update(seen, final=True)
        correct = np.concatenate(correct) if correct else np.zeros([0], bool)
        results[label] = AttackResult(
            label=label, correct=correct, seconds=time.time() - start,
            forward_passes=int(passes_per_image * correct.size),
            max_linf=float(np.max(np.concatenate(linf))) if linf else 0.0,
            nan_count=int(np.sum(np.concatenate(nans))) if nans else 0,
            out_of_range=int(np.sum(np.concatenate(oor))) if oor else 0)
    return EvaluationResult(results=results, num_examples=int(correct.size))
