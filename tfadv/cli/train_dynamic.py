"""Dynamic adversarial training (Wang et al., ICML 2019, sec. 4.1, Algorithm 1): PGD whose examples
stop at FOSC <= c_t, with c_t = max(c_max - t*c_max/T', 0) decreasing per epoch.

    python scripts/train_dynamic.py                                    # digits, offline
    python scripts/train_dynamic.py --dataset=npz:../shared/data/mnist_subset.npz
    python scripts/train_dynamic.py --dataset=cifar10 --data_dir=~/tensorflow_datasets  # paper

On mnist/cifar10 (and npz files of their shapes) unset flags take the paper's setting (presets
fosc_mnist / fosc_cifar10, sec. 5.1): its 4-/8-layer CNN, 10-step PGD of step eps/4 from a random
start, eps 0.3 (76.5 pixel levels) / 8, SGD 0.01 momentum 0.9, weight decay 1e-4, batch 128, LR /10 at
epochs 20, 40 of 50 (MNIST) / 60, 100 of 120 (CIFAR-10), c_max 0.5, T' 40 / 100. Elsewhere the
dataset's preset and T' = 0.8 x epochs. The FOSC distribution of the training examples is logged each
epoch (TensorBoard histogram, LOGDIR/fosc/*.npy, LOGDIR/fosc.png). Sizes are pixel levels out of
255. Run with --helpfull for every flag.
"""

from absl import flags

from tfadv import config as config_lib
from tfadv.cli import program
from tfadv.recipes import fosc as fosc_recipe

FLAGS = flags.FLAGS


def define_dynamic_flags():
    flags.DEFINE_float("c_max", 0.5, "Maximum FOSC value c_max (sec. 4.1; 0.5 in the paper).")
    flags.DEFINE_float("t_prime", None, "FOSC control epoch T': c_t reaches 0 at epoch T' (default: "
                       "40 on MNIST, 100 on CIFAR-10, else 0.8 x epochs).")
    flags.DEFINE_enum("fosc_reference", "natural", ["natural", "start"], "x0 of FOSC: the natural "
                      "image (paper) or the random-start point (the authors' release).")
    flags.DEFINE_bool("release_loss_weighting", False, "Weight each example's loss by its own CE "
                      "from the second epoch on (the release's hidden sample_weight; not in the paper).")
    flags.DEFINE_bool("record_fosc", True, "Record and log the FOSC of every training example "
                      "(one extra inference forward/backward per batch).")


def resolve(flag_values=FLAGS):
    """(TrainConfig, dynamic kwargs) from the parsed flags."""
    fv = flag_values
    cfg = config_lib.config_from_flags(fv, default_preset=fosc_recipe.script_preset)
    t_prime = (fv.t_prime if fv.t_prime is not None
               else fosc_recipe.default_t_prime(fv.preset, cfg.epochs))
    kwargs = {"c_max": fv.c_max, "t_prime": t_prime, "fosc_reference": fv.fosc_reference,
              "release_loss_weighting": fv.release_loss_weighting, "record_fosc": fv.record_fosc}
    return cfg, kwargs


def main():
    """Runs ``tfadv-train-dynamic`` (``python scripts/train_dynamic.py``): parses the flags, trains."""
    program.run_training("dynamic", __name__, __doc__, define_flags=define_dynamic_flags,
                         resolve=resolve, logdir="runs/dynamic_digits")
