"""Bilateral Adversarial Training (BAT sec. 4-5; appendix A/B): adversarial images AND labels.

    python scripts/train_bat.py                                  # digits, offline, R-MC-LA
    python scripts/train_bat.py --bat_model=FGSM --logdir=runs/bat_fgsm_digits
    python scripts/train_bat.py --dataset=npz:../shared/data/mnist_subset.npz --eps=76.5 ...
    python scripts/train_bat.py --dataset=cifar10 --data_dir=~/tensorflow_datasets   # paper defaults
    python scripts/train_bat.py --dataset=cifar100 --bat_model=R-MC-LA9 --schedule=short

--bat_model picks the paper's model (FGSM, R-FGSM, LL, R-LL, MC, R-MC, R-MC-LS, R-MC-LA, R-MC-LA9,
Madry-LA, R-MC-LA-ImageNet): attack kind, random start, label adversary. On cifar10/cifar100/svhn unset
flags take the paper's/release's defaults (preset bat_<dataset>[_short]): Madry's WRN-28-10 without
per-image standardization, inputs in [-1,1], eps 8 and step 8 pixels (16/255 input units), batch 128,
SGD momentum 0.9, LR 0.1 (SVHN 0.01) x0.1 at epochs 100/150 of 200 (--schedule=short: 60/90 of 100),
weight decay 2e-4 * sum(w^2)/2, beta 9 (11 on cifar100). Other datasets use their own preset (digits:
the small CNN, eps 25.5/255 in [0,1], 30 epochs of Adam); one-step models step by eps unless
--step_size is given. Sizes are pixel levels out of 255. Run with --helpfull for every flag.
"""

import dataclasses
import importlib

from absl import flags

from tfadv import experiment
from tfadv import ranges as ranges_lib

bat_lib = importlib.import_module("tfadv.defenses.bat")  # the module (its factory shadows the name)

FLAGS = flags.FLAGS


def define_bat_flags():
    flags.DEFINE_enum("bat_model", "R-MC-LA", bat_lib.model_names(), "The paper's named model.")
    flags.DEFINE_float("beta", None, "Label multiplier beta of eq. (16) (default 9; 11 on cifar100).")
    flags.DEFINE_float("gamma", 0.01, "gamma of eq. (14).")
    flags.DEFINE_float("eps_y", None, "Label-smoothing budget of the LS models (default 0.5).")
    flags.DEFINE_integer("top_k", None, "Restrict label mass to the top-k non-true classes "
                         "(appendix B; R-MC-LA9 uses 9).")
    flags.DEFINE_enum("label_variant", None, ["main", "sup"], "Adversarial-label solution: eq. (14) "
                      "'main' or appendix A's eq. (26) 'sup' (default: the model's).")
    flags.DEFINE_enum("schedule", "long", ["long", "short"], "Paper schedule on cifar/svhn: long = "
                      "200 epochs (x0.1 at 100, 150), short = 100 epochs (x0.1 at 60, 90).")


def resolve(flag_values=FLAGS):
    """(TrainConfig, bat kwargs) from the parsed flags."""
    fv = flag_values
    if fv.dataset.lower() == "imagenet":
        raise ValueError("ImageNet BAT (two-step MC attack, eps 16, step 8, beta 100) needs the "
                         "ImageNet data pipeline and multi-GPU training, which land with the "
                         "scale-out issue; --bat_model=R-MC-LA-ImageNet already builds the "
                         "configuration in Python. Received: --dataset=imagenet.")
    if fv["random_start"].present:
        raise ValueError("BAT's random start is set by --bat_model (the R- prefix). "
                         f"Received: --random_start={fv.random_start!r}.")
    bat_dataset = fv.dataset.lower() in bat_lib.BAT_DATASETS
    if fv["schedule"].present and not bat_dataset and fv.preset is None:
        raise ValueError(f"--schedule applies to the paper's datasets {bat_lib.BAT_DATASETS}. "
                         f"Received: --schedule={fv.schedule!r} with --dataset={fv.dataset!r}.")
    if fv.preset is None and bat_dataset:
        fv.preset = bat_lib.preset_name(fv.dataset.lower(), fv.schedule)
    cfg = experiment.config_from_flags(fv)
    beta = fv.beta if fv.beta is not None else (11.0 if fv.dataset.lower() == "cifar100" else 9.0)
    kwargs = bat_lib.bat_config(
        fv.bat_model, eps=cfg.eps, pixel_range=cfg.pixel_range,
        step_size=cfg.step_size if fv["step_size"].present else None,
        num_steps=cfg.num_steps if fv["num_steps"].present else None, beta=beta, gamma=fv.gamma,
        eps_y=fv.eps_y, top_k=fv.top_k, variant=fv.label_variant, seed=cfg.seed)
    attack = kwargs.pop("image_attack")
    kwargs["attack"] = attack  # replaces experiment.train's PGD attack
    # Record the attack actually used (run metadata, the training banner).
    rng = ranges_lib.get_range(cfg.pixel_range)
    cfg = dataclasses.replace(cfg, eps=round(rng.to_pixels(attack.eps), 6),
                              num_steps=attack.num_steps,
                              step_size=round(rng.to_pixels(attack.step_size), 6),
                              random_start=attack.random_start)
    return cfg, kwargs


if __name__ == "__main__":
    experiment.script_main("bat", resolve=resolve, define_flags=define_bat_flags,
                           logdir="runs/bat_digits")
