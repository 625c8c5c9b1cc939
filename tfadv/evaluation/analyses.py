"""Analyses from the papers, with PNG plots.

* Gradient magnitudes ‖∇ₓL‖² of the cross-entropy at the clean test images, min/mean/max over all,
  correctly and wrongly classified images (BAT Table 2): a model with masked gradients shows tiny
  (or zero) values.
* FOSC (Wang et al., equation under (4); :func:`tfadv.attacks.fosc.fosc`) of any attack's outputs, with the
  gradient of the cross-entropy at the adversarial example and the natural image as the centre of
  the ball. FOSC of PGD outputs decreases with the number of steps (FOSC paper Figure 1b). The
  paper's ball ignores the pixel-range box: pixels pinned at the edge of the range (a digit's black
  background) cannot move towards sign(∇) and keep a positive FOSC however long PGD runs.
* Accuracy against the number of PGD steps and against eps (the diagnostics' sweeps).

``run_analyses`` writes ``analyses.json`` and ``gradient_norms.png``, ``fosc.png``,
``accuracy_vs_steps.png``, ``accuracy_vs_eps.png`` into a directory.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfadv import atomic
from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import gradients as gradients_lib
from tfadv.attacks.core import Attack, as_model_fn
from tfadv.attacks.fosc import fosc
from tfadv.evaluation import diagnostics as diag_lib
from tfadv.evaluation import plots, sharding


def summary(values) -> dict:
    """count/min/mean/median/max of a 1-D array (None entries for an empty one)."""
    v = np.asarray(values, np.float64).ravel()
    if not v.size:
        return {"count": 0, "min": None, "mean": None, "median": None, "max": None}
    return {"count": int(v.size), "min": float(v.min()), "mean": float(v.mean()),
            "median": float(np.median(v)), "max": float(v.max())}


def gradient_norms(model, x, y, *, batch_size: int = 256, distribute=None):
    """Per-example ``(‖∇ₓCE‖₂², correct)`` at the clean images, inference mode (NumPy arrays)."""
    sq, _, ok = diag_lib.input_gradients(model, x, y, batch_size=batch_size, distribute=distribute)
    return sq, ok


def gradient_statistics(sq_norms, correct) -> dict:
    """BAT Table 2: statistics of ‖∇ₓL‖² over all, correctly and wrongly classified images."""
    sq = np.asarray(sq_norms, np.float64)
    ok = np.asarray(correct, bool)
    return {"all": summary(sq), "correct": summary(sq[ok]), "wrong": summary(sq[~ok]),
            "zero_gradient_share": float(np.mean(sq == 0)) if sq.size else 0.0}


def fosc_values(model, attack: Attack, x, y, *, eps: float, batch_size: int = 256,
                distribute=None) -> np.ndarray:
    """FOSC of ``attack``'s outputs, one value per example (Linf ball of radius ``eps`` around x);
    the model passes split over ``distribute``'s replicas (:func:`tfadv.evaluation.sharding.shard`)."""
    model_fn = sharding.shard(as_model_fn(model, False), distribute)

    def run(xb, yb):
        x_adv = attack(model_fn, xb, yb)
        _, _, g = gradients_lib.input_gradient(model_fn, gradients_lib.ce_objective, x_adv, (yb,))
        if g is None:
            g = tf.zeros_like(x_adv)
        return fosc(g, x_adv, xb, eps)

    fn = tf.function(run, reduce_retracing=True) if getattr(attack, "graph_safe", True) else run
    out = []
    for xb, yb in diag_lib.batches(x, y, batch_size):
        out.append(fn(tf.convert_to_tensor(xb, tf.float32), tf.convert_to_tensor(yb, tf.int32)).numpy())
    return np.concatenate(out) if out else np.zeros([0], np.float32)


def _jsonable(d):
    return {str(k): v for k, v in d.items()}


def run_analyses(model, data, *, eps: float, pixel_range, out_dir: str,
                 attacks: Optional[Dict[str, Attack]] = None, steps: Sequence[int] = (1, 10, 20, 50, 100),
                 eps_multipliers: Sequence[float] = (1, 2, 4, 8, 16), sweep_steps: int = 20,
                 fosc_step_size: Optional[float] = None, diagnostics=None,
                 num_examples: Optional[int] = None, batch_size: int = 256, seed: int = 0,
                 distribute=None) -> dict:
    """Computes the analyses, writes ``out_dir/analyses.json`` and the PNGs; returns the JSON object.

    Args:
        eps: Linf budget in input units.
        attacks: label -> attack whose outputs get FOSC values; default PGD-k for every k in
            ``steps`` with a fixed step ``fosc_step_size`` (default eps/4), as FOSC Figure 1b.
        diagnostics: a :class:`DiagnosticsReport` whose sweeps are reused for the accuracy plots
            (otherwise the sweeps are run here).
        distribute: a ``tf.distribute.Strategy`` of one process: the gradients, the attacks and
            their FOSC split every model pass over its replicas (:mod:`tfadv.evaluation.sharding`),
            with the numbers of one device; the plotting runs on the host.
    """
    rng = ranges_lib.get_range(pixel_range)
    x, y = diag_lib.as_arrays(data, num_examples)
    os.makedirs(out_dir, exist_ok=True)
    files = {}

    sq, ok = gradient_norms(model, x, y, batch_size=batch_size, distribute=distribute)
    grad_stats = gradient_statistics(sq, ok)
    files["gradient_norms"] = plots.histogram(
        {"all": sq, "correct": sq[ok], "wrong": sq[~ok]}, os.path.join(out_dir, "gradient_norms.png"),
        title="Input-gradient magnitude at test images (BAT Table 2)", xlabel="||grad_x L||^2",
        log10=True)

    if attacks is None:
        step = float(eps) / 4 if fosc_step_size is None else float(fosc_step_size)
        attacks = {f"PGD-{k}": diag_lib.pgd(eps, k, rng, seed, step_size=step) for k in sorted(set(steps))}
    fosc_by_attack = {label: fosc_values(model, a, x, y, eps=eps, batch_size=batch_size,
                                         distribute=distribute)
                      for label, a in attacks.items()}
    files["fosc"] = plots.histogram(fosc_by_attack, os.path.join(out_dir, "fosc.png"),
                                    title=f"FOSC of adversarial examples (eps {eps:.4g})", xlabel="FOSC")

    if diagnostics is not None and diagnostics.sweeps.get("steps") and diagnostics.sweeps.get("eps"):
        sweeps = diagnostics.sweeps
    else:
        specs = {"clean": attacks_lib.get("noop")}
        eps_list = diag_lib.eps_values(eps, eps_multipliers, rng)
        steps_list = sorted({int(k) for k in steps})
        specs.update({f"eps {e:.9g}": diag_lib.pgd(e, sweep_steps, rng, seed) for e in eps_list})
        specs.update({f"steps {k}": diag_lib.pgd(eps, k, rng, seed) for k in steps_list})
        acc = {k: float(v.mean()) for k, v in diag_lib.correctness(
            model, x, y, specs, pixel_range=rng, batch_size=batch_size,
            distribute=distribute).items()}
        sweeps = {"clean_accuracy": acc["clean"], "eps": {e: acc[f"eps {e:.9g}"] for e in eps_list},
                  "steps": {k: acc[f"steps {k}"] for k in steps_list}}
    ks = sorted(sweeps["steps"])
    files["accuracy_vs_steps"] = plots.lines(
        ks, {f"PGD (eps {eps:.4g})": [sweeps["steps"][k] for k in ks]},
        os.path.join(out_dir, "accuracy_vs_steps.png"), title="Accuracy vs PGD steps",
        xlabel="PGD steps", log_x=True, reference={"clean": sweeps["clean_accuracy"]})
    es = sorted(sweeps["eps"])
    files["accuracy_vs_eps"] = plots.lines(
        es, {f"PGD-{sweep_steps}": [sweeps["eps"][e] for e in es]},
        os.path.join(out_dir, "accuracy_vs_eps.png"), title="Accuracy vs eps", xlabel="eps (input units)",
        reference={"clean": sweeps["clean_accuracy"]})

    obj = {
        "num_examples": int(len(x)),
        "eps": float(eps),
        "pixel_range": str(rng),
        "gradient_norm_sq": grad_stats,
        "fosc": {label: summary(v) for label, v in fosc_by_attack.items()},
        "accuracy_vs_steps": _jsonable(sweeps["steps"]),
        "accuracy_vs_eps": _jsonable(sweeps["eps"]),
        "clean_accuracy": sweeps["clean_accuracy"],
        "files": {k: os.path.basename(v) for k, v in files.items()},
    }
    atomic.write_json(os.path.join(out_dir, "analyses.json"), obj)
    return obj


def gradient_table(stats: dict) -> str:
    """BAT Table 2 style Markdown: min/mean/max of ‖∇ₓL‖² per group."""
    rows = ["| ‖∇ₓL‖² | count | min | mean | max |", "|---|---|---|---|---|"]
    for group in ("all", "correct", "wrong"):
        s = stats[group]
        if s["count"]:
            rows.append(f"| {group} | {s['count']} | {s['min']:.3g} | {s['mean']:.3g} | {s['max']:.3g} |")
        else:
            rows.append(f"| {group} | 0 | - | - | - |")
    return "\n".join(rows)
