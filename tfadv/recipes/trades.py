"""TRADES' recipes (Zhang et al., sec. 5.3, Table 5, and the release's train_trades_{cifar10,mnist}.py):
the trades_<dataset>[_beta1] presets with their β (:data:`TRADES_PRESETS`), in pixel levels of [0,1],
and :func:`training`, which builds the training attack (input units) once. LR boundaries are
tfadv's 0-based epochs (the release's ``epoch >= 75`` of 1-based epochs is 74 here).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfadv import ranges as ranges_lib
from tfadv.defenses import trades as trades_lib
from tfadv.recipes import base


# Algorithm 1 / sec. 5.3 CIFAR-10 attack in pixel levels out of 255 of [0,1]: ε = 0.031 ≈ 8/255
# (8/255 = 0.031373; the release's literal 0.031 is 7.905 levels), η₁ = 0.007 = 1.785/255 exactly
# (NOT 2/255 = 0.00784), K = 10.
CIFAR_EPS_PIXELS = 8.0
CIFAR_STEP_PIXELS = 0.007 * ranges_lib.PIXEL_LEVELS  # 1.785
CIFAR_NUM_STEPS = trades_lib.CIFAR_NUM_STEPS


def defense_kwargs(pixel_range="[0,1]", *, seed: Optional[int] = None) -> dict:
    """Keyword arguments of :func:`tfadv.defenses.trades.trades` for the CIFAR-10 setting of sec.
    5.3: the KL attack at ε = 8 and η₁ = 1.785 pixel levels of ``pixel_range`` (input units), K = 10,
    from x + 0.001·N(0, I), built once."""
    return {"attack": trades_lib.trades_attack(
        eps=base.to_input(CIFAR_EPS_PIXELS, pixel_range),
        step_size=base.to_input(CIFAR_STEP_PIXELS, pixel_range), num_steps=CIFAR_NUM_STEPS,
        pixel_range=pixel_range, seed=seed)}


@dataclasses.dataclass(frozen=True)
class TradesPreset:
    preset: base.Preset
    beta: float
    source: str


_CIFAR10 = base.Preset(
    model="trades_wrn34_10", pixel_range="[0,1]", eps=CIFAR_EPS_PIXELS,
    step_size=CIFAR_STEP_PIXELS, num_steps=CIFAR_NUM_STEPS, epochs=100,
    batch_size=128, optimizer="sgd", lr=0.1, lr_boundaries=(74, 89, 99), momentum=0.9,
    weight_decay=2e-4, eval_attacks="clean,fgsm,pgd-20,cw-20",
    eval_step_size=0.003 * ranges_lib.PIXEL_LEVELS)
_MNIST = base.Preset(
    model="trades_smallcnn", pixel_range="[0,1]", eps=0.3 * ranges_lib.PIXEL_LEVELS,
    step_size=0.01 * ranges_lib.PIXEL_LEVELS, num_steps=40, epochs=100, batch_size=128,
    optimizer="sgd", lr=0.01, lr_boundaries=(54, 74, 89), momentum=0.9, weight_decay=0.0,
    eval_attacks="clean,fgsm,pgd-40,cw-40", eval_step_size=0.01 * ranges_lib.PIXEL_LEVELS)

TRADES_PRESETS = {
    "trades_cifar10": TradesPreset(_CIFAR10, 6.0, "sec. 5.3 / Table 5, 1/lambda = 6 (the release)"),
    "trades_cifar10_beta1": TradesPreset(_CIFAR10, 1.0, "sec. 5.3 / Table 5, 1/lambda = 1"),
    "trades_mnist": TradesPreset(_MNIST, 6.0, "sec. 5.3 / Table 5, 1/lambda = 6"),
    "trades_mnist_beta1": TradesPreset(_MNIST, 1.0, "train_trades_mnist.py's default beta"),
}
TRADES_DATASETS = ("cifar10", "mnist")


def script_preset(dataset: str, data_dir: Optional[str] = None) -> str:
    """The preset of a training command's ``--dataset``: ``trades_<name>`` for the paper's datasets
    (npz files matched by image shape), else the dataset's own preset."""
    return preset_name(base.dataset_preset(dataset, data_dir))


def preset_name(dataset: str) -> str:
    """``trades_<dataset>`` for the paper's datasets (cifar10, mnist), else the dataset's preset."""
    return base.paper_preset_name("trades", TRADES_PRESETS, dataset)


def preset_beta(name: Optional[str], default: float = 6.0) -> float:
    """β of a TRADES preset (``default`` for any other preset)."""
    entry = TRADES_PRESETS.get(str(name).lower()) if name is not None else None
    return entry.beta if entry is not None else default


def training(cfg, *, beta: float, random_start: str = "gaussian", step_size_given: bool = True):
    """(run configuration, trades kwargs) for the resolved ``cfg`` (pixel levels): TRADES' inner
    maximisation at ``cfg.eps``/``cfg.step_size``/``cfg.num_steps``/``cfg.norm``, built once in input
    units, and β. With ``norm="l2"`` and no step size given the step is the release's 2ε/K. The
    returned configuration records the step and start actually used."""
    beta = trades_lib.check_beta(beta)
    step = (base.to_input(cfg.step_size, cfg.pixel_range) if cfg.norm != "l2" or step_size_given
            else None)  # None: the release's 2*eps/K for L2
    attack = trades_lib.trades_attack(eps=base.to_input(cfg.eps, cfg.pixel_range), step_size=step,
                                      num_steps=cfg.num_steps, norm=cfg.norm,
                                      pixel_range=cfg.pixel_range, random_start=random_start,
                                      seed=cfg.seed)
    cfg = dataclasses.replace(cfg, step_size=base.to_pixels(attack.step_size, cfg.pixel_range),
                              random_start=random_start)
    return cfg, {"attack": attack, "beta": beta}


def _register_presets():
    for name, entry in TRADES_PRESETS.items():
        base.register(name, entry.preset)


_register_presets()
