"""Madry et al. PGD adversarial training (BAT sec. 3.1, eq. 1-4).

    python scripts/train_madry.py                       # digits, offline, ~2 minutes on 2 cores
    python scripts/train_madry.py --dataset=npz:../shared/data/mnist_subset.npz --eps=76.5 ...
    python scripts/train_madry.py --dataset=cifar10 --data_dir=~/tensorflow_datasets
    python scripts/train_madry.py --awp_gamma=0.01 --logdir=runs/madry_awp_digits   # AT-AWP

--awp_gamma adds AWP (Wu et al. 2020): every update is taken at kernels perturbed by gamma times
their norm along the loss's ascent, then the perturbation is removed. Unset flags take the dataset's preset (tfadv/recipes/madry.py); sizes are pixel levels out of 255.
Run with --helpfull for every flag.
"""

from absl import flags

from tfadv import flags as tfadv_flags
from tfadv.cli import program
from tfadv.recipes import awp as awp_recipe

FLAGS = flags.FLAGS


def defense_kwargs(flag_values=FLAGS) -> dict:
    """Madry's keyword arguments beyond the run configuration's PGD: AWP's, when asked for."""
    return awp_recipe.defense_kwargs("madry", gamma=flag_values.awp_gamma,
                                     warmup_epochs=flag_values.awp_warmup_epochs)


def main():
    """Runs ``tfadv-train-madry`` (``python scripts/train_madry.py``): parses the flags, trains."""
    program.run_training("madry", __name__, __doc__, define_flags=tfadv_flags.define_awp_flags,
                         defense_kwargs=defense_kwargs)
