"""Attack specifications for the command line, in pixel units.

Grammar (comma-separated list; parentheses hold parameters)::

    clean                   no attack
    fgsm                    one step of size eps
    pgd-40 | pgd40          PGD on cross-entropy, 40 steps
    cw-20                   PGD on Madry's CW margin (κ=50), 20 steps
    pgd(steps=40,step=2.55,loss=cw,restarts=5,start=uniform,norm=linf,eps=76.5,target=mc)
    pgd(steps=40,early_stop=false)
                            fgsm/pgd/cw stop attacking an example once it is misclassified (or hits
                            its target) and drop it from the remaining steps' forward/backward
                            (``early_stop``, on by default here: a success is never undone, so
                            accuracy can only fall, and frozen examples cost nothing); false
                            reproduces the plain k-step loop
    NAME | NAME-K | NAME(key=value,...)
                            any other attack registered in tfadv.attacks (apgd_ce, square, ...):
                            parameters are passed through to ``tfadv.attacks.get(NAME, ...)``

``eps`` and ``step`` are pixel levels out of 255 (see tfadv.ranges); the default step of PGD-k is
``--step_size`` when given, else 2.5·eps/k. For other registered attacks ``eps`` (default: the global
eps) and ``step``/``step_size`` are converted from pixel levels to input units, ``steps`` (or the K of
``NAME-K``) is passed as ``num_steps``, and every other value is passed as it is (numbers, true/false,
none, or a word). ``pixel_range`` is always passed; ``seed`` when the attack's factory takes one.

Suites (``parse_suite``) are fixed lists; every attack they name must be registered at run time.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Dict, List, Optional

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib

_SHORT = re.compile(r"^(pgd|cw)-?(\d+)$")
_CALL = re.compile(r"^(\w+)\((.*)\)$")
_NAMED = re.compile(r"^(\w+)(?:-(\d+))?$")
_KEYS = {"steps", "step", "eps", "loss", "norm", "start", "restarts", "target", "kappa", "seed",
         "early_stop"}


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


def _integer(key, value, spec):
    """An integral number (``10``, ``10.0``, ``1e1``); ``2.5`` is refused, not truncated."""
    number = _number(key, value, spec)
    if not number.is_integer():
        raise ValueError(f"Attack parameter {key} must be an integer. Received: {value!r} in "
                         f"{spec!r}.")
    return int(number)


def _switch(key, value, spec):
    low = str(value).strip().lower()
    if low not in ("true", "false"):
        raise ValueError(f"Attack parameter {key} must be true or false. Received: {value!r} in "
                         f"{spec!r}.")
    return low == "true"


def parse(spec: str, *, eps: float, pixel_range, step_size: Optional[float] = None,
          seed: Optional[int] = None) -> AttackSpec:
    """Turns one spec into an attack. ``eps``/``step_size`` are pixel levels out of 255."""
    rng = ranges_lib.get_range(pixel_range)
    raw = spec.strip()
    s = raw.lower()
    if s in ("clean", "noop", "none"):
        return AttackSpec("clean", attacks_lib.get("noop"), {"attack": "noop"})
    if s == "fgsm":
        return AttackSpec("FGSM", attacks_lib.get("fgsm", eps=rng.from_pixels(eps), pixel_range=rng,
                                                  early_stop=True),
                          {"attack": "fgsm", "eps": eps, "early_stop": True})
    params, given = {}, set()
    m = _SHORT.match(s)
    if m:
        params = {"loss": "ce" if m.group(1) == "pgd" else "cw", "steps": m.group(2)}
    else:
        m = _CALL.match(s)
        if not m or m.group(1) not in ("pgd", "fgsm"):
            return _parse_registered(raw, eps=eps, rng=rng, step_size=step_size, seed=seed)
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
            if key in given:
                raise ValueError(f"Attack parameter given twice. Received: {key!r} in {spec!r}.")
            given.add(key)
            params[key] = value
    a_eps = ranges_lib.check_pixel_size(_number("eps", params.get("eps", eps), spec), name="eps")
    steps = _integer("steps", params.get("steps", 10), spec)
    step = params.get("step", step_size)
    step_px = a_eps if (step is None and steps == 1 and params.get("start") == "none") else (
        2.5 * a_eps / max(steps, 1) if step is None else _number("step", step, spec))
    ranges_lib.check_pixel_size(step_px, name="step_size", allow_subpixel=True)
    loss = params.get("loss", "ce")
    target = params.get("target")
    kwargs = dict(eps=rng.from_pixels(a_eps), step_size=rng.from_pixels(step_px), num_steps=steps,
                  loss=loss, norm=params.get("norm", "linf"), random_start=params.get("start", "uniform"),
                  restarts=_integer("restarts", params.get("restarts", 1), spec),
                  target=None if target in (None, "none") else target, pixel_range=rng,
                  seed=_integer("seed", params["seed"], spec) if "seed" in params else seed,
                  early_stop=_switch("early_stop", params.get("early_stop", "true"), spec))
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
    if not kwargs["early_stop"]:
        extras.append("no early stop")
    if extras:
        label += " (" + ", ".join(extras) + ")"
    return AttackSpec(label, attack, {"attack": "pgd", "eps_pixels": a_eps, "step_pixels": step_px, **{
        k: v for k, v in kwargs.items() if k not in ("pixel_range", "eps", "step_size")}})


# Display names of the attacks other engineers register (labels of the report's columns).
DISPLAY_NAMES = {
    "apgd_ce": "APGD-CE", "apgd_dlr": "APGD-DLR", "apgd_t": "APGD-T", "fab_t": "FAB-T",
    "fab": "FAB", "square": "Square", "cw_l2": "CW-L2", "deepfool": "DeepFool", "mifgsm": "MI-FGSM",
    "cw_linf": "CW-Linf", "transfer": "Transfer", "autoattack": "AutoAttack",
    "autoattack_fast": "AutoAttack-fast", "a3": "A3",
}
_PIXEL_KEYS = {"eps": "eps", "step": "step_size", "step_size": "step_size"}
_RENAMED = {"steps": "num_steps"}


def _value(text: str, keep_case: bool):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text if keep_case else low


def _factory_accepts(name: str, key: str) -> bool:
    """True when the registered factory names ``key`` explicitly in its signature."""
    try:
        params = inspect.signature(attacks_lib.ATTACKS.lookup(name)).parameters
    except (TypeError, ValueError):
        return False
    return key in params


def _parse_registered(raw: str, *, eps: float, rng, step_size: Optional[float],
                      seed: Optional[int]) -> AttackSpec:
    """``NAME``, ``NAME-K`` or ``NAME(key=value,...)`` for any attack in tfadv.attacks' registry."""
    m = _CALL.match(raw)
    if m:
        name, body, steps = m.group(1).lower(), m.group(2), None
    else:
        m = _NAMED.match(raw)
        if not m:
            raise ValueError("Unknown attack spec. Expected clean, fgsm, pgd-K, cw-K, pgd(key=value,...) "
                             f"or a registered attack NAME, NAME-K or NAME(key=value,...). Received: {raw!r}.")
        name, body, steps = m.group(1).lower(), "", m.group(2)
    if name not in attacks_lib.ATTACKS:
        raise ValueError(f"Unknown attack {name!r}. Expected clean, fgsm, pgd-K, cw-K or one of the "
                         f"registered attacks: {', '.join(attacks_lib.names())}. Received: {raw!r}.")
    given = {}
    if steps is not None:
        given["steps"] = steps
    for item in filter(None, (p.strip() for p in body.split(","))):
        if "=" not in item:
            raise ValueError(f"Attack parameters are key=value. Received: {item!r} in {raw!r}.")
        key, value = (t.strip() for t in item.split("=", 1))
        key = key.lower()
        if not re.match(r"^[a-z_]\w*$", key):
            raise ValueError(f"Attack parameter names are identifiers. Received: {key!r} in {raw!r}.")
        if key in given or _RENAMED.get(key, key) in {_RENAMED.get(k, k) for k in given}:
            raise ValueError(f"Attack parameter given twice. Received: {key!r} in {raw!r}.")
        given[key] = value
    a_eps = ranges_lib.check_pixel_size(_number("eps", given.pop("eps", eps), raw), name="eps")
    kwargs = {"eps": rng.from_pixels(a_eps), "pixel_range": rng}
    record = {"attack": name, "eps_pixels": a_eps}
    step, extras = None, []
    for key in ("step", "step_size"):
        if key in given:
            step = ranges_lib.check_pixel_size(_number(key, given.pop(key), raw), name="step_size",
                                               allow_subpixel=True)
    if step is None and step_size is not None and _factory_accepts(name, "step_size"):
        step = float(step_size)
    if step is not None:
        kwargs["step_size"] = rng.from_pixels(step)
        record["step_pixels"] = step
        if step_size is None or step != float(step_size):
            extras.append(f"step {step:g}")
    for key, value in given.items():
        target = _RENAMED.get(key, key)
        kwargs[target] = _value(value, keep_case="path" in key or "source" in key)
        record[target] = kwargs[target]
        if target != "num_steps":
            extras.append(f"{key} {value}")
    if "seed" not in kwargs and seed is not None and _factory_accepts(name, "seed"):
        kwargs["seed"] = seed
    attack = attacks_lib.get(name, **kwargs)
    label = DISPLAY_NAMES.get(name, name)
    if "num_steps" in kwargs:
        label += f"-{kwargs['num_steps']}"
    if a_eps != eps:
        extras.append(f"eps {a_eps:g}")
    if extras:
        label += " (" + ", ".join(extras) + ")"
    return AttackSpec(label, attack, record)


SUITES = {
    # The standard AutoAttack ensemble (APGD-CE → APGD-T → FAB-T → Square) after the clean pass.
    "autoattack": ("clean", "autoattack"),
    # Issue 20: A3 (ADI + OSD) then Square-1000, at a fraction of AutoAttack's passes
    # (tfadv.attacks.a3; measured in docs/results.md). Not AutoAttack's number: a separate row.
    "autoattack-fast": ("clean", "autoattack_fast"),
    # What the five papers evaluate with: BAT (FGSM, CE-k, CW-k PGD), TRADES (PGD, DeepFool, MI-FGSM),
    # FOSC (C&W-inf = PGD on the CW loss for 30 steps); DeepFool in its Linf form as TRADES Table 5.
    "paper": ("clean", "fgsm", "pgd-20", "pgd-100", "cw-20", "cw_linf(steps=30)", "mifgsm",
              "deepfool(norm=linf)"),
}
# BAT ICCV Table 9 (sec. 5 "Evaluation"): eps 16, non-targeted ("nt") and uniformly random-targeted
# ("rd") PGD on cross-entropy, 10 steps of 1.6 and 100 steps of 1 pixel, random start. Each column
# is its own attack: run with only_robust off (--only_robust=false) to report them side by side.
SUITES["bat_imagenet"] = ("clean", "pgd(steps=10,step=1.6,eps=16)", "pgd(steps=100,step=1,eps=16)",
                          "pgd(steps=10,step=1.6,eps=16,target=random)",
                          "pgd(steps=100,step=1,eps=16,target=random)")
# AutoAttack right after the clean pass, so that its accuracy is the standard (exact) AutoAttack
# number even when later attacks run only on the points it left robust.
SUITES["full"] = ("clean", "autoattack") + SUITES["paper"][1:] + ("apgd_ce", "apgd_t", "fab_t", "square")


def _spec_attack_name(item: str) -> str:
    s = item.strip().lower()
    m = _SHORT.match(s)
    if m or s in ("clean", "noop", "none", "fgsm"):
        return "pgd" if m else ("noop" if s != "fgsm" else "fgsm")
    m = _CALL.match(s) or _NAMED.match(s)
    return m.group(1) if m else s


def suite_attack_names(suite: str) -> List[str]:
    """The registry names a suite needs (ValueError for an unknown suite)."""
    key = (suite or "").strip().lower()
    if key not in SUITES:
        raise ValueError(f"Unknown suite. Expected one of {sorted(SUITES)}. Received: {suite!r}.")
    return list(dict.fromkeys(_spec_attack_name(item) for item in SUITES[key]))


def parse_suite(suite: str, **kwargs) -> Dict[str, AttackSpec]:
    """The specs of a named suite (``autoattack``, ``paper`` or ``full``); same kwargs as ``parse``.

    Raises ValueError naming every attack of the suite that is not registered in tfadv.attacks.
    """
    missing = [n for n in suite_attack_names(suite) if n not in attacks_lib.ATTACKS]
    if missing:
        raise ValueError(
            f"Suite '{suite.strip().lower()}' needs attacks that are not registered in tfadv.attacks: "
            f"{', '.join(missing)} (registered: {', '.join(attacks_lib.names())}). Received: "
            f"suite={suite!r}.")
    return parse_list(",".join(SUITES[suite.strip().lower()]), **kwargs)


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
