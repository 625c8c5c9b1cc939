"""Free AT's recipes (Shafahi et al., NeurIPS 2019; the TF release ashafahi/free_adv_train): the
``free_cifar10`` and ``free_mnist`` presets in pixel levels of [0,1], the replays m, and
:func:`training`, which builds the defense's keyword arguments (input units) once.

Epochs count replays. ``--epochs`` is the paper's budget in passes over the data where every replay
of a batch counts (optimizer steps / batches per pass): a run replays each batch m times per Keras
epoch and so runs ``ceil(epochs / m)`` Keras epochs, as the PyTorch release's ``ceil(90 / m)``. The
LR boundaries (in the same passes) and every other schedule follow the optimizer's iterations,
which count replays, as the TF release's 40k/60k of 80k replay steps.

CIFAR-10 (the TF release's ``config.json``): Madry's WRN (``madry_wrn34``, 5 units per stage, the
release's "WRN-32-10"), m = 8, ε = step = 8, batch 128, 80k replay steps = 205 passes, SGD 0.1
momentum 0.9, ×0.1 at 40k/60k steps (passes 102/154), weight decay 2e-4 on kernels (``l2_loss``).
MNIST has no release: ``free_mnist`` is Madry's ``mnist`` preset (its CNN, Adam 1e-4, batch 50, 83
passes) trained with m = 4 and ε = step = 0.3 (the issue's setting), and δ projected so that x + δ
stays in [0,1] (``delta_range="project"``, Wong et al.'s Free AT release) rather than x + δ
clipped: on MNIST's zero background the clip freezes every δ that once stepped below the range
(docs/results.md, issue 21 on MNIST: 3.80% PGD-20 clipped, 78.00% projected).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.defenses.free import DELTA_RANGES, check_delta_range
from tfadv.recipes import base

_LEVELS = ranges_lib.PIXEL_LEVELS
CIFAR_REPLAYS = 8
MNIST_REPLAYS = 4
#: preset name -> δ's range handling where it is not "clip" (tfadv.defenses.free.DELTA_RANGES).
PRESET_DELTA_RANGES = {"free_mnist": "project"}


def _presets():
    cifar = dataclasses.replace(base.get("cifar10"), step_size=8.0, num_steps=1)
    mnist = dataclasses.replace(base.get("mnist"), eps=0.3 * _LEVELS, step_size=0.3 * _LEVELS,
                                num_steps=1)
    return {"free_cifar10": (cifar, CIFAR_REPLAYS, "the TF release's config.json (WRN, m = 8)"),
            "free_mnist": (mnist, MNIST_REPLAYS, "tfadv's: Madry's mnist preset with m = 4")}


#: preset name -> (Preset, m, source).
FREE_PRESETS = _presets()


def defense_kwargs(pixel_range="[0,1]") -> dict:
    """Keyword arguments of :func:`tfadv.defenses.free.free` for the CIFAR-10 release: ε = step =
    8 pixel levels of ``pixel_range`` (input units), m = 8, batch 128."""
    eps = base.to_input(8.0, pixel_range)
    return {"eps": eps, "step_size": eps, "replays": CIFAR_REPLAYS, "batch_size": 128,
            "pixel_range": pixel_range}


def script_preset(dataset: str, data_dir: Optional[str] = None) -> str:
    """The preset of ``--dataset``: ``free_<name>`` for CIFAR-10 and MNIST (npz files matched by
    image shape), else the dataset's own preset."""
    return base.paper_preset_name("free", FREE_PRESETS, base.dataset_preset(dataset, data_dir))


def preset_replays(name: Optional[str]) -> int:
    """m of a Free AT preset (the CIFAR release's 8 for any other preset)."""
    return base.paper_setting(FREE_PRESETS, name, 1, CIFAR_REPLAYS)


def preset_delta_range(name: Optional[str]) -> str:
    """How a Free AT preset's δ meets the pixel range (:data:`DELTA_RANGES`; "clip", the Shafahi
    et al. releases', for any other preset)."""
    return PRESET_DELTA_RANGES.get(name, "clip")


def training(cfg, *, replays: Optional[int] = None, preset: Optional[str] = None,
             step_size_given: bool = True, delta_range: Optional[str] = None):
    """(run configuration, free kwargs) for the resolved ``cfg`` (pixel levels): ε = ``cfg.eps``,
    the perturbation step ``cfg.step_size`` (ε when ``step_size_given`` is False), m = ``replays``
    (None: ``preset``'s), the global batch ``cfg.batch_size``, δ's range handling ``delta_range``
    (None: ``preset``'s); in input units, built once. The returned configuration records the step
    actually used, one step per replay, no random start."""
    if cfg.norm != "linf":
        raise ValueError(f"Free AT is an Linf method (signed steps). Received: norm={cfg.norm!r}.")
    replays = checks.check_int(preset_replays(preset) if replays is None else replays,
                               "--replays (Free AT's m)", 1)
    delta_range = check_delta_range(preset_delta_range(preset) if delta_range is None
                                    else delta_range)
    step = cfg.step_size if step_size_given else cfg.eps
    kwargs = {"attack": attacks_lib.get("noop"), "eps": base.to_input(cfg.eps, cfg.pixel_range),
              "step_size": base.to_input(step, cfg.pixel_range), "replays": replays,
              "batch_size": cfg.batch_size, "pixel_range": cfg.pixel_range,
              "delta_range": delta_range}
    cfg = dataclasses.replace(cfg, step_size=round(float(step), 6), num_steps=1,
                              random_start="none")
    return cfg, kwargs


def _register_presets():
    for name, (preset, _, _) in FREE_PRESETS.items():
        base.register(name, preset)


_register_presets()
