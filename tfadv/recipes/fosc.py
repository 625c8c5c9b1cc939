"""The FOSC paper's recipes (Wang et al., ICML 2019, sec. 5.1), shared by Dynamic adversarial
training and its Curriculum baseline: the fosc_mnist / fosc_cifar10 presets (pixel levels of
[0,1]) and T′ per preset. Both defenses train against the PGD of the resolved configuration
(:func:`tfadv.recipes.base.pgd_attack`): 10 steps of ε/4 from a uniform random start; SGD 0.01
momentum 0.9, weight decay 1e-4 (c·Σ½‖W‖², PyTorch weight_decay=1e-4), batch 128 (release).
"""

from __future__ import annotations

from typing import Optional

from tfadv.defenses import dynamic as dynamic_lib
from tfadv.recipes import base

FOSC_PAPER_T_PRIME = {"fosc_mnist": 40, "fosc_cifar10": 100}
# Sec. 5.1's CIFAR-10 radius in pixel levels of [0,1] (8/255); the step is ε/4, 10 steps.
CIFAR_EPS_PIXELS = 8.0
NUM_STEPS = 10


def defense_kwargs(pixel_range="[0,1]") -> dict:
    """Keyword arguments of :func:`tfadv.defenses.dynamic.dynamic` and
    :func:`tfadv.defenses.curriculum.curriculum` for the paper's CIFAR-10 setting: the PGD of
    :func:`tfadv.defenses.dynamic.paper_attack` at ε = 8 pixel levels of ``pixel_range`` (input
    units), step ε/4, 10 steps from a uniform random start, built once."""
    return {"attack": dynamic_lib.paper_attack(eps=base.to_input(CIFAR_EPS_PIXELS, pixel_range),
                                               num_steps=NUM_STEPS, pixel_range=pixel_range)}


def paper_preset(dataset_preset: str) -> Optional[str]:
    """``fosc_<name>`` for the datasets of the paper (``mnist``, ``cifar10``), else None."""
    name = f"fosc_{dataset_preset}"
    return name if name in FOSC_PAPER_T_PRIME else None


def default_t_prime(preset: Optional[str], epochs: int) -> float:
    """T′ of the paper for its presets; elsewhere 0.8·T rounded (T′ = 40 of 50 and 100 of 120 in
    the paper: "slightly smaller than total epochs T"), at least 1."""
    if preset in FOSC_PAPER_T_PRIME:
        return FOSC_PAPER_T_PRIME[preset]
    return max(1, int(round(0.8 * epochs)))


def script_preset(dataset: str, data_dir: Optional[str] = None) -> Optional[str]:
    """The FOSC paper's preset for a script's ``--dataset`` (``mnist``, ``cifar10`` and npz files of
    their image shapes), or None to use the dataset's own preset."""
    try:
        name = base.dataset_preset(dataset, data_dir)
    except ValueError:
        return None
    return paper_preset(name.lower())


def _register_presets():
    base.register("fosc_mnist", base.Preset(
        model="fosc_mnist_cnn", pixel_range="[0,1]", eps=76.5, step_size=19.125,
        num_steps=NUM_STEPS, epochs=50, batch_size=128, optimizer="sgd", lr=0.01, lr_boundaries=(20, 40),
        momentum=0.9, weight_decay=1e-4, eval_attacks="clean,fgsm,pgd-10,pgd-20,cw_linf",
        eval_step_size=19.125))
    base.register("fosc_cifar10", base.Preset(
        model="fosc_cifar_cnn", pixel_range="[0,1]", eps=CIFAR_EPS_PIXELS,
        step_size=CIFAR_EPS_PIXELS / 4, num_steps=NUM_STEPS, epochs=120, batch_size=128, optimizer="sgd", lr=0.01, lr_boundaries=(60, 100),
        momentum=0.9, weight_decay=1e-4, eval_attacks="clean,fgsm,pgd-10,pgd-20,cw_linf",
        eval_step_size=2.0))


_register_presets()
