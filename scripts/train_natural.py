"""Natural (standard) training, the baseline of every robustness table, through the same pipeline.

    python scripts/train_natural.py --dataset=digits --logdir=runs/natural_digits

The PGD flags configure the validation attack and the final robustness evaluation only.
"""

from tfadv import experiment

if __name__ == "__main__":
    experiment.script_main("natural")
