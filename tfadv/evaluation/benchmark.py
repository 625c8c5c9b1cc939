"""``tfadv.benchmark``: one call from a model and its data to a model card, RobustBench-shaped.

    card = tfadv.benchmark(model, (x_test, y_test), threat_model="Linf", eps=8/255,
                           suite="autoattack", pixel_range="[0,1]", num_examples=1000)
    card.clean_accuracy, card.robust_accuracy, card.robust_mask, card.components

It is :func:`tfadv.evaluation.evaluate` (the one evaluation loop) on a suite of
:mod:`tfadv.evaluation.specs`, with RobustBench's conventions: ``eps`` in input units of
``pixel_range`` (8/255 in ``[0,1]``), accuracies as fractions, and the card also written as
Markdown and JSON when ``out_dir`` is given (:mod:`tfadv.evaluation.card`).
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import data as data_lib
from tfadv import ranges as ranges_lib
from tfadv.evaluation import specs as specs_lib
from tfadv.evaluation.card import ModelCard, check_card_path
from tfadv.evaluation.runner import evaluate

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}
# The suites an L2 threat model can run: each item rewritten with the L2 geometry. The other suites
# name Linf-only attacks (FGSM, CW-Linf, MI-FGSM, Linf DeepFool) or fix their own Linf budgets.
L2_SUITES = {"autoattack": ("clean", "autoattack(norm=l2)")}


def benchmark(model, data, *, threat_model: str = "Linf", eps: float = 8 / 255,
              suite: str = "autoattack", pixel_range="[0,1]", num_examples: Optional[int] = None,
              batch_size: int = 200, seed: Optional[int] = 0, split: str = "test",
              data_dir: Optional[str] = None, only_robust: bool = True, out_dir: Optional[str] = None,
              overwrite: bool = False, distribute=None, name: Optional[str] = None,
              autoattack_params: Optional[dict] = None, progress=sys.stderr) -> ModelCard:
    """Evaluates ``model`` on ``data`` under a suite and returns its :class:`ModelCard`.

    Args:
        model: a ``keras.Model`` returning logits, or a callable images -> logits.
        data: a dataset name of :func:`tfadv.data.load` (``"digits"``, ``"cifar10"``,
            ``"npz:PATH"``, ...; its ``split`` is read in order, never shuffled), or a pair
            ``(x, y)`` of arrays: images ``(N, H, W, C)`` in ``pixel_range`` and integer labels.
        threat_model: ``"Linf"`` or ``"L2"`` (case-insensitive).
        eps: the radius in input units of ``pixel_range`` (RobustBench's: 8/255 for CIFAR-10
            Linf in ``[0,1]``, 0.5 for L2); at least one pixel level (width/255) and at most the
            width of the range.
        suite: a suite of :data:`tfadv.evaluation.specs.SUITES` (``autoattack``, ``paper``, ...);
            with ``"L2"`` only ``autoattack``.
        pixel_range: what the model takes, ``"[0,1]"`` or ``"[-1,1]"``.
        num_examples: evaluate the first N examples (default: all).
        batch_size: examples per attack batch.
        seed: the attacks' seed (the same seed gives the same mask).
        split, data_dir: for a dataset name.
        only_robust: each attack runs only on the points still robust (AutoAttack's protocol; the
            worst case is the same either way).
        out_dir: also write ``out_dir/model_card.md`` and ``.json`` (atomically); a card already
            there is refused unless ``overwrite=True``. Checked before anything runs.
        distribute: a ``tf.distribute.Strategy`` of one process (MirroredStrategy over GPUs or
            logical CPUs): the attacks' model passes are split over its replicas
            (:mod:`tfadv.evaluation.sharding`) with the per-example results of one device.
            ``None``: the current device. Several hosts: ``eval_robustness.py
            --strategy=multi_worker`` or :func:`tfadv.evaluation.workers.evaluate_on_workers`.
        name: the model's row in the table (default: the Keras model's name).
        autoattack_params: per-member budgets of the suite's AutoAttack (AutoAttack's
            ``attack_params``), e.g. ``{"square": {"n_queries": 1000}}`` for a quick check; the
            column is then labelled ``AutoAttack (custom budgets)`` and the card records them.
            Default: the standard version's budgets.
        progress: a stream for the runner's progress lines, or None.
    """
    _check_distribute(distribute)
    norm = _threat_model(threat_model)
    rng = ranges_lib.get_range(pixel_range)
    eps_pixels = _eps_pixels(eps, norm, rng)
    items = _suite_items(suite, norm)
    for value, what, allow_none in ((num_examples, "num_examples", True),
                                    (batch_size, "batch_size", False)):
        _check_count(value, what, allow_none)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None. Received: seed={seed!r}.")
    specs = specs_lib.parse_list(",".join(items), eps=eps_pixels, pixel_range=rng, seed=seed)
    if autoattack_params is not None:
        specs = _with_member_budgets(specs, autoattack_params)
    if not callable(model):
        raise ValueError(f"model must be a keras.Model or a callable images -> logits. "
                         f"Received: {model!r}.")
    if out_dir is not None:
        check_card_path(out_dir, overwrite=overwrite)
    dataset, n, dataset_name = _input(data, rng, num_examples, batch_size, split, data_dir)
    start = time.time()
    result = evaluate(model, dataset, specs, pixel_range=rng, num_examples=n,
                      only_robust=only_robust, progress=progress, distribute=distribute)
    seconds = time.time() - start
    name = name or str(getattr(model, "name", "") or "model")
    metadata = {"dataset": dataset_name, "split": split if isinstance(data, str) else None,
                "threat_model": THREAT_MODELS[norm], "eps_pixels": eps_pixels,
                "eps_input": float(eps), "pixel_range": str(rng), "architecture": name,
                "suite": suite.strip().lower(), "seed": seed, "batch_size": batch_size,
                "attacks": {label: spec.params for label, spec in specs.items()}}
    card = ModelCard(result=result, metadata=metadata, name=name, seconds=seconds)
    if out_dir is not None:
        card.write(out_dir, overwrite=overwrite)
    return card


def _with_member_budgets(specs, member_params: dict):
    """``specs`` with each AutoAttack rebuilt with ``attack_params=member_params`` (its members'
    budgets), relabelled ``LABEL (custom budgets)``."""
    if not isinstance(member_params, dict) or not member_params:
        raise ValueError(f"autoattack_params maps AutoAttack members to parameter dicts, e.g. "
                         f"{{'square': {{'n_queries': 1000}}}}. Received: {member_params!r}.")
    out = {}
    for label, spec in specs.items():
        attack = spec.attack
        if getattr(attack, "name", None) == "autoattack":
            attack = attacks_lib.get("autoattack", eps=attack.eps, norm=attack.norm, seed=attack.seed,
                                     pixel_range=attack.pixel_range, attack_params=member_params)
            label = f"{label} (custom budgets)"
            spec = specs_lib.AttackSpec(label, attack, {**spec.params, "attack_params": member_params})
        out[label] = spec
    if list(out) == list(specs):
        raise ValueError(f"autoattack_params needs a suite with AutoAttack. Received: suite attacks "
                         f"{list(specs)}.")
    return out


def _check_distribute(distribute) -> None:
    if distribute is not None and not isinstance(distribute, tf.distribute.Strategy):
        raise ValueError(f"distribute must be None (the current device) or a "
                         f"tf.distribute.Strategy. Received: distribute={distribute!r}.")


def _threat_model(threat_model) -> str:
    key = threat_model.strip().lower() if isinstance(threat_model, str) else None
    if key not in THREAT_MODELS:
        raise ValueError(f"threat_model must be one of {sorted(THREAT_MODELS.values())}. "
                         f"Received: threat_model={threat_model!r}.")
    return key


def _eps_pixels(eps, norm: str, rng) -> float:
    """``eps`` (input units) in pixel levels out of 255, the units of the suites' parser."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) \
            or eps <= 0:
        raise ValueError(f"eps must be a positive number in input units of the pixel range "
                         f"(8/255 in [0,1]). Received: eps={eps!r}.")
    if eps > rng.width:
        what = ("an Linf radius cannot exceed the width" if norm == "linf" else
                "the suites take L2 radii up to the width")
        raise ValueError(f"eps is in input units and {what} {rng.width:g} of the pixel range "
                         f"{rng} (8/255 is eps={rng.from_pixels(8):.6g} here). Received: eps={eps!r}.")
    pixels = round(rng.to_pixels(eps), 9)  # 8/255 is 8 levels, not 8.000000000000002
    if pixels < 1:
        raise ValueError(f"eps is below one pixel level ({rng.from_pixels(1):.6g} in {rng}), "
                         f"which the suites do not take. Received: eps={eps!r}.")
    return pixels


def _suite_items(suite, norm: str):
    specs_lib.suite_attack_names(suite if isinstance(suite, str) else repr(suite))  # unknown: refused
    key = suite.strip().lower()
    if norm == "l2":
        if key not in L2_SUITES:
            raise ValueError(f"threat_model='L2' runs the suites {sorted(L2_SUITES)} only (the others "
                             f"are Linf attacks). Received: suite={suite!r}.")
        return L2_SUITES[key]
    return specs_lib.SUITES[key]


def _check_count(value, what: str, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive integer{' or None' if allow_none else ''}. "
                         f"Received: {what}={value!r}.")


def _input(data, rng, limit, batch_size, split, data_dir):
    """``(batched dataset, number of examples, dataset name)`` from a name or ``(x, y)`` arrays."""
    if isinstance(data, str):
        ds, info = data_lib.load(data, split, batch_size=batch_size, pixel_range=rng,
                                 data_dir=data_dir, limit=limit, training=False)
        return ds, int(info.num_examples), data.strip()
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"data must be a dataset name of tfadv.data or a pair (x, y) of arrays. "
                         f"Received: {type(data).__name__} {data!r:.200}.")
    x, y = (np.asarray(a) for a in data)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or not len(x):
        raise ValueError(f"data=(x, y) takes images (N, ...) and N labels, N >= 1. Received: "
                         f"x of shape {x.shape}, y of shape {y.shape}.")
    if not np.issubdtype(x.dtype, np.floating) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"data=(x, y) takes floating images in the pixel range {rng} and integer "
                         f"labels. Received: x of dtype {x.dtype}, y of dtype {y.dtype}.")
    x, y = x[:limit], y[:limit]
    ds = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.int32)))
    return ds.batch(batch_size), int(len(x)), "arrays"
