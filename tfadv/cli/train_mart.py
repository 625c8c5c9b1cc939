"""MART (Wang et al. 2020): boosted CE on x' + beta * KL(f(x) || f(x')) * (1 - p_y(x)).

    python scripts/train_mart.py                              # digits, offline, beta 6
    python scripts/train_mart.py --beta=0 --logdir=runs/mart_bce_only
    python scripts/train_mart.py --dataset=npz:../shared/data/cifar10_subset.npz --epochs=10
    python scripts/train_mart.py --dataset=cifar10 --data_dir=~/tensorflow_datasets  # the release

The training attack is MART's: the network in inference mode, x + 0.001*N(0,I), --num_steps sign
steps of --step_size ascending the cross-entropy, projected to the eps-ball and the pixel range
(--random_start overrides the Gaussian start). On cifar10 (and 32x32 npz files) unset flags take the
release's settings (preset mart_cifar10; train_wideresnet.py): TRADES WRN-34-10 in [0,1], eps 8
(0.031), step 1.785 (0.007), K 10, SGD 0.1 momentum 0.9, wd 7e-4, batch 128, 90 epochs (x0.1 at 75,
x0.01 at 90 as the release counts epochs), beta 6, PGD-20 evaluation with step eps/10. Other
datasets use their own preset with beta 6. Sizes are pixel levels out of 255. Run with --helpfull
for every flag.
"""

from absl import flags

from tfadv import config as config_lib
from tfadv.cli import program
from tfadv.recipes import mart as mart_recipe

FLAGS = flags.FLAGS
BETA_HELP = ("beta of MART's objective, the weight of the misclassification-aware KL term, >= 0 "
             "(default: the release's 6).")


def define_mart_flags():
    flags.DEFINE_float("beta", None, BETA_HELP)


def resolve(flag_values=FLAGS):
    """(TrainConfig, mart kwargs) from the parsed flags: unset --beta and --random_start are the
    recipe's (the preset's β; the release's Gaussian start)."""
    cfg = config_lib.config_from_flags(flag_values, default_preset=mart_recipe.script_preset)
    start_flag = flag_values["random_start"]
    return mart_recipe.training(cfg, beta=flag_values.beta, preset=flag_values.preset,
                                random_start=start_flag.value if start_flag.present else None)


def main():
    """Runs ``tfadv-train-mart`` (``python scripts/train_mart.py``): parses the flags, trains."""
    program.run_training("mart", __name__, __doc__, define_flags=define_mart_flags,
                         resolve=resolve, logdir="runs/mart_digits")
