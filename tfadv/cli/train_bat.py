"""Bilateral Adversarial Training (BAT sec. 4-5; appendix A/B): adversarial images AND labels.

    python scripts/train_bat.py                                  # digits, offline, R-MC-LA
    python scripts/train_bat.py --bat_model=FGSM --logdir=runs/bat_fgsm_digits
    python scripts/train_bat.py --dataset=npz:../shared/data/mnist_subset.npz --eps=76.5 ...
    python scripts/train_bat.py --dataset=cifar10 --data_dir=~/tensorflow_datasets   # paper defaults
    python scripts/train_bat.py --dataset=cifar100 --bat_model=R-MC-LA9 --schedule=short
    python scripts/train_bat.py --dataset=imagenet --data_dir=/data/ILSVRC12 --num_gpus=8 \
        --model=resnet152_imagenet --logdir=runs/bat_imagenet_r152        # Table 9

--bat_model picks the paper's model (FGSM, R-FGSM, LL, R-LL, MC, R-MC, R-MC-LS, R-MC-LA, R-MC-LA9,
Madry-LA, R-MC-LA-ImageNet): attack kind, random start, label adversary. On cifar10/cifar100/svhn
(and npz files of 32x32x3 images, e.g. ../shared/data/cifar10_subset.npz: bat_cifar10) unset flags
take the paper's/release's defaults (preset bat_<dataset>[_short]): Madry's WRN-28-10 without
per-image standardization, inputs in [-1,1], eps 8 and step 8 pixels (16/255 input units), batch 128,
SGD momentum 0.9, LR 0.1 (SVHN 0.01) x0.1 at epochs 100/150 of 200 (--schedule=short: 60/90 of 100),
weight decay 2e-4 * sum(w^2)/2, beta 9 (11 on cifar100). On imagenet (ILSVRC12 JPEG folders read by
tensorpack workers, see tfadv.data.imagenet) unset flags take preset bat_imagenet (ICCV paper sec. 5,
Table 9): --bat_model=R-MC-LA-ImageNet (two-step MC attack, eps 16, step 8, beta 100), ResNet-50
(--model=resnet101_imagenet / resnet152_imagenet), 224x224 crops (--image_size), global batch 256,
SGD 0.1 x global/256 with a 5-epoch warm-up above 256, x0.1 at epochs 30/60/90 of 100, weight decay
1e-4, and Table 9's evaluation (clean, PGD-10 step 1.6 and PGD-100 step 1 at eps 16, non-targeted and
random-targeted). Other datasets use their own preset (digits:
the small CNN, eps 25.5/255 in [0,1], 30 epochs of Adam); one-step models step by eps unless
--step_size is given. Sizes are pixel levels out of 255. Run with --helpfull for every flag.
"""

import dataclasses
import os

from absl import flags

from tfadv import config as config_lib
from tfadv.cli import program
from tfadv.recipes import bat as bat_recipe

FLAGS = flags.FLAGS


def define_bat_flags():
    flags.DEFINE_enum("bat_model", "R-MC-LA", bat_recipe.model_names(), "The paper's named model.")
    flags.DEFINE_float("beta", None, "Label multiplier beta of eq. (16) (default 9; 11 on cifar100).")
    flags.DEFINE_float("gamma", 0.01, "gamma of eq. (14).")
    flags.DEFINE_float("eps_y", None, "Label-smoothing budget of the LS models (default 0.5).")
    flags.DEFINE_integer("top_k", None, "Restrict label mass to the top-k non-true classes "
                         "(appendix B; R-MC-LA9 uses 9).")
    flags.DEFINE_enum("label_variant", None, ["main", "sup"], "Adversarial-label solution: eq. (14) "
                      "'main' or appendix A's eq. (26) 'sup' (default: the model's).")
    flags.DEFINE_enum("schedule", "long", ["long", "short"], "Paper schedule on cifar/svhn: long = "
                      "200 epochs (x0.1 at 100, 150), short = 100 epochs (x0.1 at 60, 90).")
    flags.DEFINE_integer("image_size", None, "imagenet only: side of the square training/eval crops "
                         "(default 224; the val resize side scales as 256/224).")
    flags.DEFINE_bool("imagenet_lmdb", False, "imagenet only: read DATA_DIR/ILSVRC-train.lmdb and "
                      "ILSVRC-val.lmdb, writing them first from the JPEG folders if missing.")
    flags.DEFINE_integer("data_workers", None, "imagenet only: augmentation worker processes "
                         "(default min(16, CPUs)).")


def imagenet_data_options(fv) -> dict:
    """ImageNet's preset, model and data options (``tfadv.data.load("imagenet", ..., **options)``);
    writes the LMDB files first when ``--imagenet_lmdb`` and they are missing."""
    from tfadv.data import imagenet as imagenet_lib

    if fv["schedule"].present:
        raise ValueError("--schedule picks the cifar/svhn schedules; imagenet uses preset "
                         f"{bat_recipe.IMAGENET_PRESET} (x0.1 at epochs 30/60/90 of 100). "
                         f"Received: --schedule={fv.schedule!r}.")
    if not fv["bat_model"].present:
        fv.bat_model = "R-MC-LA-ImageNet"
    if fv.preset is None:
        fv.preset = bat_recipe.IMAGENET_PRESET
    options = {"image_size": fv.image_size or imagenet_lib.DEFAULT_IMAGE_SIZE,
               "lmdb": bool(fv.imagenet_lmdb)}
    if fv.data_workers is not None:
        options["num_workers"] = fv.data_workers
    if fv.imagenet_lmdb and fv.data_dir:
        for split in ("train", "test"):
            if not os.path.exists(imagenet_lib.lmdb_path(os.path.expanduser(fv.data_dir), split)):
                print(f"Writing {imagenet_lib.lmdb_path(fv.data_dir, split)} ...", flush=True)
                imagenet_lib.write_lmdb(os.path.expanduser(fv.data_dir), split)
    return options


def resolve(flag_values=FLAGS):
    """(TrainConfig, bat kwargs) from the parsed flags."""
    fv = flag_values
    imagenet = fv.dataset.lower() == "imagenet"
    if fv["random_start"].present:
        raise ValueError("BAT's random start is set by --bat_model (the R- prefix). "
                         f"Received: --random_start={fv.random_start!r}.")
    bat_dataset = None if imagenet else bat_recipe.paper_dataset(fv.dataset, fv.data_dir)
    for name in ("image_size", "imagenet_lmdb", "data_workers"):
        if fv[name].present and not imagenet:
            raise ValueError(f"--{name} applies to --dataset=imagenet. "
                             f"Received: --{name}={fv[name].value!r} with --dataset={fv.dataset!r}.")
    if fv["schedule"].present and not bat_dataset and fv.preset is None:
        raise ValueError(f"--schedule applies to the paper's datasets {bat_recipe.BAT_DATASETS}. "
                         f"Received: --schedule={fv.schedule!r} with --dataset={fv.dataset!r}.")
    if fv.preset is None and bat_dataset:
        fv.preset = bat_recipe.preset_name(bat_dataset, fv.schedule)
    data_options = imagenet_data_options(fv) if imagenet else None
    cfg = config_lib.config_from_flags(fv)
    if data_options is not None:
        cfg = dataclasses.replace(cfg, data_options=data_options)
    beta = fv.beta if fv.beta is not None else bat_recipe.default_beta(bat_dataset or fv.dataset)
    # The named model's attack, built once; the returned config records the attack actually used
    # (run metadata, the training banner).
    return bat_recipe.training(
        cfg, fv.bat_model, step_size=cfg.step_size if fv["step_size"].present else None,
        num_steps=cfg.num_steps if fv["num_steps"].present else None, beta=beta, gamma=fv.gamma,
        eps_y=fv.eps_y, top_k=fv.top_k, variant=fv.label_variant)


def main():
    """Runs ``tfadv-train-bat`` (``python scripts/train_bat.py``): parses the flags, trains."""
    program.run_training("bat", __name__, __doc__, define_flags=define_bat_flags,
                         resolve=resolve, logdir="runs/bat_digits")
