"""Natural (standard) training, the baseline of every robustness table, through the same pipeline.

    python scripts/train_natural.py --dataset=digits --logdir=runs/natural_digits

The PGD flags configure the validation attack and the final robustness evaluation only.
"""

from tfadv.cli import program


def main():
    """Runs ``tfadv-train-natural`` (``python scripts/train_natural.py``): parses the flags, trains."""
    program.run_training("natural", __name__, __doc__)
