"""AutoAttack (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020), standard version.

The ensemble runs its attacks in order — APGD-CE, APGD-T (targeted DLR, 9 target classes), FAB-T
(9 target classes) and Square (5,000 queries), one restart each — and every attack only sees the
points that are still classified correctly: the clean images, and then the images no earlier
attack has fooled. Per example the first successful adversarial image is returned (otherwise the
clean image), so the accuracy on the output is the pointwise worst case over the ensemble
(the paper's "robust accuracy", sec. 5).

The members are built by registry name, so any registered attack can join a custom list
``attacks=[("apgd_ce", {...}), "fgsm", ...]``.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks import steps as steps_lib
from tfadv.attacks.base import Attack
from tfadv.attacks.model_fn import inference_fn
from tfadv.attacks.checks import check_radius, validate_batch
from tfadv.attacks.registry import ATTACKS

STANDARD_ATTACKS = ("apgd_ce", "apgd_t", "fab_t", "square")
VERSIONS = ("standard", "custom")


class AutoAttack(Attack):
    """The AutoAttack ensemble; robust accuracy on its output is the pointwise worst case.

    Args:
        eps: radius in input units (8/255 in [0,1] for CIFAR-10 Linf).
        norm: ``linf`` or ``l2``; passed to every member.
        version: ``standard`` (APGD-CE → APGD-T → FAB-T → Square with each member's defaults:
            100 iterations, 9 target classes, 5,000 queries, 1 restart) or ``custom`` (the list
            given as ``attacks``; the default when ``attacks`` is given).
        attacks: custom members, in order: a registered name, a ``(name, params)`` pair or an
            Attack instance. Named members get ``eps``, ``norm`` and ``pixel_range`` unless
            their params set them.
        attack_params: per-member overrides by name, e.g. ``{"square": {"n_queries": 1000}}``
            (smaller budgets for a quick check).
        seed: passed to every member of the standard version (custom members take it in their
            params).
        pixel_range: range of the images.

    Every member's output is projected onto the eps-ball and clipped to the range before it is
    scored, so the ensemble's output never leaves the threat model. After a call,
    ``last_run`` lists, per member, how many points it attacked, how many it fooled, its time and
    its ``forward``/``backward`` passes (per example-pass, counted inside the model callable:
    :meth:`Attack.counted`; the first member's include the ensemble's clean prediction, so the
    members' passes sum to the call's).
    Members with host-side control flow (FAB, Square) make the ensemble eager (``graph_safe`` is
    False); traced into a ``tf.function`` it runs through ``tf.py_function``.
    """

    name = "autoattack"
    graph_safe = False

    def __init__(self, *, eps: float, norm: str = "linf", version: Optional[str] = None,
                 attacks: Optional[Sequence] = None, attack_params: Optional[dict] = None,
                 seed: Optional[int] = 0, pixel_range="[0,1]", name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        if norm not in ("linf", "l2"):
            raise ValueError(f"AutoAttack norm must be 'linf' or 'l2'. Received: {norm!r}.")
        self.norm = norm
        self._ball = steps_lib.get(norm)
        self.eps = check_radius(eps, "eps", norm, self.pixel_range)
        if version is None:
            version = "standard" if attacks is None else "custom"
        if version not in VERSIONS:
            raise ValueError(f"AutoAttack version must be one of {VERSIONS}. Received: {version!r}.")
        if version == "standard" and attacks is not None:
            raise ValueError("The standard version has a fixed list of attacks; pass "
                             f"version='custom' (or no version) with attacks=. Received: {attacks!r}.")
        if isinstance(attacks, (str, Attack)):
            raise ValueError(f"attacks is a list of members. Received: {attacks!r}.")
        if version == "custom" and not attacks:
            raise ValueError(f"version='custom' needs a non-empty attacks=[...]. Received: {attacks!r}.")
        self.version = version
        self.seed = seed
        attack_params = dict(attack_params or {})
        if not all(isinstance(k, str) and isinstance(v, dict) for k, v in attack_params.items()):
            raise ValueError(f"attack_params maps attack names to parameter dicts. "
                             f"Received: {attack_params!r}.")
        entries = [(n, {}) for n in STANDARD_ATTACKS] if version == "standard" else list(attacks)
        self.members = []  # (label, Attack)
        used = set()
        for entry in entries:
            label, attack = self._build(entry, attack_params, version)
            used.add(label.strip().lower())
            self.members.append((label, attack))
        unknown = sorted(set(k.strip().lower() for k in attack_params) - used)
        if unknown:
            raise ValueError(f"attack_params names attacks that are not in the ensemble "
                             f"{[m[0] for m in self.members]}. Received: {unknown}.")
        self.graph_safe = False
        self.last_run = []
        if name is not None:
            self.name = name

    def _build(self, entry, attack_params, version):
        from tfadv import attacks as attacks_lib  # deferred: tfadv.attacks imports this module

        if isinstance(entry, Attack):
            return entry.name, entry
        if isinstance(entry, str):
            label, params = entry, {}
        elif isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str) \
                and isinstance(entry[1], dict):
            label, params = entry[0], dict(entry[1])
        else:
            raise ValueError("Each AutoAttack member is a name, a (name, params) pair or an Attack. "
                             f"Received: {entry!r}.")
        if label.strip().lower() == "autoattack":
            raise ValueError(f"AutoAttack cannot contain itself. Received: {entry!r}.")
        merged = {"eps": self.eps, "norm": self.norm, "pixel_range": str(self.pixel_range)}
        if version == "standard" and self.seed is not None:
            merged["seed"] = self.seed
        merged.update(params)
        for key, value in attack_params.items():
            if key.strip().lower() == label.strip().lower():
                merged.update(value)
        return label, attacks_lib.get(label, **merged)

    def reproducible_per_call(self) -> bool:
        """When every member is (the standard version's members, seeded by ``seed``)."""
        return all(attack.reproducible_per_call() for _, attack in self.members)

    def model_calls_per_example(self) -> int:
        """Upper bound: every member on every example, plus the clean and per-member scoring."""
        return sum(a.model_calls_per_example() + 1 for _, a in self.members) + 1

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "version": self.version,
                "seed": self.seed, "pixel_range": str(self.pixel_range),
                "attacks": [a.get_config() for _, a in self.members]}

    def __call__(self, model_fn, x, y, **kwargs):
        if kwargs:
            raise ValueError(f"AutoAttack takes no call options. Received: {sorted(kwargs)}.")
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.cast(tf.convert_to_tensor(y), tf.int32)
        if tf.executing_eagerly():
            return self._run_eagerly(model_fn, x, y)
        out = tf.py_function(lambda a, b: self._run_eagerly(model_fn, a, b), [x, y],
                             Tout=tf.float32)
        out.set_shape(x.shape)
        return out

    def _predict(self, fn, x):
        return np.argmax(np.asarray(fn(x)), axis=-1)

    def _run_eagerly(self, model_fn, x, y):
        model_fn = self.counted(model_fn)  # every pass of the ensemble and its members, counted
        counter = model_fn.counter
        marks = [counter.totals()]
        fn = inference_fn(model_fn)
        validate_batch(x, y, lambda: fn(x[:1]) if x.shape[0] else 0, self.pixel_range)
        y_np = y.numpy()
        x_adv = x.numpy().copy()
        robust = self._predict(fn, x) == y_np if len(y_np) else np.zeros([0], bool)
        self.last_run = []
        for label, attack in self.members:
            idx = np.flatnonzero(robust)
            record = {"attack": label, "attacked": int(idx.size), "fooled": 0, "seconds": 0.0,
                      "forward": 0, "backward": 0}
            self.last_run.append(record)
            if idx.size == 0:
                marks.append(counter.totals())
                continue
            start = time.time()
            xs, ys = tf.gather(x, idx), tf.gather(y, idx)
            adv = tf.convert_to_tensor(attack(model_fn, xs, ys), tf.float32)
            # Whatever a member returns, the ensemble only accepts points of the threat model.
            adv = tf.clip_by_value(self._ball.project(adv, xs, self.eps),
                                   self.pixel_range.low, self.pixel_range.high)
            fooled = self._predict(fn, adv) != y_np[idx]
            x_adv[idx[fooled]] = adv.numpy()[fooled]
            robust[idx[fooled]] = False
            record["fooled"] = int(fooled.sum())
            record["seconds"] = time.time() - start
            marks.append(counter.totals())
        # Each member's passes are those since the previous member's end (its attack and its
        # scoring forward; the first member's include the ensemble's batch check and clean
        # prediction), so that the members' counts sum to the call's.
        for record, before, after in zip(self.last_run, marks, marks[1:]):
            record["forward"], record["backward"] = after[0] - before[0], after[1] - before[1]
        return tf.constant(x_adv)


@ATTACKS.register("autoattack")
def autoattack(*, eps, norm="linf", version=None, attacks=None, attack_params=None, seed=0,
               pixel_range="[0,1]", name=None) -> AutoAttack:
    """AutoAttack (Croce & Hein 2020): APGD-CE → APGD-T → FAB-T → Square, pointwise worst case."""
    return AutoAttack(eps=eps, norm=norm, version=version, attacks=attacks,
                      attack_params=attack_params, seed=seed, pixel_range=pixel_range, name=name)
