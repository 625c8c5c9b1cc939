"""Madry et al. PGD adversarial training (BAT sec. 3.1, eq. 1-4).

    python scripts/train_madry.py                       # digits, offline, ~2 minutes on 2 cores
    python scripts/train_madry.py --dataset=npz:../shared/data/mnist_subset.npz --eps=76.5 ...
    python scripts/train_madry.py --dataset=cifar10 --data_dir=~/tensorflow_datasets

Unset flags take the dataset's preset (tfadv/recipes/madry.py); sizes are pixel levels out of 255.
Run with --helpfull for every flag.
"""

from tfadv.cli import program


def main():
    """Runs ``tfadv-train-madry`` (``python scripts/train_madry.py``): parses the flags, trains."""
    program.run_training("madry", __name__, __doc__)
