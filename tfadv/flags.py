"""absl flag definitions shared by the scripts; :func:`tfadv.config.config_from_flags` resolves them
against the recipes' presets (:mod:`tfadv.recipes`).

Sizes are pixel levels out of 255: ``--eps=8`` is 8/255 of the range in [0,1] and 16/255 in [-1,1];
MNIST's 0.3 is ``--eps=76.5``. Flags left unset (None) come from the dataset's preset.
"""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS


def define_data_flags():
    flags.DEFINE_string("dataset", "digits", "mnist, cifar10, cifar100, svhn, digits or npz:PATH.")
    flags.DEFINE_string("data_dir", None, "tfds data directory holding prepared datasets.")
    flags.DEFINE_string("pixel_range", None, "[0,1] or [-1,1] (default: the preset's).")
    flags.DEFINE_integer("train_limit", None, "Use only the first N training examples.")
    flags.DEFINE_integer("eval_limit", None, "Evaluate on only the first N test examples.")
    flags.DEFINE_integer("seed", 0, "Random seed (data order, initialisation, attacks).")


def define_attack_flags():
    flags.DEFINE_float("eps", None, "Perturbation budget in pixel levels out of 255.")
    flags.DEFINE_float("step_size", None, "Attack step in pixel levels out of 255.")
    flags.DEFINE_integer("num_steps", None, "Attack iterations during training.")
    flags.DEFINE_enum("random_start", "uniform", ["uniform", "uniform_unclipped", "gaussian", "none"],
                      "Attack start (uniform_unclipped: uniform in the eps-ball, not clipped to the "
                      "pixel range before the first gradient).")
    flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Threat model.")
    flags.DEFINE_float("eps_warmup_epochs", 0.0, "Grow the training eps and step linearly from 0 "
                       "to full over this many epochs (0: full eps from the start).")
    flags.DEFINE_bool("attack_training", False,
                      "Generate training examples with BN in training mode (Madry's release).")


def define_distribute_flags():
    """--num_gpus, --strategy and --logical_cpus (tfadv.distribute.strategy_from_flags): the
    training commands' and the evaluation's."""
    flags.DEFINE_integer("num_gpus", 0, "0: default device; N: MirroredStrategy over N GPUs.")
    flags.DEFINE_enum("strategy", "auto", ["auto", "multi_worker"], "auto: --num_gpus decides; "
                      "multi_worker: MultiWorkerMirroredStrategy over the TF_CONFIG cluster.")
    flags.DEFINE_integer("logical_cpus", 0, "Testing aid: split the host CPU into N logical "
                         "devices; --num_gpus=N then mirrors over them when fewer GPUs are visible.")


def define_training_flags():
    flags.DEFINE_string("preset", None, "Defaults to use (default: the dataset's name).")
    flags.DEFINE_string("model", None, "Architecture name from the models registry.")
    flags.DEFINE_list("model_kwargs", [], "Architecture options as key=value (e.g. depth=28, "
                      "per_image_standardization=true, capacity=8).")
    flags.DEFINE_string("init_checkpoint", None, "Start from these weights (a run directory or "
                        ".weights.h5 of the same architecture), e.g. a natural pre-training run.")
    flags.DEFINE_integer("epochs", None, "Training epochs.")
    flags.DEFINE_string("augment", None, "Training augmentation: crop_flip (pad-4 random crop + "
                        "horizontal flip), crop, flip, or none (default: the dataset's own: crop_flip "
                        "for cifar10/cifar100, crop for svhn, none for mnist, digits and npz:).")
    flags.DEFINE_integer("batch_size", None, "GLOBAL batch size: summed over all replicas and "
                         "workers (per-replica batch = batch_size / replicas; must divide).")
    flags.DEFINE_enum("optimizer", None, ["sgd", "adam"], "Optimizer.")
    flags.DEFINE_float("lr", None, "Initial learning rate.")
    flags.DEFINE_list("lr_boundaries", None, "Epochs at which the LR is multiplied by --lr_decay.")
    flags.DEFINE_float("lr_decay", None, "LR multiplier at each boundary.")
    flags.DEFINE_float("momentum", None, "SGD momentum.")
    flags.DEFINE_float("weight_decay", None, "Coefficient c of c*sum(w^2)/2 on kernels (TF l2_loss).")
    flags.DEFINE_string("logdir", "runs/madry_digits", "Run directory: checkpoints, TensorBoard, "
                        "metadata, SavedModel, robustness report.")
    define_distribute_flags()
    flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16", "fp16"], "Keras dtype policy: fp32, "
                      "mixed_bfloat16 or mixed_float16 (loss scaling); logits/losses stay fp32.")
    flags.DEFINE_bool("attack_fp32", False, "With --precision=bf16/fp16, generate the training "
                      "attack in float32.")
    flags.DEFINE_bool("xla", False, "Compile the train/test steps with XLA (jit_compile).")
    flags.DEFINE_enum("lr_scaling", None, ["none", "linear"], "linear: LR = --lr x global batch / "
                      "256 with a linear warm-up from --lr when above 256 (Goyal et al.; the "
                      "tensorpack ImageNet code). Default: the preset's.")
    flags.DEFINE_float("lr_warmup_epochs", None, "Warm-up length of --lr_scaling=linear "
                       "(default: the preset's, 5).")
    flags.DEFINE_enum("lr_schedule", None, ["piecewise", "cyclic"], "piecewise: --lr decayed by "
                      "--lr_decay at --lr_boundaries; cyclic: one triangular cycle 0 -> --lr -> 0 "
                      "over the run, stepped per update (Fast AT). Default: the preset's.")
    flags.DEFINE_float("lr_peak_fraction", None, "Where the cyclic LR peaks, as a fraction of the "
                       "run's updates (default: the preset's; 0.5 on CIFAR-10, 0.4 on MNIST).")
    flags.DEFINE_bool("resume", True, "Continue a killed run from LOGDIR/backup (epoch, weights, "
                      "optimizer state) when its configuration matches; --noresume starts "
                      "afresh, which a --logdir holding a run allows only with --overwrite.")
    flags.DEFINE_bool("overwrite", False, "Start afresh in a --logdir that holds another run "
                      "(a different configuration, or with --noresume): move its files aside to "
                      "LOGDIR.replaced-<UTC time> first. Without it such a start is refused.")
    flags.DEFINE_integer("val_limit", None, "Validation examples attacked each epoch (0: none; "
                         "default: the preset's; held out: capped at a tenth of the training set).")
    flags.DEFINE_enum("val_split", "heldout", ["heldout", "test"], "Validation data during "
                      "training: heldout = the last --val_limit training examples, excluded from "
                      "training (see tfadv.data.holdout); test = the test split (then the test set "
                      "steers training, and the run records it).")
    flags.DEFINE_integer("checkpoint_every", 1, "Epochs between checkpoints.")
    flags.DEFINE_string("eval_attacks", None, "Attacks run on the test split after training "
                        "(see scripts/eval_robustness.py --helpfull).")
    flags.DEFINE_float("eval_step_size", None, "Default step of PGD-k in the final evaluation.")
    flags.DEFINE_float("time_budget", None, "Stop training after this many training seconds "
                       "(wall time less validation and --track_every checks; for comparing "
                       "defenses at equal cost).")
    flags.DEFINE_enum("time_clock", "wall", ["wall", "cpu"], "Clock of --time_budget and "
                      "--track_every: wall time, or this process's CPU seconds (all threads), "
                      "which other jobs on a shared machine barely change.")
    flags.DEFINE_integer("track_every", 0, "Every this many optimizer steps, evaluate "
                         "--track_attacks on the first --track_examples test images and log them "
                         "against training seconds in LOGDIR/robustness_over_time.json (0: off).")
    flags.DEFINE_string("track_attacks", "clean,pgd-20", "Attacks of --track_every (the "
                        "evaluation's spec syntax).")
    flags.DEFINE_integer("track_examples", 500, "Test images of --track_every.")
    flags.DEFINE_integer("verbose", 2, "Keras fit verbosity: 0 silent; 1 a progress bar (for a "
                         "terminal); 2 one line per epoch, plus progress lines within long epochs "
                         "(for a log file).")


def flag_values() -> dict:
    """Values of the flags defined by tfadv and by the running script (for run_metadata.json)."""
    import sys

    script = sys.argv[0] if sys.argv else ""
    out = {}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.startswith("tfadv") or module == script or module == "__main__":
            out.update({f.name: f.value for f in module_flags})
    return dict(sorted(out.items()))


def define_awp_flags():
    """--awp_gamma and --awp_warmup_epochs: AWP on top of a defense (train_madry, train_trades;
    :mod:`tfadv.recipes.awp`)."""
    flags.DEFINE_float("awp_gamma", None, "AWP's gamma, the weight perturbation's size relative to "
                       "each kernel's norm (released: 0.01 with Madry/PGD AT, 0.005 with TRADES); "
                       "unset or 0: no AWP.")
    flags.DEFINE_integer("awp_warmup_epochs", None, "Epochs trained without the weight "
                         "perturbation (default: the release's, 0 for PGD AT, 10 for TRADES).")
