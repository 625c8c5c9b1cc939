"""Attack specifications for the command line, in pixel units.

Grammar (comma-separated list; parentheses hold parameters)::

    clean                   no attack
    fgsm                    one step of size eps
    pgd-40 | pgd40          PGD on cross-entropy, 40 steps
    cw-20                   PGD on Madry's CW margin (κ=50), 20 steps
    pgd(steps=40,step=2.55,loss=cw,restarts=5,start=uniform,norm=linf,eps=76.5,target=mc)

``eps`` and ``step`` are pixel levels out of 255 (see tfadv.ranges); the default step of PGD-k is
``--step_size`` when given, else 2.5·eps/k.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib

_SHORT = re.compile(r"^(pgd|cw)-?(\d+)$")
_CALL = re.compile(r"^(\w+)\((.*)\)$")
_KEYS = {"steps", "step", "eps", "loss", "norm", "start", "restarts", "target", "kappa", "seed"}


@dataclasses.dataclass
class AttackSpec:
    label: str
    attack: attacks_lib.Attack
    params: dict


def split_specs(text: str) -> List[str]:
    """Splits on commas that are not inside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if depth != 0:
        raise ValueError(f"Unbalanced parentheses in the attack list. Received: {text!r}.")
    if cur.strip():
        out.append(cur.strip())
    return [s for s in out if s]


def _number(key, value, spec):
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Attack parameter {key} must be a number. Received: {value!r} in {spec!r}.") from None


def parse(spec: str, *, eps: float, pixel_range, step_size: Optional[float] = None,
          seed: Optional[int] = None) -> AttackSpec:
    """Turns one spec into an attack. ``eps``/``step_size`` are pixel levels out of 255."""
    rng = ranges_lib.get_range(pixel_range)
    s = spec.strip().lower()
    if s in ("clean", "noop", "none"):
        return AttackSpec("clean", attacks_lib.get("noop"), {})
    if s == "fgsm":
        return AttackSpec("FGSM", attacks_lib.get("fgsm", eps=rng.from_pixels(eps), pixel_range=rng),
                          {"eps": eps})
    params = {}
    m = _SHORT.match(s)
    if m:
        params = {"loss": "ce" if m.group(1) == "pgd" else "cw", "steps": m.group(2)}
    else:
        m = _CALL.match(s)
        if not m or m.group(1) not in ("pgd", "fgsm"):
            raise ValueError("Unknown attack spec. Expected clean, fgsm, pgd-K, cw-K or "
                             f"pgd(key=value,...). Received: {spec!r}.")
        if m.group(1) == "fgsm":
            params["steps"] = "1"
            params["step"] = None
            params["start"] = "none"
        for item in filter(None, (p.strip() for p in m.group(2).split(","))):
            if "=" not in item:
                raise ValueError(f"Attack parameters are key=value. Received: {item!r} in {spec!r}.")
            key, value = (t.strip() for t in item.split("=", 1))
            if key not in _KEYS:
                raise ValueError(f"Unknown attack parameter. Expected one of {sorted(_KEYS)}. "
                                 f"Received: {key!r} in {spec!r}.")
            params[key] = value
    a_eps = ranges_lib.check_pixel_size(_number("eps", params.get("eps", eps), spec), name="eps")
    steps = int(_number("steps", params.get("steps", 10), spec))
    step = params.get("step", step_size)
    step_px = a_eps if (step is None and steps == 1 and params.get("start") == "none") else (
        2.5 * a_eps / max(steps, 1) if step is None else _number("step", step, spec))
    ranges_lib.check_pixel_size(step_px, name="step_size", allow_subpixel=True)
    loss = params.get("loss", "ce")
    target = params.get("target")
    kwargs = dict(eps=rng.from_pixels(a_eps), step_size=rng.from_pixels(step_px), num_steps=steps,
                  loss=loss, norm=params.get("norm", "linf"), random_start=params.get("start", "uniform"),
                  restarts=int(_number("restarts", params.get("restarts", 1), spec)),
                  target=None if target in (None, "none") else target, pixel_range=rng,
                  seed=int(params["seed"]) if "seed" in params else seed)
    if "kappa" in params:
        kwargs["kappa"] = _number("kappa", params["kappa"], spec)
    attack = attacks_lib.get("pgd", **kwargs)
    label = {"ce": "PGD", "cw": "CW", "kl": "KL"}.get(loss, loss.upper()) + f"-{steps}"
    extras = []
    if "step" in params and params["step"] is not None:
        extras.append(f"step {step_px:g}")
    if kwargs["restarts"] > 1:
        extras.append(f"{kwargs['restarts']} restarts")
    if kwargs["target"]:
        extras.append(f"target {kwargs['target']}")
    if kwargs["norm"] != "linf":
        extras.append(kwargs["norm"])
    if kwargs["random_start"] != "uniform":
        extras.append(f"start {kwargs['random_start']}")
    if a_eps != eps:
        extras.append(f"eps {a_eps:g}")
    if extras:
        label += " (" + ", ".join(extras) + ")"
    return AttackSpec(label, attack, {"eps_pixels": a_eps, "step_pixels": step_px, **{
        k: v for k, v in kwargs.items() if k not in ("pixel_range", "eps", "step_size")}})


def parse_list(text: str, **kwargs) -> Dict[str, AttackSpec]:
    specs = {}
    for item in split_specs(text):
        spec = parse(item, **kwargs)
        if spec.label in specs:
            raise ValueError(f"Attack listed twice. Received: {item!r}.")
        specs[spec.label] = spec
    if not specs:
        raise ValueError(f"No attack given. Received: {text!r}.")
    return specs
