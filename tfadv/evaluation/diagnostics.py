"""Gradient-masking diagnostics: the checklist of Athalye et al. (2018) and Carlini et al. (2019).

Each check returns a :class:`Diagnostic` record ``{name, status, numbers, message}`` with status
``PASS``, ``WARN`` (a sign of gradient masking or of a broken evaluation) or ``SKIP`` (the check
needs something that is not available: a transfer source model, a registered ``square`` attack).

    eps_sweep       PGD accuracy falls to ~0 as eps grows (eps × {1, 2, 4, 8, 16}, capped at the
                    width of the pixel range) and never rises with eps
    steps_sweep     more PGD steps never raise accuracy (steps {1, 10, 20, 50, 100}; BAT Figure 1)
    transfer        PGD crafted on a source model is weaker than white-box attacks on the model
    square          gradient-free Square is not stronger than the white-box attacks
    fgsm            FGSM accuracy is not above clean accuracy (label leaking)
    zero_gradients  share of examples whose input gradient is exactly zero
    determinism     the same input twice gives the same logits (randomised defenses)

The white-box reference of ``transfer`` and ``square`` is the pointwise worst case of every
white-box attack run here at the base eps: FGSM, the PGD steps sweep, the first eps-sweep point and
PGD on Madry's CW margin with the sweep's largest step count (Square maximises a margin loss, so a
cross-entropy-only reference would make an honest model look masked when CE saturates).
Sizes are in input units (library convention); scripts convert pixel levels first.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import gradients as gradients_lib
from tfadv.attacks.core import Attack, as_model_fn
from tfadv.attacks.transfer import TransferAttack
from tfadv.evaluation import runner, sharding

PASS, WARN, SKIP = "PASS", "WARN", "SKIP"
CHECKS = ("eps_sweep", "steps_sweep", "transfer", "square", "fgsm", "zero_gradients", "determinism")


@dataclasses.dataclass
class Diagnostic:
    name: str
    status: str
    numbers: dict
    message: str

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.message}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DiagnosticsReport:
    records: List[Diagnostic]
    num_examples: int
    sweeps: dict = dataclasses.field(default_factory=dict)  # accuracies behind the sweeps (plots)

    def __getitem__(self, name: str) -> Diagnostic:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"No diagnostic named {name!r}. Received: {name!r}; have "
                       f"{[r.name for r in self.records]}.")

    @property
    def warnings(self) -> List[Diagnostic]:
        return [r for r in self.records if r.status == WARN]

    @property
    def passed(self) -> bool:
        """True when no check warned (SKIP does not count against it)."""
        return not self.warnings

    def lines(self) -> List[str]:
        return [r.line() for r in self.records]

    def to_json(self) -> dict:
        return {"num_examples": self.num_examples, "passed": self.passed,
                "checks": {r.name: r.to_dict() for r in self.records},
                "sweeps": {k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v)
                           for k, v in self.sweeps.items()}}


def as_arrays(data, limit: Optional[int] = None):
    """``(x, y)`` NumPy arrays from an ``(x, y)`` pair or an iterable of batches (first ``limit``)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (tuple, list)) \
            and np.ndim(data[1]) == 1 and np.ndim(data[0]) >= 2 and len(data[0]) == len(data[1]):
        x, y = np.asarray(data[0], np.float32), np.asarray(data[1]).astype(np.int32)
    else:
        xs, ys, n = [], [], 0
        for bx, by in data:
            xs.append(np.asarray(bx, np.float32))
            ys.append(np.asarray(by).astype(np.int32))
            n += len(ys[-1])
            if limit is not None and n >= limit:
                break
        if not xs:
            raise ValueError(f"No examples to diagnose. Received: {data!r}.")
        x, y = np.concatenate(xs), np.concatenate(ys)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise ValueError(f"No examples to diagnose. Received: {len(x)} examples.")
    return x, y


def batches(x, y, batch_size: int):
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def correctness(model, x, y, attacks: Dict[str, Attack], *, pixel_range, batch_size=256,
                distribute=None) -> Dict[str, np.ndarray]:
    """Per-example correctness under each attack (run independently, from the clean input);
    ``distribute``: as :func:`tfadv.evaluation.evaluate`'s."""
    result = runner.evaluate(model, batches(x, y, batch_size), attacks, pixel_range=pixel_range,
                             progress=None, distribute=distribute)
    return {label: r.correct for label, r in result.results.items()}


def pgd(eps, steps, rng, seed, step_size=None):
    return attacks_lib.get("pgd", eps=float(eps), num_steps=int(steps),
                           step_size=2.5 * float(eps) / max(int(steps), 1) if step_size is None
                           else float(step_size), random_start="uniform", pixel_range=rng, seed=seed)


def eps_values(eps: float, multipliers: Sequence[float], rng) -> List[float]:
    """``eps × m`` for each multiplier, capped at the range width, without repeats, ascending."""
    vals = sorted({round(min(float(eps) * float(m), rng.width), 9) for m in multipliers})
    if not vals or vals[0] <= 0:
        raise ValueError(f"The eps sweep needs a positive eps and multipliers. Received: eps={eps}, "
                         f"multipliers={list(multipliers)}.")
    return vals


def _fmt(acc) -> str:
    return f"{100 * acc:.1f}%"


def input_gradients(model, x, y, *, batch_size: int = 256, distribute=None):
    """Per-example ``(‖∇ₓCE‖₂², max|∇ₓCE|, correct)`` in inference mode (NumPy arrays); the
    model passes split over ``distribute``'s replicas (:func:`tfadv.evaluation.sharding.shard`)."""
    model_fn = sharding.shard(as_model_fn(model, False), distribute)

    @tf.function(reduce_retracing=True)
    def grad_fn(xb, yb):
        logits, _, g = gradients_lib.input_gradient(model_fn, gradients_lib.ce_objective, xb, (yb,))
        if g is None:
            g = tf.zeros_like(xb)
        g = tf.reshape(g, [tf.shape(xb)[0], -1])
        pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return tf.reduce_sum(tf.square(g), axis=1), tf.reduce_max(tf.abs(g), axis=1), tf.equal(pred, yb)

    sq, mx, ok = [], [], []
    for xb, yb in batches(x, y, batch_size):
        a, b, c = grad_fn(tf.convert_to_tensor(xb, tf.float32), tf.convert_to_tensor(yb, tf.int32))
        sq.append(a.numpy()); mx.append(b.numpy()); ok.append(c.numpy())
    return np.concatenate(sq), np.concatenate(mx), np.concatenate(ok)


def check_eps_sweep(acc_by_eps: Dict[float, float], *, max_final_accuracy: float, tolerance: float,
                    width: float) -> Diagnostic:
    eps_list = sorted(acc_by_eps)
    accs = [acc_by_eps[e] for e in eps_list]
    rises = [(eps_list[i], eps_list[j]) for j in range(1, len(accs)) for i in range(j)
             if accs[j] > accs[i] + tolerance][:3]
    final = accs[-1]
    numbers = {"eps": eps_list, "accuracy": accs, "final_accuracy": final,
               "max_final_accuracy": max_final_accuracy, "range_width": width}
    text = ", ".join(f"eps {e:.4g}: {_fmt(a)}" for e, a in zip(eps_list, accs))
    if final > max_final_accuracy:
        return Diagnostic("eps_sweep", WARN, numbers,
                          f"PGD accuracy stays at {_fmt(final)} at eps {eps_list[-1]:.4g} (expected "
                          f"<= {_fmt(max_final_accuracy)}): gradients do not lead the attack, a sign of "
                          f"gradient masking [{text}]")
    if rises:
        return Diagnostic("eps_sweep", WARN, numbers,
                          f"accuracy rises with eps ({rises[0][0]:.4g} -> {rises[0][1]:.4g}) [{text}]")
    return Diagnostic("eps_sweep", PASS, numbers, f"accuracy reaches {_fmt(final)} [{text}]")


def check_steps_sweep(acc_by_steps: Dict[int, float], *, tolerance: float) -> Diagnostic:
    steps = sorted(acc_by_steps)
    accs = [acc_by_steps[k] for k in steps]
    rises = [(steps[i], steps[j]) for j in range(1, len(accs)) for i in range(j)
             if accs[j] > accs[i] + tolerance][:3]
    numbers = {"steps": steps, "accuracy": accs, "tolerance": tolerance}
    text = ", ".join(f"{k} steps: {_fmt(a)}" for k, a in zip(steps, accs))
    if rises:
        i, j = rises[0]
        return Diagnostic("steps_sweep", WARN, numbers,
                          f"more PGD steps raise accuracy ({i} -> {j} steps: {_fmt(acc_by_steps[i])} -> "
                          f"{_fmt(acc_by_steps[j])}) [{text}]")
    return Diagnostic("steps_sweep", PASS, numbers, f"accuracy does not rise with steps [{text}]")


def check_weaker(name: str, what: str, acc: float, whitebox: float, tolerance: float) -> Diagnostic:
    numbers = {"accuracy": acc, "whitebox_accuracy": whitebox, "tolerance": tolerance}
    if acc < whitebox - tolerance:
        return Diagnostic(name, WARN, numbers,
                          f"{what} is stronger than the white-box attacks ({_fmt(acc)} < {_fmt(whitebox)}): "
                          f"the white-box gradients are not informative (gradient masking)")
    return Diagnostic(name, PASS, numbers,
                      f"{what} {_fmt(acc)} is not stronger than white-box {_fmt(whitebox)}")


def check_fgsm(fgsm_acc: float, clean_acc: float, tolerance: float) -> Diagnostic:
    numbers = {"fgsm_accuracy": fgsm_acc, "clean_accuracy": clean_acc, "tolerance": tolerance}
    if fgsm_acc > clean_acc + tolerance:
        return Diagnostic("fgsm", WARN, numbers,
                          f"FGSM accuracy {_fmt(fgsm_acc)} is above clean accuracy {_fmt(clean_acc)} "
                          f"(label leaking)")
    return Diagnostic("fgsm", PASS, numbers,
                      f"FGSM accuracy {_fmt(fgsm_acc)} is not above clean {_fmt(clean_acc)}")


def check_zero_gradients(max_abs: np.ndarray, threshold: float) -> Diagnostic:
    zero = max_abs == 0
    share = float(zero.mean()) if zero.size else 0.0
    numbers = {"zero_gradient_share": share, "zero_gradient_examples": int(zero.sum()),
               "threshold": threshold}
    if share > threshold:
        return Diagnostic("zero_gradients", WARN, numbers,
                          f"{_fmt(share)} of the examples have an exactly-zero input gradient "
                          f"(threshold {_fmt(threshold)}): shattered or vanishing gradients")
    return Diagnostic("zero_gradients", PASS, numbers,
                      f"{_fmt(share)} of the examples have an exactly-zero input gradient")


def check_determinism(model, x, *, batch_size: int, rtol: float, atol: float,
                      distribute=None) -> Diagnostic:
    model_fn = sharding.shard(as_model_fn(model, False), distribute)
    worst, changed = 0.0, 0
    for xb, _ in batches(x, np.zeros(len(x)), batch_size):
        a = np.asarray(model_fn(tf.convert_to_tensor(xb)))
        b = np.asarray(model_fn(tf.convert_to_tensor(xb)))
        diff = np.abs(a - b)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        changed += int(np.sum(np.any(diff > atol + rtol * np.abs(a), axis=-1)))
    numbers = {"max_abs_logit_difference": worst, "examples_changed": changed, "rtol": rtol, "atol": atol}
    if changed:
        return Diagnostic("determinism", WARN, numbers,
                          f"the same input twice gives different logits for {changed} examples (max "
                          f"difference {worst:.3g}): a randomised model needs EOT attacks")
    return Diagnostic("determinism", PASS, numbers,
                      f"the same input twice gives the same logits (max difference {worst:.3g})")


def run_diagnostics(model, data, *, eps: float, pixel_range, eps_multipliers=(1, 2, 4, 8, 16),
                    steps=(1, 10, 20, 50, 100), sweep_steps: int = 20, transfer_source=None,
                    zero_grad_threshold: float = 0.05, tolerance: float = 0.01,
                    blackbox_tolerance: float = 0.02,
                    max_final_accuracy: float = 0.05, fgsm_tolerance: float = 0.0,
                    square_params: Optional[dict] = None, checks: Sequence[str] = CHECKS,
                    num_examples: Optional[int] = None, batch_size: int = 256,
                    determinism_rtol: float = 1e-4, determinism_atol: float = 1e-5, seed: int = 0,
                    stream=None, distribute=None) -> DiagnosticsReport:
    """Runs the gradient-masking checklist; returns the records (and prints them to ``stream``).

    Args:
        model: Keras model or logits callable (inference mode).
        data: ``(x, y)`` arrays or an iterable of ``(x, y)`` batches in ``pixel_range``.
        eps: the Linf budget of the evaluation, in input units.
        eps_multipliers / steps: the sweeps; ``sweep_steps``: PGD steps of the eps sweep.
        transfer_source: a Keras model, logits callable or model path (``load_for_evaluation``)
            to craft transfer attacks on; ``None`` skips the transfer check.
        zero_grad_threshold: WARN when more than this share of examples has an all-zero gradient.
        tolerance: accuracy slack (absolute, in [0, 1]) of the sweeps.
        blackbox_tolerance: how much stronger (absolute accuracy) transfer or Square may be than the
            white-box reference before a WARN: two attacks on a few hundred points differ by a point
            or two by chance (a masked model differs by tens of points).
        max_final_accuracy: the eps sweep WARNs when accuracy at its largest eps exceeds this.
        square_params: extra keyword arguments of ``attacks.get("square", ...)``.
        checks: the subset of :data:`CHECKS` to run (others are not reported).
        num_examples: diagnose the first N examples only.
        distribute: a ``tf.distribute.Strategy`` of one process: every pass of the model under
            diagnosis (the attacks', the gradients', the determinism check's) is split over its
            replicas (:mod:`tfadv.evaluation.sharding`), with the records of one device. The
            transfer check's source model runs on the current device.
    """
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"Unknown diagnostics. Expected some of {CHECKS}. Received: {unknown}.")
    rng = ranges_lib.get_range(pixel_range)
    eps = float(eps)
    if not 0 < eps <= rng.width:
        raise ValueError(f"eps must be positive and at most the range width {rng.width:g}, in input "
                         f"units. Received: eps={eps!r}.")
    x, y = as_arrays(data, num_examples)
    records: Dict[str, Diagnostic] = {}

    def emit(record):
        records[record.name] = record
        if stream is not None:
            stream.write(record.line() + "\n")
            stream.flush()

    need_whitebox = any(c in checks for c in ("transfer", "square"))
    specs: Dict[str, Attack] = {"clean": attacks_lib.get("noop")}
    if "fgsm" in checks or need_whitebox:
        specs["fgsm"] = attacks_lib.get("fgsm", eps=eps, pixel_range=rng)
    eps_list = eps_values(eps, eps_multipliers, rng) if "eps_sweep" in checks else []
    for e in eps_list:
        specs[f"eps {e:.9g}"] = pgd(e, sweep_steps, rng, seed)
    steps_list = sorted({int(k) for k in steps}) if ("steps_sweep" in checks or need_whitebox) else []
    if need_whitebox and not steps_list:
        steps_list = [sweep_steps]
    for k in steps_list:
        if k < 1:
            raise ValueError(f"PGD steps of the sweep must be >= 1. Received: {list(steps)}.")
        specs[f"steps {k}"] = pgd(eps, k, rng, seed)
    if need_whitebox:
        # The margin loss of Square (and of AutoAttack's DLR) in white-box form, so that the
        # reference is not weak merely because cross-entropy saturates.
        k = max(steps_list)
        specs[f"cw {k}"] = attacks_lib.get("pgd", eps=eps, num_steps=k, step_size=2.5 * eps / k, loss="cw",
                                           random_start="uniform", pixel_range=rng, seed=seed)
    correct = correctness(model, x, y, specs, pixel_range=rng, batch_size=batch_size,
                          distribute=distribute)
    acc = {k: float(v.mean()) for k, v in correct.items()}
    base_eps = f"eps {eps_list[0]:.9g}" if eps_list and abs(eps_list[0] - eps) < 1e-9 else None
    whitebox = [v for k, v in correct.items()
                if k == "fgsm" or k.startswith(("steps ", "cw ")) or k == base_eps]
    wb_correct = np.logical_and.reduce(whitebox) if whitebox else correct["clean"]
    wb_acc = float(wb_correct.mean())

    if "eps_sweep" in checks:
        emit(check_eps_sweep({e: acc[f"eps {e:.9g}"] for e in eps_list},
                             max_final_accuracy=max_final_accuracy, tolerance=tolerance,
                             width=rng.width))
    if "steps_sweep" in checks:
        emit(check_steps_sweep({k: acc[f"steps {k}"] for k in steps_list}, tolerance=tolerance))
    if "transfer" in checks:
        if transfer_source is None:
            emit(Diagnostic("transfer", SKIP, {}, "no source model given (transfer_source)"))
        else:
            source = transfer_source
            if isinstance(source, str):
                from tfadv.loading import load_for_evaluation

                source, info = load_for_evaluation(source)
                if ranges_lib.get_range(info["pixel_range"]) != rng:
                    raise ValueError(f"The transfer source works in {info['pixel_range']}, the model in "
                                     f"{rng}. Received: transfer_source={transfer_source!r}.")
            k = max(steps_list) if steps_list else sweep_steps
            transfer = TransferAttack(source=source, inner=pgd(eps, k, rng, seed), pixel_range=rng)
            t_correct = correctness(model, x, y, {"transfer": transfer}, pixel_range=rng,
                                    batch_size=batch_size, distribute=distribute)["transfer"]
            rec = check_weaker("transfer", f"transfer PGD-{k} from the source model",
                               float(t_correct.mean()), wb_acc, blackbox_tolerance)
            rec.numbers["steps"] = k
            emit(rec)
    if "square" in checks:
        if "square" not in attacks_lib.ATTACKS:
            emit(Diagnostic("square", SKIP, {}, "the 'square' attack is not registered in tfadv.attacks"))
        else:
            params = {"seed": seed, **(square_params or {})}
            attack = attacks_lib.get("square", eps=eps, pixel_range=rng, **params)
            s_correct = correctness(model, x, y, {"square": attack}, pixel_range=rng,
                                    batch_size=batch_size, distribute=distribute)["square"]
            emit(check_weaker("square", "gradient-free Square", float(s_correct.mean()), wb_acc,
                              blackbox_tolerance))
    if "fgsm" in checks:
        emit(check_fgsm(acc["fgsm"], acc["clean"], fgsm_tolerance))
    if "zero_gradients" in checks:
        _, max_abs, _ = input_gradients(model, x, y, batch_size=batch_size, distribute=distribute)
        emit(check_zero_gradients(max_abs, zero_grad_threshold))
    if "determinism" in checks:
        emit(check_determinism(model, x, batch_size=batch_size, rtol=determinism_rtol,
                               atol=determinism_atol, distribute=distribute))
    ordered = [records[c] for c in CHECKS if c in records]
    sweeps = {"clean_accuracy": acc["clean"], "whitebox_accuracy": wb_acc,
              "eps": {e: acc[f"eps {e:.9g}"] for e in eps_list},
              "steps": {k: acc[f"steps {k}"] for k in steps_list}}
    return DiagnosticsReport(records=ordered, num_examples=int(len(x)), sweeps=sweeps)
