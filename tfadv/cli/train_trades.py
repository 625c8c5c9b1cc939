"""TRADES (Zhang et al. 2019, eq. 5, Algorithm 1): CE on clean images + beta * KL(f(x) || f(x')).

    python scripts/train_trades.py                              # digits, offline, beta 6
    python scripts/train_trades.py --beta=1 --logdir=runs/trades_beta1_digits
    python scripts/train_trades.py --dataset=npz:../shared/data/mnist_subset.npz --epochs=10
    python scripts/train_trades.py --dataset=mnist --data_dir=~/tensorflow_datasets   # Table 5
    python scripts/train_trades.py --dataset=cifar10 --data_dir=~/tensorflow_datasets # Table 5
    python scripts/train_trades.py --dataset=cifar10 --preset=trades_cifar10_beta1    # 1/lambda=1
    python scripts/train_trades.py --norm=l2 --eps=127.5 --num_steps=10               # L2, eps 0.5
    python scripts/train_trades.py --awp_gamma=0.005          # TRADES-AWP, after 10 warm-up epochs

The training attack is TRADES' inner maximisation: the network in inference mode, x + 0.001*N(0,I),
--num_steps sign steps of --step_size ascending the summed KL to the clean prediction (L2:
normalised steps of 2*eps/K unless --step_size is given), projected to the eps-ball and the pixel
range. On cifar10/mnist (and 28x28 / 32x32 npz files) unset flags take the paper's settings (preset
trades_<dataset>; sec. 5.3 and the release): CIFAR-10 TRADES WRN-34-10 in [0,1], eps 8 (0.031),
step 1.785 (0.007), K 10, SGD 0.1 momentum 0.9, wd 2e-4, batch 128, 100 epochs (x0.1 at 75/90/100
as the release counts epochs), beta 6; MNIST SmallCNN, eps 76.5 (0.3), step 2.55 (0.01), K 40,
SGD 0.01, 100 epochs, beta 6 (Table 5; --preset=trades_mnist_beta1 is the release's beta 1). Other
datasets use their own preset with beta 6. Sizes are pixel levels out of 255. Run with --helpfull
for every flag.
"""

from absl import flags

from tfadv import config as config_lib
from tfadv import flags as tfadv_flags
from tfadv.cli import program
from tfadv.recipes import awp as awp_recipe
from tfadv.recipes import trades as trades_recipe

FLAGS = flags.FLAGS


def define_trades_flags():
    tfadv_flags.define_awp_flags()
    flags.DEFINE_float("beta", None, "beta = 1/lambda of eq. (5), >= 0 (default: the preset's; 6 "
                       "on cifar10/mnist as in Table 5, 1 with --preset=trades_*_beta1; else 6).")


def resolve(flag_values=FLAGS):
    """(TrainConfig, trades kwargs) from the parsed flags."""
    fv = flag_values
    cfg = config_lib.config_from_flags(fv, default_preset=trades_recipe.script_preset)
    if cfg.norm == "l2" and not fv["eps"].present:
        raise ValueError("TRADES' L2 variant has no paper radius and the preset's eps is an Linf "
                         "budget; pass --eps in pixel levels (0.5 in [0,1] is --eps=127.5). "
                         "Received: --norm=l2 without --eps.")
    beta = fv.beta if fv.beta is not None else trades_recipe.preset_beta(fv.preset)
    random_start = fv.random_start if fv["random_start"].present else "gaussian"
    # TRADES' attack, built once; the returned config records the step and start actually used.
    cfg, kwargs = trades_recipe.training(cfg, beta=beta, random_start=random_start,
                                         step_size_given=fv["step_size"].present)
    kwargs.update(awp_recipe.defense_kwargs("trades", gamma=fv.awp_gamma,
                                            warmup_epochs=fv.awp_warmup_epochs))
    return cfg, kwargs


def main():
    """Runs ``tfadv-train-trades`` (``python scripts/train_trades.py``): parses the flags, trains."""
    program.run_training("trades", __name__, __doc__, define_flags=define_trades_flags,
                         resolve=resolve, logdir="runs/trades_digits")
