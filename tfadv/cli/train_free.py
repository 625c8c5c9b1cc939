"""Free AT (Shafahi et al. 2019, "Adversarial Training for Free!"): m replays of every batch.

    python scripts/train_free.py                                  # digits, offline, m = 8
    python scripts/train_free.py --dataset=npz:../shared/data/mnist_subset.npz --epochs=8
    python scripts/train_free.py --dataset=cifar10 --data_dir=~/tensorflow_datasets   # the release

Each batch is replayed --replays (m) times; every replay is one optimizer step on CE(f(clip(x +
delta)), y) whose backward pass also gives delta's gradient: delta <- clip(delta + step *
sign(grad), +-eps), delta carried across the replays, the batches and the epochs (one per replica,
the first rows used by a short batch). --delta_range=project (the MNIST preset's) projects delta so
that x + delta stays in the pixel range, before the forward pass and after each step, and leaves
its gradient uncut (Wong et al.'s Free AT release); clip (the CIFAR-10 preset's, the Shafahi et al.
releases) zeroes delta's gradient where x + delta left the range. --epochs counts replays (the
paper's passes over the data): the run replays every batch m times per epoch for ceil(epochs / m)
epochs, and the LR boundaries (--lr_boundaries, in the same passes) follow the optimizer steps,
which count replays. On cifar10 and mnist (and 32x32 / 28x28 npz files) unset flags take preset
free_<dataset>: CIFAR-10 the TF release (Madry's WRN in [0,1], m 8, eps = step = 8, batch 128,
205 passes = 80k replay steps, SGD 0.1 momentum 0.9, x0.1 at passes 102/154, wd 2e-4); MNIST
Madry's mnist preset with m 4, eps = step = 76.5 (0.3) and delta projected. --step_size defaults
to --eps. Sizes are pixel levels out of 255. Run with --helpfull for every flag.
"""

from absl import flags

from tfadv import config as config_lib
from tfadv.cli import program
from tfadv.recipes import free as free_recipe

FLAGS = flags.FLAGS


def define_free_flags():
    flags.DEFINE_integer("replays", None, "m, the replays of every mini-batch, >= 1 (default: the "
                         "preset's; 8 as the CIFAR-10 release, 4 on MNIST).")
    flags.DEFINE_enum("delta_range", None, list(free_recipe.DELTA_RANGES),
                      "How delta meets the pixel range: clip (x + delta clipped, delta's gradient "
                      "zero outside the range: the Shafahi et al. releases) or project (delta "
                      "projected so x + delta stays in the range: Wong et al.'s release). "
                      "Default: the preset's.")


def resolve(flag_values=FLAGS):
    """(TrainConfig, free kwargs) from the parsed flags: unset --replays is the preset's m and an
    unset --step_size is the preset's (eps on free_*) or --eps."""
    fv = flag_values
    cfg = config_lib.config_from_flags(fv, default_preset=free_recipe.script_preset)
    given = fv["step_size"].present or (str(fv.preset).startswith("free_") and not fv["eps"].present)
    return free_recipe.training(cfg, replays=fv.replays, preset=fv.preset, step_size_given=given,
                                delta_range=fv.delta_range)


def main():
    """Runs ``tfadv-train-free`` (``python scripts/train_free.py``): parses the flags, trains."""
    program.run_training("free", __name__, __doc__, define_flags=define_free_flags,
                         resolve=resolve, logdir="runs/free_digits")
