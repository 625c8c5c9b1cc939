"""Madry et al. PGD adversarial training.

    python scripts/train_madry.py                       # digits, offline, ~1-2 minutes on 2 cores
    python scripts/train_madry.py --dataset=npz:../shared/data/mnist_subset.npz --eps=76.5 ...
    python scripts/train_madry.py --dataset=cifar10 --data_dir=~/tensorflow_datasets

Unset flags take the dataset's preset (tfadv/presets.py); sizes are pixel levels out of 255.
"""

from absl import app, logging

from tfadv import experiment
from tfadv import flags as tfadv_flags

tfadv_flags.define_data_flags()
tfadv_flags.define_attack_flags()
tfadv_flags.define_training_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    cfg = experiment.config_from_flags(tfadv_flags.FLAGS)
    experiment.train(cfg, defense="madry", flags=tfadv_flags.flag_values())


if __name__ == "__main__":
    app.run(main)
