"""Curriculum adversarial training (Cai et al., IJCAI 2018; the FOSC paper's Curriculum baseline):
the PGD step count k grows from 0 to K (= --num_steps) when the validation accuracy under PGD-k has
not improved for --patience epochs; batches mix strengths 0..k.

    python scripts/train_curriculum.py                                 # digits, offline
    python scripts/train_curriculum.py --dataset=npz:../shared/data/mnist_subset.npz
    python scripts/train_curriculum.py --dataset=cifar10 --data_dir=~/tensorflow_datasets

On mnist/cifar10 (and npz files of their shapes) unset flags take the FOSC paper's setting shared by
all its defenses (presets fosc_mnist / fosc_cifar10: K = 10 steps of eps/4 with random start, SGD 0.01
momentum 0.9, weight decay 1e-4, 50 / 120 epochs); patience 10 (Cai et al.). Validation (needed: k
follows its PGD-k accuracy) uses the last --val_limit training images, held out of training
(--val_split=test: the test split instead). The current k is logged as
`k`. Sizes are pixel levels out of 255. Run with --helpfull for every flag.
"""

from absl import flags

from tfadv import config as config_lib
from tfadv.cli import program
from tfadv.recipes import fosc as fosc_recipe

FLAGS = flags.FLAGS


def define_curriculum_flags():
    flags.DEFINE_integer("patience", 10, "Epochs without improvement of the PGD-k validation "
                         "accuracy before k grows (Cai et al.: 10).")
    flags.DEFINE_integer("initial_k", 0, "Starting number of PGD steps k (0: clean training).")
    flags.DEFINE_bool("batch_mixing", True, "Split every batch over attack strengths 0..k "
                      "(Cai et al.'s batch mixing).")
    flags.DEFINE_bool("restore_best", True, "Restore the lesson's best weights when k grows.")
    flags.DEFINE_bool("record_fosc", True, "Record and log the FOSC of every training example "
                      "(FOSC paper Figure 5b; one extra inference forward/backward per batch).")


def resolve(flag_values=FLAGS):
    """(TrainConfig, curriculum kwargs) from the parsed flags."""
    fv = flag_values
    cfg = config_lib.config_from_flags(fv, default_preset=fosc_recipe.script_preset)
    if cfg.val_limit == 0:
        raise ValueError("Curriculum training advances k from the PGD-k accuracy on validation "
                         "data; --val_limit must not be 0. Received: --val_limit=0.")
    if cfg.num_steps < 1:
        raise ValueError(f"--num_steps is the curriculum's maximum K and must be >= 1. "
                         f"Received: --num_steps={cfg.num_steps}.")
    kwargs = {"patience": fv.patience, "initial_k": fv.initial_k, "batch_mixing": fv.batch_mixing,
              "restore_best": fv.restore_best, "record_fosc": fv.record_fosc}
    return cfg, kwargs


def main():
    """Runs ``tfadv-train-curriculum`` (``python scripts/train_curriculum.py``): parses the flags, trains."""
    program.run_training("curriculum", __name__, __doc__, define_flags=define_curriculum_flags,
                         resolve=resolve, logdir="runs/curriculum_digits")
