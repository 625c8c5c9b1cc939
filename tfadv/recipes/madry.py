"""Madry et al.'s recipes: the per-dataset presets digits, mnist, cifar10, cifar100 and svhn (from the
paper's released challenges; digits is tfadv's offline default), in pixel levels out of 255.

Madry's training attack is the PGD of the resolved configuration,
:func:`tfadv.recipes.base.pgd_attack`; these presets are also every other script's defaults on a
dataset that has no paper preset of its own.
"""

from __future__ import annotations

import dataclasses

from tfadv import attacks as attacks_lib
from tfadv.recipes import base

# The released cifar10_challenge's training PGD, in pixel levels of the pixel range: 7 steps of 2
# within 8, from a uniform random start.
CIFAR_EPS_PIXELS = 8.0
CIFAR_STEP_PIXELS = 2.0
CIFAR_NUM_STEPS = 7


def defense_kwargs(pixel_range="[0,1]") -> dict:
    """Keyword arguments of :func:`tfadv.defenses.madry.madry` for the released CIFAR training:
    its PGD in input units of ``pixel_range`` (8/255 and 2/255 of [0,1]), built once."""
    return {"attack": attacks_lib.get(
        "pgd", eps=base.to_input(CIFAR_EPS_PIXELS, pixel_range),
        step_size=base.to_input(CIFAR_STEP_PIXELS, pixel_range), num_steps=CIFAR_NUM_STEPS,
        random_start="uniform", norm="linf", pixel_range=pixel_range)}


def _register_presets():
    # scikit-learn 8x8 digits: the offline default; small enough to train robustly in about a minute.
    base.register("digits", base.Preset(
        model="digits_cnn", pixel_range="[0,1]", eps=25.5, step_size=6.375, num_steps=7, epochs=30,
        batch_size=64, optimizer="adam", lr=1e-3, eval_attacks="clean,fgsm,pgd-20,pgd-40,cw-20",
        eval_step_size=2.55, val_limit=None))
    # Madry et al.'s mnist_challenge: eps 0.3, 40 steps of 0.01, random start, Adam 1e-4, batch 50,
    # 100k steps (~83 epochs of the 60k training set).
    base.register("mnist", base.Preset(
        model="madry_mnist_cnn", pixel_range="[0,1]", eps=76.5, step_size=2.55, num_steps=40,
        epochs=83, batch_size=50, optimizer="adam", lr=1e-4,
        eval_attacks="clean,fgsm,pgd-40,pgd-100,cw-40", eval_step_size=2.55))
    # Madry et al.'s cifar10_challenge as released: PGD-7 step 2 eps 8, SGD 0.1 momentum 0.9,
    # x0.1 at 40k/60k of 80k steps with batch 128 (epochs 102/154 of 205), wd 2e-4 (l2_loss).
    cifar10 = base.Preset(
        model="madry_wrn34", pixel_range="[0,1]", eps=CIFAR_EPS_PIXELS, step_size=CIFAR_STEP_PIXELS,
        num_steps=CIFAR_NUM_STEPS, epochs=205, batch_size=128, optimizer="sgd", lr=0.1,
        lr_boundaries=(102, 154), weight_decay=2e-4, eval_attacks="clean,fgsm,pgd-20,cw-20",
        eval_step_size=2.0)
    base.register("cifar10", cifar10)
    base.register("cifar100", dataclasses.replace(cifar10))
    base.register("svhn", dataclasses.replace(cifar10, lr=0.01, epochs=100, lr_boundaries=(50, 75)))


_register_presets()
