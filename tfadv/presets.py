"""Per-dataset defaults of the training scripts, from the papers and released code.

Flags left unset take their values from the preset of the dataset (``--preset`` overrides the
choice). Sizes are pixel levels out of 255 (tfadv.ranges). Learning-rate boundaries are in epochs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from tfadv.registry import Registry

PRESETS = Registry("preset")


@dataclasses.dataclass(frozen=True)
class Preset:
    model: str
    pixel_range: str
    eps: float
    step_size: float
    num_steps: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    lr_boundaries: Tuple[int, ...] = ()
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    eval_attacks: str = "clean,fgsm,pgd-20,cw-20"
    eval_step_size: Optional[float] = None
    val_limit: Optional[int] = 1000
    # "linear": lr is the LR of a 256-image global batch, scaled by global batch / 256 with a
    # linear warm-up over lr_warmup_epochs when above 256 (the tensorpack ImageNet code).
    lr_scaling: str = "none"
    lr_warmup_epochs: float = 5.0


def _register(name, preset):
    PRESETS.register(name)(lambda: preset)


# scikit-learn 8x8 digits: the offline default; small enough to train robustly in about a minute.
_register("digits", Preset(model="digits_cnn", pixel_range="[0,1]", eps=25.5, step_size=6.375,
                           num_steps=7, epochs=30, batch_size=64, optimizer="adam", lr=1e-3,
                           eval_attacks="clean,fgsm,pgd-20,pgd-40,cw-20", eval_step_size=2.55,
                           val_limit=None))
# Madry et al.'s mnist_challenge: eps 0.3, 40 steps of 0.01, random start, Adam 1e-4, batch 50,
# 100k steps (~83 epochs of the 60k training set).
_register("mnist", Preset(model="madry_mnist_cnn", pixel_range="[0,1]", eps=76.5, step_size=2.55,
                          num_steps=40, epochs=83, batch_size=50, optimizer="adam", lr=1e-4,
                          eval_attacks="clean,fgsm,pgd-40,pgd-100,cw-40", eval_step_size=2.55))
# Madry et al.'s cifar10_challenge as released: PGD-7 step 2 eps 8, SGD 0.1 momentum 0.9,
# x0.1 at 40k/60k of 80k steps with batch 128 (epochs 102/154 of 205), wd 2e-4 (l2_loss).
_register("cifar10", Preset(model="madry_wrn34", pixel_range="[0,1]", eps=8.0, step_size=2.0,
                            num_steps=7, epochs=205, batch_size=128, optimizer="sgd", lr=0.1,
                            lr_boundaries=(102, 154), weight_decay=2e-4,
                            eval_attacks="clean,fgsm,pgd-20,cw-20", eval_step_size=2.0))
_register("cifar100", dataclasses.replace(PRESETS.lookup("cifar10")()))
_register("svhn", dataclasses.replace(PRESETS.lookup("cifar10")(), lr=0.01, epochs=100,
                                      lr_boundaries=(50, 75)))


def get(name: str) -> Preset:
    """The preset registered as ``name``."""
    return PRESETS.get(name)


def for_dataset(dataset: str, image_shape=None) -> str:
    """The preset name for a dataset name; npz files are matched by image shape."""
    if dataset.startswith("npz:"):
        shapes = {(28, 28, 1): "mnist", (32, 32, 3): "cifar10", (8, 8, 1): "digits"}
        if image_shape is not None and tuple(image_shape) in shapes:
            return shapes[tuple(image_shape)]
        raise ValueError("No preset for an npz dataset of this image shape; pass --preset=mnist|"
                         f"cifar10|digits and the model flags. Received: image_shape={image_shape!r}.")
    return dataset


def dataset_preset(dataset: str, data_dir: Optional[str] = None) -> str:
    """The preset name of a ``--dataset`` value: the dataset's own name, or for an npz file the
    dataset of its image shape (read from the file)."""
    image_shape = None
    if dataset.startswith("npz:"):
        from tfadv import data as data_lib  # lazy: the data package does not need presets

        image_shape = data_lib.info(dataset, "test", data_dir=data_dir).image_shape
    return for_dataset(dataset, image_shape)
