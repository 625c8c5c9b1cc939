"""BAT's recipes (Wang & Zhang): the paper's named models, the bat_<dataset>[_short] presets and the
ImageNet preset, in pixel levels; :func:`defense_kwargs` turns a named model into the keyword
arguments of :func:`tfadv.defenses.bat.bat` (input units), building its image attack once.

Named models (Table 3, Table 5, appendix B; the ImageNet paper's two-step MC attack) are listed in
:data:`BAT_MODELS`: how x' and y' are generated. The label-adversary math and the image attack in
input units are the defense's (:mod:`tfadv.defenses.bat`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfadv import ranges as ranges_lib
from tfadv.defenses import bat as bat_lib
from tfadv.evaluation import specs as specs_lib
from tfadv.recipes import base


@dataclasses.dataclass(frozen=True)
class BatModel:
    """One named model of the paper: how x' and y' are generated (sizes in pixel levels)."""

    target: Optional[str]  # None: untargeted (FGSM-type); "mc", "ll", "random"
    random_start: bool
    label_adversary: str = "none"
    num_steps: int = 1
    step_size: Optional[float] = None  # pixels; None: eps (one full step, the paper's one-step PGD)
    eps: Optional[float] = None  # pixels; None: the caller's eps
    beta: Optional[float] = None  # None: the caller's beta
    eps_y: Optional[float] = None
    top_k: Optional[int] = None
    variant: str = "main"
    source: str = ""


BAT_MODELS = {
    # Table 3: one-step adversarial training, eps 8 = step 8, with or without random start (R-).
    "FGSM": BatModel(None, False, source="Table 3"),
    "R-FGSM": BatModel(None, True, source="Table 3"),
    "LL": BatModel("ll", False, source="Table 3 (eq. 23)"),
    "R-LL": BatModel("ll", True, source="Table 3 (eq. 23)"),
    "MC": BatModel("mc", False, source="Table 3 (eq. 24)"),
    "R-MC": BatModel("mc", True, source="Table 3 (eq. 24)"),
    # Table 5: label smoothing eps_y = 0.5, label adversary beta = 9.
    "R-MC-LS": BatModel("mc", True, "ls", eps_y=0.5, source="Table 5 (eq. 15)"),
    "R-MC-LA": BatModel("mc", True, "la", source="Table 5 (eq. 14, 18)"),
    # Appendix B: top-9 non-true classes with solution (26) (CIFAR-100, beta 11).
    "R-MC-LA9": BatModel("mc", True, "la", top_k=9, variant="sup",
                         source="appendix B (eq. 26, 28)"),
    # Table 5: Madry's PGD-7 step 2 images (random start, untargeted) with adversarial labels.
    "Madry-LA": BatModel(None, True, "la", num_steps=7, step_size=2.0, source="Table 5"),
    # ImageNet paper: two-step MC attack, eps 16, step 8, beta 100.
    "R-MC-LA-ImageNet": BatModel("mc", True, "la", num_steps=2, step_size=8.0, eps=16.0, beta=100.0,
                                 source="ICCV ImageNet setting"),
}


def model_names():
    return sorted(BAT_MODELS)


def spec_name(name: str) -> str:
    """The canonical spelling of a named BAT model."""
    for key in BAT_MODELS:
        if key.lower() == str(name).lower():
            return key
    raise ValueError(f"Unknown BAT model. Expected one of {sorted(BAT_MODELS)}. Received: {name!r}.")


def default_beta(dataset: str) -> float:
    """β of eq. (16) for a dataset: 11 on CIFAR-100 (appendix B), else 9 (Table 5)."""
    return 11.0 if str(dataset).lower() == "cifar100" else 9.0


def defense_kwargs(name: str = "R-MC-LA", *, eps: float = 8.0, pixel_range="[-1,1]",
                   step_size: Optional[float] = None, num_steps: Optional[int] = None,
                   beta: float = 9.0, gamma: float = 0.01, eps_y: Optional[float] = None,
                   top_k: Optional[int] = None, variant: Optional[str] = None,
                   seed: Optional[int] = None) -> dict:
    """Keyword arguments of :func:`tfadv.defenses.bat.bat` for the paper's model ``name`` (see
    :data:`BAT_MODELS`), the image attack (``image_attack``) built once, in input units.

    ``eps`` and ``step_size`` are pixel levels out of 255 of ``pixel_range`` (8 pixels are 16/255 in
    BAT's [-1,1] inputs). Unset ``step_size``/``num_steps`` take the model's (one step of eps; Madry-LA:
    7 steps of 2 pixels). ``beta``/``eps_y``/``top_k``/``variant`` override the model's label adversary
    where it has one (``beta`` is ignored by models that fix it, e.g. ImageNet's 100).
    """
    spec = BAT_MODELS[spec_name(name)]
    if eps_y is not None and spec.label_adversary != "ls":
        raise ValueError(f"eps_y is the label-smoothing budget of the LS models; {spec_name(name)} "
                         f"uses label_adversary={spec.label_adversary!r}. Received: eps_y={eps_y!r}.")
    if top_k is not None and spec.label_adversary != "la":
        raise ValueError(f"top_k restricts adversarial labels (LA models); {spec_name(name)} uses "
                         f"label_adversary={spec.label_adversary!r}. Received: top_k={top_k!r}.")
    rng = ranges_lib.get_range(pixel_range)
    eps_px = spec.eps if spec.eps is not None else float(eps)
    ranges_lib.check_pixel_size(eps_px, name="eps")
    steps = spec.num_steps if num_steps is None else int(num_steps)
    step_px = step_size if step_size is not None else (spec.step_size if spec.step_size is not None
                                                        else eps_px)
    ranges_lib.check_pixel_size(step_px, name="step_size", allow_subpixel=True)
    attack = bat_lib.bat_image_attack(eps=base.to_input(eps_px, rng),
                                      step_size=base.to_input(step_px, rng), num_steps=steps,
                                      target=spec.target, random_start=spec.random_start,
                                      pixel_range=rng, seed=seed)
    return {"image_attack": attack, "label_adversary": spec.label_adversary, "gamma": gamma,
            "beta": spec.beta if spec.beta is not None else beta,
            "top_k": top_k if top_k is not None else spec.top_k,
            "variant": variant if variant is not None else spec.variant,
            "eps_y": eps_y if eps_y is not None else spec.eps_y}


def training(cfg, name: str, *, step_size: Optional[float] = None,
             num_steps: Optional[int] = None, **label_options):
    """(run configuration, bat kwargs) of a training run of the named model on the resolved ``cfg``
    (pixel levels): :func:`defense_kwargs` at ``cfg.eps`` and ``cfg.pixel_range`` (``step_size``/
    ``num_steps``: the flags given, None for the model's), its attack as ``attack`` and recorded in
    the returned configuration (eps, steps, step, random start actually used)."""
    kwargs = defense_kwargs(name, eps=cfg.eps, pixel_range=cfg.pixel_range, step_size=step_size,
                            num_steps=num_steps, seed=cfg.seed, **label_options)
    attack = kwargs.pop("image_attack")
    kwargs["attack"] = attack
    cfg = dataclasses.replace(cfg, eps=base.to_pixels(attack.eps, cfg.pixel_range),
                              num_steps=attack.num_steps,
                              step_size=base.to_pixels(attack.step_size, cfg.pixel_range),
                              random_start=attack.random_start)
    return cfg, kwargs


# ------------------------------------------------------------------------------------------------
# Script defaults (BAT sec. 5 "Implementation Details" and the authors' release): WRN-28-10 of Madry
# without per-image standardization, inputs in [-1,1], eps 8 = step 8 pixels, batch 128, SGD momentum
# 0.9, LR 0.1 (SVHN 0.01) x0.1 at epochs 100/150 of 200 (short: 60/90 of 100), wd 2e-4 (l2_loss).
# Registered as bat_<dataset>[_short] for scripts/train_bat.py.

BAT_DATASETS = ("cifar10", "cifar100", "svhn")


def paper_dataset(dataset: str, data_dir: Optional[str] = None) -> Optional[str]:
    """The paper's dataset a script's ``--dataset`` stands for: ``cifar10``/``cifar100``/``svhn`` by
    name, an npz file by its image shape (32x32x3 is ``cifar10``, as for every other recipe), else
    None (the dataset's own preset applies)."""
    name = str(dataset).lower()
    if name.startswith("npz:"):
        try:
            name = base.dataset_preset(dataset, data_dir)
        except ValueError:  # an npz image shape no preset covers
            return None
    return name if name in BAT_DATASETS else None


def preset_name(dataset: str, schedule: str = "long") -> str:
    if schedule not in ("long", "short"):
        raise ValueError(f"schedule must be long or short. Received: {schedule!r}.")
    return f"bat_{dataset}" + ("_short" if schedule == "short" else "")


def _register_presets():
    for dataset in BAT_DATASETS:
        for schedule, epochs, boundaries in (("long", 200, (100, 150)), ("short", 100, (60, 90))):
            base.register(preset_name(dataset, schedule), base.Preset(
                model="madry_wrn28", pixel_range="[-1,1]", eps=8.0, step_size=8.0, num_steps=1,
                epochs=epochs, batch_size=128, optimizer="sgd",
                lr=0.01 if dataset == "svhn" else 0.1, lr_boundaries=boundaries, momentum=0.9,
                weight_decay=2e-4, eval_attacks="clean,fgsm,pgd-7,pgd-20", eval_step_size=2.0))


_register_presets()

# ImageNet (BAT ICCV sec. 5 "Implementation Details", sec. 5.4, Table 9), following the tensorpack
# ImageNet-Adversarial-Training code the paper says it uses: ResNet-50 (101/152 with --model), inputs
# in [-1,1], the two-step MC attack (eps 16, step 8) with beta 100 (bat_model R-MC-LA-ImageNet),
# 100 epochs, LR 0.1 x0.1 at epochs 30/60/90, global batch 256 (8 GPUs x 32), LR scaled by
# global batch / 256 with a 5-epoch warm-up above 256, momentum 0.9 (tensorpack: Nesterov), weight
# decay 1e-4 * sum(w^2)/2 on kernels (tensorpack's l2_regularizer(1e-4) on '.*/W'), evaluation =
# Table 9's columns (the bat_imagenet suite).
IMAGENET_PRESET = "bat_imagenet"
IMAGENET_EVAL = ",".join(specs_lib.SUITES["bat_imagenet"])
base.register(IMAGENET_PRESET, base.Preset(
    model="resnet50_imagenet", pixel_range="[-1,1]", eps=16.0, step_size=8.0, num_steps=2,
    epochs=100, batch_size=256, optimizer="sgd", lr=0.1, lr_boundaries=(30, 60, 90),
    momentum=0.9, weight_decay=1e-4, eval_attacks=IMAGENET_EVAL, val_limit=1000,
    lr_scaling="linear", lr_warmup_epochs=5.0))
