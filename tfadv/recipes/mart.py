"""MART's recipe (Wang et al., ICLR 2020; the release's ``train_wideresnet.py``): the
``mart_cifar10`` preset in pixel levels of [0,1], β, and :func:`training`, which builds the training
attack (input units) once.

The release trains WRN-34-10 for 90 epochs with SGD 0.1 (momentum 0.9, weight decay 7e-4) and
multiplies the LR by 0.1 from its 1-based epoch 75 and by 0.01 from 90 (tfadv's 0-based epochs 74
and 89). It has no MNIST setting; other datasets use their own preset with β = 6.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfadv import ranges as ranges_lib
from tfadv.defenses import mart as mart_lib
from tfadv.recipes import base

# The release's CIFAR-10 attack: ε = 0.031 ≈ 8/255 (as TRADES' recipe counts it), step 0.007 =
# 1.785/255, K = 10, CE from x + 0.001·N(0, I); PGD-20 evaluation with step ε/10.
CIFAR_EPS_PIXELS = 8.0
CIFAR_STEP_PIXELS = 0.007 * ranges_lib.PIXEL_LEVELS  # 1.785
BETA = mart_lib.BETA

_CIFAR10 = base.Preset(
    model="trades_wrn34_10", pixel_range="[0,1]", eps=CIFAR_EPS_PIXELS,
    step_size=CIFAR_STEP_PIXELS, num_steps=mart_lib.NUM_STEPS, epochs=90, batch_size=128,
    optimizer="sgd", lr=0.1, lr_boundaries=(74, 89), momentum=0.9, weight_decay=7e-4,
    eval_attacks="clean,fgsm,pgd-20,cw-20", eval_step_size=CIFAR_EPS_PIXELS / 10)

#: preset name -> (Preset, β, source).
MART_PRESETS = {"mart_cifar10": (_CIFAR10, BETA, "the release's train_wideresnet.py (WRN-34-10)")}


def defense_kwargs(pixel_range="[0,1]", *, seed: Optional[int] = None) -> dict:
    """Keyword arguments of :func:`tfadv.defenses.mart.mart` for the release's CIFAR-10 setting:
    the CE PGD at ε = 8 and step 1.785 pixel levels of ``pixel_range`` (input units), K = 10, from
    x + 0.001·N(0, I), built once, and β = 6."""
    return {"attack": mart_lib.mart_attack(
        eps=base.to_input(CIFAR_EPS_PIXELS, pixel_range),
        step_size=base.to_input(CIFAR_STEP_PIXELS, pixel_range), pixel_range=pixel_range,
        seed=seed), "beta": BETA}


def script_preset(dataset: str, data_dir: Optional[str] = None) -> str:
    """The preset of a training command's ``--dataset``: ``mart_cifar10`` for CIFAR-10 (and 32x32
    npz files), else the dataset's own preset."""
    return base.paper_preset_name("mart", MART_PRESETS, base.dataset_preset(dataset, data_dir))


def preset_beta(name: Optional[str]) -> float:
    """β of a MART preset (the release's 6.0 for any other preset)."""
    entry = MART_PRESETS.get(str(name).lower()) if name is not None else None
    return entry[1] if entry is not None else BETA


def training(cfg, *, beta: Optional[float] = None, random_start: Optional[str] = None,
             preset: Optional[str] = None):
    """(run configuration, mart kwargs) for the resolved ``cfg`` (pixel levels): the CE PGD at
    ``cfg.eps``/``cfg.step_size``/``cfg.num_steps``/``cfg.norm`` from ``random_start`` (None: the
    release's Gaussian start), built once in input units, and β (None: ``preset``'s, else 6). The
    returned configuration records the start actually used."""
    beta = preset_beta(preset) if beta is None else beta
    random_start = "gaussian" if random_start is None else random_start
    attack = mart_lib.mart_attack(
        eps=base.to_input(cfg.eps, cfg.pixel_range),
        step_size=base.to_input(cfg.step_size, cfg.pixel_range), num_steps=cfg.num_steps,
        norm=cfg.norm, pixel_range=cfg.pixel_range, random_start=random_start, seed=cfg.seed)
    return (dataclasses.replace(cfg, random_start=random_start),
            {"attack": attack, "beta": mart_lib.check_beta(beta)})


def _register_presets():
    for name, (preset, _, _) in MART_PRESETS.items():
        base.register(name, preset)


_register_presets()
