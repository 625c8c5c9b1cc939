"""Fast AT (Wong, Rice & Kolter 2020, "Fast is better than free"): FGSM from a random start.

    python scripts/train_fast.py                                  # digits, offline
    python scripts/train_fast.py --early_stop --logdir=runs/fast_guarded
    python scripts/train_fast.py --dataset=npz:../shared/data/cifar10_subset.npz --early_stop
    python scripts/train_fast.py --dataset=cifar10 --data_dir=~/tensorflow_datasets   # the release
    python scripts/train_fast.py --dataset=cifar10 --step_size=16   # alpha = 2 eps: catastrophic
                                                                    # overfitting without the guard

The training attack is FGSM-RS: delta uniform in the eps-ball, one signed step of alpha
(--step_size; default 1.25 eps) on the cross-entropy, projected to the eps-ball and the pixel
range; the start is clipped to the pixel range before the gradient (--random_start=uniform, the
CIFAR-10 release) or not (uniform_unclipped, the MNIST release). On cifar10 and mnist (and 32x32 /
28x28 npz files) unset flags take the release's settings (presets fast_cifar10 / fast_mnist):
CIFAR-10 PreAct ResNet-18 in [0,1], eps 8, alpha 10, 15 epochs of batch 128, SGD momentum 0.9, wd
5e-4, LR one triangular cycle 0 -> 0.2 -> 0 (--lr_schedule=cyclic, peak at half), clipped start;
MNIST the release's wong_mnist_cnn, eps 76.5 (0.3), alpha 95.625 (0.375), 10 epochs of batch 100,
Adam, LR 0 -> 5e-3 (at 2/5) -> 0, unclipped start. --early_stop checks the PGD-5 (step eps/4)
accuracy on a fixed training mini-batch after every epoch and, when it falls by more than
--guard_drop (from the previous check; --guard_reference=best: from the best check so far),
restores that check's weights and stops. --precision=fp16|bf16 trains in mixed precision. Sizes
are pixel levels out of 255. Run with --helpfull for every flag.
"""

from absl import flags

from tfadv import config as config_lib
from tfadv.cli import program
from tfadv.recipes import fast as fast_recipe

FLAGS = flags.FLAGS


def define_fast_flags():
    flags.DEFINE_bool("early_stop", False, "The guard against catastrophic overfitting: after "
                      "every epoch, PGD-5 accuracy on a fixed training mini-batch; a fall of more "
                      "than --guard_drop restores the previous epoch's weights and stops.")
    flags.DEFINE_float("guard_drop", 0.2, "The fall of the guard's PGD accuracy (absolute, in "
                       "(0, 1]) that stops training (the release's 0.2).")
    flags.DEFINE_enum("guard_reference", "previous", ["previous", "best"], "What the guard's fall "
                      "is measured from: the previous epoch's check (the release's) or the best "
                      "check so far, whose weights are then restored (a slow collapse too).")


def resolve(flag_values=FLAGS):
    """(TrainConfig, fast kwargs) from the parsed flags."""
    fv = flag_values
    cfg = config_lib.config_from_flags(fv, default_preset=fast_recipe.script_preset)
    alpha_given = fv["step_size"].present or str(fv.preset).startswith("fast_")
    start = fv.random_start if fv["random_start"].present else fast_recipe.release_start(fv.preset)
    return fast_recipe.training(cfg, alpha_given=alpha_given, guard=fv.early_stop,
                                guard_drop=fv.guard_drop, random_start=start,
                                guard_reference=fv.guard_reference)


def main():
    """Runs ``tfadv-train-fast`` (``python scripts/train_fast.py``): parses the flags, trains."""
    program.run_training("fast", __name__, __doc__, define_flags=define_fast_flags,
                         resolve=resolve, logdir="runs/fast_digits")
