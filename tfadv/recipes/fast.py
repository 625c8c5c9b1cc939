"""Fast AT's recipes (Wong, Rice & Kolter, ICLR 2020; the release's ``CIFAR10/train_fgsm.py`` and
``MNIST/train_mnist.py``): the ``fast_cifar10`` and ``fast_mnist`` presets in pixel levels of [0,1]
(``step_size`` is FGSM-RS's α = 1.25·ε), the cyclic LR, and :func:`training`, which builds the
training attack (input units) and, with the guard, reads its fixed training mini-batch, once.

CIFAR-10: PreAct ResNet-18, ε 8, α 10, 15 epochs of batch 128, SGD momentum 0.9, weight decay
5e-4, LR one cycle 0 → 0.2 → 0 peaking at half of training. MNIST: the release's network
(``wong_mnist_cnn``: two stride-2 convs and two dense layers), ε 0.3, α 0.375, 10 epochs of batch
100, Adam, LR 0 → 5e-3 at 2/5 of training → 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from tfadv import data as data_lib
from tfadv import ranges as ranges_lib
from tfadv.defenses import fast as fast_lib
from tfadv.recipes import base

_LEVELS = ranges_lib.PIXEL_LEVELS
_CIFAR10 = base.Preset(
    model="preact_resnet18", pixel_range="[0,1]", eps=8.0, step_size=10.0, num_steps=1,
    epochs=15, batch_size=128, optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=5e-4,
    lr_schedule="cyclic", lr_peak_fraction=0.5, eval_attacks="clean,fgsm,pgd-20,pgd-50",
    eval_step_size=2.0)
_MNIST = base.Preset(
    model="wong_mnist_cnn", pixel_range="[0,1]", eps=0.3 * _LEVELS, step_size=0.375 * _LEVELS,
    num_steps=1, epochs=10, batch_size=100, optimizer="adam", lr=5e-3, weight_decay=0.0,
    lr_schedule="cyclic", lr_peak_fraction=0.4, eval_attacks="clean,fgsm,pgd-20,pgd-50",
    eval_step_size=0.01 * _LEVELS)

#: preset name -> (Preset, source).
FAST_PRESETS = {"fast_cifar10": (_CIFAR10, "the release's CIFAR10/train_fgsm.py"),
                "fast_mnist": (_MNIST, "the release's MNIST/train_mnist.py")}
#: preset name -> FGSM-RS's start: the CIFAR-10 release clips the uniform start to the pixel range
#: before the gradient, the MNIST release does not (``delta`` is clamped to the range only after the
#: step); any other preset: clipped.
RELEASE_STARTS = {"fast_cifar10": "uniform", "fast_mnist": "uniform_unclipped"}


def defense_kwargs(pixel_range="[0,1]", *, seed: Optional[int] = None) -> dict:
    """Keyword arguments of :func:`tfadv.defenses.fast.fast` for the release's CIFAR-10 setting:
    FGSM-RS at ε = 8 and α = 10 pixel levels of ``pixel_range`` (input units), built once."""
    return {"attack": fast_lib.fgsm_rs_attack(eps=base.to_input(8.0, pixel_range),
                                              alpha=base.to_input(10.0, pixel_range),
                                              pixel_range=pixel_range, seed=seed)}


def script_preset(dataset: str, data_dir: Optional[str] = None) -> str:
    """The preset of a training command's ``--dataset``: ``fast_<name>`` for CIFAR-10 and MNIST
    (npz files matched by image shape), else the dataset's own preset."""
    return base.paper_preset_name("fast", FAST_PRESETS, base.dataset_preset(dataset, data_dir))


@dataclasses.dataclass(frozen=True, eq=False)
class GuardBatch:
    """The guard's fixed mini-batch, unpacked as ``images, labels``; a run's metadata records it by
    its ``get_config`` (dataset and size), not by its pixels."""

    images: Any
    labels: Any
    dataset: str

    def __iter__(self):
        return iter((self.images, self.labels))

    def get_config(self):
        return {"dataset": self.dataset, "examples": int(len(self.labels)),
                "split": "train, first batch, unshuffled"}


def guard_batch(cfg) -> GuardBatch:
    """The guard's fixed mini-batch: the first ``cfg.batch_size`` training images of the run's
    training examples (not shuffled, not augmented)."""
    ds, _ = data_lib.load(cfg.dataset, "train", batch_size=cfg.batch_size,
                          pixel_range=cfg.pixel_range, data_dir=cfg.data_dir, training=False,
                          limit=cfg.train_limit, **(cfg.data_options or {}))
    images, labels = next(iter(ds))
    return GuardBatch(images.numpy(), labels.numpy(), cfg.dataset)


def release_start(preset: Optional[str]) -> str:
    """FGSM-RS's start for a run of ``preset`` (:data:`RELEASE_STARTS`; ``uniform`` otherwise)."""
    return RELEASE_STARTS.get(preset, "uniform")


def training(cfg, *, alpha_given: bool = True, guard: bool = False,
             guard_drop: float = fast_lib.GUARD_DROP, random_start: str = "uniform",
             guard_reference: str = "previous"):
    """(run configuration, fast kwargs) for the resolved ``cfg`` (pixel levels): FGSM-RS at
    ``cfg.eps`` with α = ``cfg.step_size`` (1.25·ε when ``alpha_given`` is False) from
    ``random_start`` (:data:`tfadv.defenses.fast.STARTS`), built once in input units; with
    ``guard``, the catastrophic-overfitting guard on :func:`guard_batch`, its fall measured from
    ``guard_reference`` (``previous`` or ``best`` check). The returned
    configuration records the one uniform-start step actually used."""
    if cfg.norm != "linf":
        raise ValueError(f"Fast AT is an Linf method (FGSM). Received: norm={cfg.norm!r}.")
    if not 0 < float(guard_drop) <= 1:
        raise ValueError(f"--guard_drop must lie in (0, 1]. Received: {guard_drop!r}.")
    alpha = cfg.step_size if alpha_given else fast_lib.ALPHA_RATIO * cfg.eps
    attack = fast_lib.fgsm_rs_attack(eps=base.to_input(cfg.eps, cfg.pixel_range),
                                     alpha=base.to_input(alpha, cfg.pixel_range),
                                     pixel_range=cfg.pixel_range, seed=cfg.seed,
                                     random_start=random_start)
    kwargs = {"attack": attack, "guard_drop": guard_drop, "guard_reference": guard_reference}
    if guard:
        kwargs["guard_batch"] = guard_batch(cfg)
    cfg = dataclasses.replace(cfg, step_size=round(float(alpha), 6), num_steps=1,
                              random_start=random_start)
    return cfg, kwargs


def _register_presets():
    for name, (preset, _) in FAST_PRESETS.items():
        base.register(name, preset)


_register_presets()
