"""L2L-DA's recipes (Jang et al., sec. 5.1 and the release's run commands): the l2lda_<dataset>
presets with their λ (:data:`L2LDA_PRESETS`), in pixel levels of [0,1], and :func:`training`, which
turns a resolved configuration into the keyword arguments of :func:`tfadv.defenses.l2lda.l2lda`
(input units), building the validation attack once.

100k iterations of batch 100 are 167 epochs of MNIST's 60k training images and 200 of CIFAR-10's
50k; the release's StepLR(max_step // 2, 0.1) is the boundary at half of them (0-based epochs 83 and
100).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib
from tfadv.defenses import l2lda as l2lda_lib
from tfadv.recipes import base

# Sec. 5.1: ε = 0.3 (MNIST) and 8/255 (CIFAR-10) of [0,1], in pixel levels; ε_step = ε/4; T = 10.
EPS_PIXELS = {"mnist": 0.3 * ranges_lib.PIXEL_LEVELS, "cifar10": 8.0}
_EPS = EPS_PIXELS
_FRACTION = l2lda_lib.STEP_FRACTION
_MNIST = base.Preset(
    model="lenet5", pixel_range="[0,1]", eps=_EPS["mnist"], step_size=_FRACTION * _EPS["mnist"],
    num_steps=l2lda_lib.NUM_STEPS, epochs=167, batch_size=100, optimizer="sgd", lr=0.01,
    lr_boundaries=(83,), lr_decay=0.1, momentum=0.9, weight_decay=l2lda_lib.WEIGHT_DECAY,
    eval_attacks="clean,fgsm,pgd-10,pgd-100,cw-100", eval_step_size=_FRACTION * _EPS["mnist"])
_CIFAR10 = base.Preset(
    model="resnet20_cifar", pixel_range="[0,1]", eps=_EPS["cifar10"],
    step_size=_FRACTION * _EPS["cifar10"], num_steps=l2lda_lib.NUM_STEPS, epochs=200,
    batch_size=100, optimizer="sgd", lr=0.01, lr_boundaries=(100,), lr_decay=0.1, momentum=0.9,
    weight_decay=l2lda_lib.WEIGHT_DECAY, eval_attacks="clean,fgsm,pgd-10,pgd-100,cw-100",
    eval_step_size=_FRACTION * _EPS["cifar10"])


def _digits_preset():
    # The offline digits default (tfadv's digits preset: eps 25.5, step eps/4) with T = 10 and the
    # release's weight decay.
    return dataclasses.replace(base.get("digits"), num_steps=l2lda_lib.NUM_STEPS,
                               weight_decay=l2lda_lib.WEIGHT_DECAY)


#: preset name -> (λ, source). digits are grayscale digits like MNIST: MNIST's λ.
L2LDA_PRESETS = {"l2lda_mnist": (l2lda_lib.LAMBDA["mnist"], "sec. 5.1 / the release's MNIST command"),
                 "l2lda_cifar10": (l2lda_lib.LAMBDA["cifar10"],
                                   "sec. 5.1 / the release's CIFAR command"),
                 "l2lda_digits": (l2lda_lib.LAMBDA["mnist"], "digits: MNIST's lambda")}


def script_preset(dataset: str, data_dir: Optional[str] = None) -> str:
    """The preset of a training command's ``--dataset``: ``l2lda_<name>`` for the paper's datasets
    (npz files matched by image shape), else the dataset's own preset."""
    return preset_name(base.dataset_preset(dataset, data_dir))


def preset_name(dataset: str) -> str:
    """``l2lda_<dataset>`` for mnist, cifar10 and digits, else the dataset's own preset."""
    return base.paper_preset_name("l2lda", L2LDA_PRESETS, dataset)


def preset_lambda(name: Optional[str], default: float = l2lda_lib.LAMBDA["cifar10"]) -> float:
    """λ of an L2L-DA preset (``default`` for any other preset)."""
    entry = L2LDA_PRESETS.get(str(name).lower()) if name is not None else None
    return entry[0] if entry is not None else default


def defense_kwargs(dataset: str = "cifar10", pixel_range="[0,1]") -> dict:
    """Keyword arguments of :func:`tfadv.defenses.l2lda.l2lda` for the paper's setting of
    ``dataset`` (``mnist``, ``cifar10``; sec. 5.1): ε (:data:`EPS_PIXELS`) in input units of
    ``pixel_range`` and λ; ε_step = ε/4, T = 10 and the validation PGD are the defense's defaults."""
    if dataset not in EPS_PIXELS:
        raise ValueError(f"L2L-DA's paper sets eps for {sorted(EPS_PIXELS)}. "
                         f"Received: dataset={dataset!r}.")
    return {"eps": base.to_input(EPS_PIXELS[dataset], pixel_range),
            "lam": l2lda_lib.LAMBDA[dataset], "pixel_range": pixel_range}


def training(cfg, **generator_options) -> dict:
    """The l2lda kwargs of the resolved ``cfg`` (pixel levels): the generator's ε, ε_step and T
    (``cfg.eps``, ``cfg.step_size``, ``cfg.num_steps``) in input units, and the validation attack,
    the paper's PGD-10 (step ε/4, uniform random start) whatever T is, built once.
    ``generator_options`` are :func:`tfadv.defenses.l2lda.l2lda`'s other arguments (λ, switches)."""
    eps = base.to_input(cfg.eps, cfg.pixel_range)
    validation = attacks_lib.IterativeAttack(
        eps=eps, step_size=_FRACTION * eps, num_steps=l2lda_lib.NUM_STEPS, random_start="uniform",
        pixel_range=cfg.pixel_range, name=f"pgd-{l2lda_lib.NUM_STEPS}")
    return {"attack": validation, "eps": eps, "step_size": base.to_input(cfg.step_size, cfg.pixel_range),
            "num_steps": cfg.num_steps, **generator_options, "pixel_range": validation.pixel_range,
            "seed": cfg.seed}


def _register_presets():
    for name, factory in (("l2lda_mnist", lambda: _MNIST), ("l2lda_cifar10", lambda: _CIFAR10),
                          ("l2lda_digits", _digits_preset)):
        base.register(name, factory)


_register_presets()
