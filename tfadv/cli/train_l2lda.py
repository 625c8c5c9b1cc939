"""L2L-DA (Jang et al. 2019, Algorithm 1): adversarial training against a learned recursive,
stochastic generator (eq. 5), which maximises L_cls + lam * L_div (eq. 6-8) through its unrolled
recursion while the classifier minimises CE on [x; x_adv(z1); x_adv(z2)].

    python scripts/train_l2lda.py                                  # digits, offline
    python scripts/train_l2lda.py --dataset=npz:../shared/data/mnist_subset.npz \\
        --init_checkpoint=runs/natural_mnist                       # LeNet-5, Table 1(a)/2 setting
    python scripts/train_l2lda.py --dataset=mnist --data_dir=~/tensorflow_datasets
    python scripts/train_l2lda.py --dataset=cifar10 --data_dir=~/tensorflow_datasets \\
        --init_checkpoint=runs/natural_cifar10                     # ResNet-20 from clean weights
    python scripts/train_l2lda.py --norecursive                    # Table 1(a) "R X" (one-shot)
    python scripts/train_l2lda.py --nodiversity                    # Table 1(a) "D X"
    python scripts/train_l2lda.py --nouse_delta --noclass_conditional   # Table 1(b)
    python scripts/train_l2lda.py --norecursive --nodiversity --latent_dim=0 --nouse_delta \\
        --noclass_conditional --nonormalize_grad                   # L2L* (Chen et al.)

T is --num_steps and the generator's step eps_step is --step_size (pixel levels out of 255). On
mnist/cifar10 (and 28x28 / 32x32 npz files) unset flags take the paper's settings (preset
l2lda_<dataset>; sec. 5.1 and the release): MNIST LeNet-5, eps 76.5 (0.3), step 19.125 (eps/4),
T 10, batch 100, SGD 0.01 momentum 0.9 for both networks, weight decay 1e-5, gradient-norm clip 1,
lam 0.02, 167 epochs (100k iterations of 60k images; LR x0.1 at half); CIFAR-10 ResNet-20, eps 8,
step 2, lam 0.5, 200 epochs. The paper starts the classifier from clean pre-trained weights: pass
--init_checkpoint (a natural run, e.g. scripts/train_natural.py). digits: the digits preset with
T 10 and lam 0.02. --norecursive makes T 1 and the step eps (eq. 4) unless they are given. The
generator is saved with the run under LOGDIR/generator/ (tfadv.attacks.l2lda_generator.load_generator).
Validation and the final report use PGD-k / CW-k from the clean input (--eval_attacks). Run with
--helpfull for every flag.
"""

import dataclasses

from absl import flags

from tfadv import config as config_lib
from tfadv.cli import program
from tfadv.recipes import l2lda as l2lda_recipe

FLAGS = flags.FLAGS


def define_l2lda_flags():
    flags.DEFINE_float("lam", None, "lambda of eq. (8), >= 0 (default: the preset's; 0.02 on "
                       "mnist/digits, 0.5 on cifar10 and elsewhere).")
    flags.DEFINE_bool("recursive", True, "Recursive generator of eq. (5) (Table 1(a) R); "
                      "--norecursive: one-shot, T 1 and step eps unless given (eq. 4).")
    flags.DEFINE_bool("diversity", True, "Add the diversity loss L_div of eq. (7) (Table 1(a) D).")
    flags.DEFINE_bool("use_delta", True, "Feed the accumulated perturbation to the generator "
                      "(Table 1(b) delta).")
    flags.DEFINE_bool("class_conditional", True, "Class-conditional BN in the generator "
                      "(Table 1(b) y); else plain BN.")
    flags.DEFINE_integer("latent_dim", 8, "Size of the generator's latent z (0: deterministic, "
                         "needs --nodiversity).")
    flags.DEFINE_bool("normalize_grad", True, "Normalise the gradient input per example and "
                      "channel (L2L* uses the raw gradient).")
    flags.DEFINE_integer("base_filters", 64, "Channels of the generator's first block.")
    flags.DEFINE_enum("step_reduction", "mean", ["mean", "sum"], "Average (eq. 6-7) or sum (the "
                      "release) L_cls and L_div over the T steps.")


def resolve(flag_values=FLAGS):
    """(TrainConfig, l2lda kwargs) from the parsed flags."""
    fv = flag_values
    if not fv.recursive and fv.num_steps is None:
        fv.num_steps = 1  # the one-shot generator: eq. (4)
    cfg = config_lib.config_from_flags(fv, default_preset=l2lda_recipe.script_preset)
    if cfg.norm != "linf":
        raise ValueError("L2L-DA's recursion projects to an Linf ball (eq. 5, Proj_S). "
                         f"Received: --norm={cfg.norm}.")
    if cfg.num_steps < 1:
        raise ValueError(f"--num_steps (T of eq. 5) must be >= 1. Received: {cfg.num_steps!r}.")
    if not fv.recursive and not fv["step_size"].present:
        cfg = dataclasses.replace(cfg, step_size=cfg.eps)
    lam = fv.lam if fv.lam is not None else l2lda_recipe.preset_lambda(fv.preset)
    if not lam >= 0:
        raise ValueError(f"--lam must be >= 0. Received: {lam!r}.")
    # The generator's sizes in input units and the validation attack, built once.
    kwargs = l2lda_recipe.training(
        cfg, lam=float(lam), recursive=fv.recursive, diversity=fv.diversity,
        latent_dim=fv.latent_dim, use_delta=fv.use_delta, class_conditional=fv.class_conditional,
        normalize_grad=fv.normalize_grad, base_filters=fv.base_filters,
        step_reduction=fv.step_reduction)
    # The generator starts from delta = 0 (no random start): record what is used.
    cfg = dataclasses.replace(cfg, random_start="none")
    return cfg, kwargs


def main():
    """Runs ``tfadv-train-l2lda`` (``python scripts/train_l2lda.py``): parses the flags, trains."""
    program.run_training("l2lda", __name__, __doc__, define_flags=define_l2lda_flags,
                         resolve=resolve, logdir="runs/l2lda_digits")
