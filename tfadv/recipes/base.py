"""What every recipe shares: the :class:`Preset` record, the preset registry, the dataset -> preset
lookup, and the one boundary where a recipe's pixel levels become the input units of a defense.

A recipe speaks pixel levels out of 255 of its pixel range (``eps=8`` is 8/255 of [0,1] and 16/255
of [-1,1]); the defenses (:mod:`tfadv.defenses`) take input units only. :func:`to_input` is where
training sizes cross from one to the other; every recipe builds its training attack through it,
once. Learning-rate boundaries are in epochs.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Tuple, Union

from tfadv import attacks as attacks_lib
from tfadv import ranges as ranges_lib
from tfadv.registry import Registry

PRESETS = Registry("preset")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Defaults of a training script for one dataset or paper setting (sizes in pixel levels)."""

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
    # "cyclic": one triangular cycle 0 -> lr -> 0 over the run, peaking after lr_peak_fraction of
    # it (Fast AT); lr_boundaries and lr_decay do not apply.
    lr_schedule: str = "piecewise"
    lr_peak_fraction: float = 0.5


def register(name: str, preset: Union[Preset, Callable[[], Preset]]) -> None:
    """Registers ``preset`` (or a function returning one) as ``name``."""
    PRESETS.register(name)(preset if callable(preset) else (lambda: preset))


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
        from tfadv import data as data_lib  # lazy: only npz files need their image shape read

        image_shape = data_lib.info(dataset, "test", data_dir=data_dir).image_shape
    return for_dataset(dataset, image_shape)


def to_input(pixels: Optional[float], pixel_range) -> Optional[float]:
    """The boundary: a training size in pixel levels of ``pixel_range`` -> input units (None stays
    None, for sizes a defense defaults itself)."""
    return None if pixels is None else ranges_lib.get_range(pixel_range).from_pixels(pixels)


def to_pixels(value: float, pixel_range) -> float:
    """The way back, for the record of a run: input units of ``pixel_range`` -> pixel levels,
    rounded to 6 decimals."""
    return round(ranges_lib.get_range(pixel_range).to_pixels(value), 6)


def pgd_attack(cfg):
    """The PGD training attack of a resolved run configuration (``cfg.eps``/``cfg.step_size`` in
    pixel levels of ``cfg.pixel_range``; ``num_steps``, ``random_start``, ``norm``): Madry's recipe,
    and the one Dynamic and Curriculum train against."""
    rng = ranges_lib.get_range(cfg.pixel_range)
    return attacks_lib.get("pgd", eps=to_input(cfg.eps, rng), step_size=to_input(cfg.step_size, rng),
                           num_steps=cfg.num_steps, random_start=cfg.random_start, norm=cfg.norm,
                           pixel_range=rng)


def training_kwargs(cfg, defense_kwargs: Optional[dict] = None) -> dict:
    """The defense's keyword arguments for the run ``cfg``: ``defense_kwargs`` (what a recipe built,
    its attack included) and, when they name no ``attack``, the PGD attack of ``cfg``, built here
    once."""
    kwargs = dict(defense_kwargs or {})
    if "attack" not in kwargs:
        kwargs["attack"] = pgd_attack(cfg)
    return kwargs


def paper_preset_name(prefix: str, paper_presets, dataset: str) -> str:
    """``<prefix>_<dataset>`` where a paper registers that preset (``paper_presets``), else the
    dataset's own preset name."""
    name = f"{prefix}_{str(dataset).lower()}"
    return name if name in paper_presets else str(dataset)


def paper_setting(paper_presets, name: Optional[str], index: int, default):
    """Field ``index`` of the entry ``name`` of a paper's ``{preset: (Preset, ...)}`` table (a
    setting the Preset record does not hold: MART's β, Free AT's m), else ``default``."""
    entry = paper_presets.get(str(name).lower()) if name is not None else None
    return default if entry is None else entry[index]
