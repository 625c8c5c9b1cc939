"""L2L-DA's Figure 2: the classification loss of PGD, L2L and L2L-DA attacks over the steps t = 1..T.

    python scripts/plot_l2lda_losses.py --model_path=runs/madry_mnist --eps=76.5 \
        --l2lda_generator=runs/l2lda_mnist --l2l_generator=runs/l2l_mnist --limit=1000

For every test image, each method produces ``--num_attacks`` (10) attacks: PGD from 10 random starts,
L2L from 10 random starts, L2L-DA with 10 samples of z (sec. 4.3). At every step t the CE of the
classifier (inference mode) is taken per attack; per image the maximum and the standard deviation over
the attacks are computed, then averaged over the images. The PNG shows the mean maximum with the mean
standard deviation as the lower error bar, as Figure 2; OUT_DIR/l2lda_losses.{png,json} are written
atomically. A method whose generator is not given is left out, and the script says so.

* PGD at step t is PGD-t (``tfadv.attacks`` "pgd", step ``--step_size``, default ε/4) from its own
  uniform random start: the loss distribution at step t is that of a trajectory's t-th point.
* L2L-DA is eq. (5) with the trained generator (``--l2lda_generator``: run or generator dir), ε_step =
  ε/4, δ⁽⁰⁾ = 0; like the paper's Figure 2(a) the generator is not fine-tuned unless
  ``--finetune_steps`` > 0 (then on --finetune_images training images, as the "l2lda" attack).
* L2L (``--l2l_generator``, Chen et al.'s one-shot generator trained with ``l2l``) is iterated as a
  learned optimiser, δ⁽ᵗ⁾ = clip(δ⁽ᵗ⁻¹⁾ + ε_step·g(x, ∇L(x + δ⁽ᵗ⁻¹⁾)), ±ε) with its raw gradient
  input, from a uniform random start δ⁽⁰⁾ ~ U(−ε, ε) per restart.
"""

import os
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from tfadv import atomic
from tfadv import checkpoints as ckpt_lib
from tfadv import attacks as attacks_lib
from tfadv import data as data_lib
from tfadv import losses as losses_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks.core import as_model_fn
from tfadv.attacks.l2lda_generator import load_generator
from tfadv.evaluation import plots
from tfadv.loading import load_for_evaluation

flags.DEFINE_string("model_path", None, "Classifier: SavedModel dir, run dir, checkpoints dir or .weights.h5.")
flags.DEFINE_string("l2lda_generator", None, "L2L-DA run dir or generator dir (omitted: no L2L-DA curve).")
flags.DEFINE_string("l2l_generator", None, "L2L run dir or generator dir (omitted: no L2L curve).")
flags.DEFINE_string("dataset", None, "Dataset (default: the one recorded with the model).")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_string("split", "test", "Split of the images.")
flags.DEFINE_integer("limit", 1000, "Number of images.")
flags.DEFINE_integer("batch_size", 100, "Batch size.")
flags.DEFINE_float("eps", 8.0, "Budget in pixel levels out of 255 (76.5 is MNIST's 0.3).")
flags.DEFINE_float("step_size", None, "Step of PGD, L2L and L2L-DA in pixel levels (default eps/4).")
flags.DEFINE_integer("num_steps", 10, "Steps T.")
flags.DEFINE_integer("num_attacks", 10, "Attacks per image: PGD/L2L restarts, L2L-DA z samples.")
flags.DEFINE_integer("finetune_steps", 0, "Fine-tune the L2L-DA generator to the classifier first (0: no).")
flags.DEFINE_integer("finetune_images", 10000, "Training images of the fine-tuning.")
flags.DEFINE_string("out_dir", None, "Output directory (default: beside the model, as eval_robustness).")
flags.DEFINE_integer("seed", 0, "Seed of the random starts and of z.")
FLAGS = flags.FLAGS

PNG = "l2lda_losses.png"
JSON = "l2lda_losses.json"


def default_out_dir(model_path: str) -> str:
    """The run directory the model came from (the one holding run_config.json), else
    ``MODEL_PATH_eval`` beside a bare SavedModel (eval_robustness.py's choice)."""
    path = os.path.abspath(model_path.rstrip("/"))
    for candidate in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        if os.path.isfile(os.path.join(candidate, ckpt_lib.RUN_CONFIG)):
            return candidate
    return path + "_eval"


def _ce(model_fn, x, y):
    return losses_lib.ce(logits=model_fn(x), labels=y)


def pgd_losses(model_fn, x, y, *, eps, step_size, num_steps, num_attacks, pixel_range, seed):
    """(A, B, T) CE of PGD-t, t = 1..T, each from its own seeded uniform random start."""
    attack = attacks_lib.get("pgd", eps=eps, step_size=step_size, num_steps=num_steps,
                             random_start="uniform", pixel_range=pixel_range)
    out = np.zeros([num_attacks, len(y), num_steps], np.float32)
    for a in range(num_attacks):
        for t in range(1, num_steps + 1):
            tf.random.set_seed(seed + 1009 * a + t)
            out[a, :, t - 1] = _ce(model_fn, attack(model_fn, x, y, num_steps=t), y)
    return out


def l2lda_losses(attack, model_fn, x, y, *, num_attacks):
    """(A, B, T) CE along eq. (5) for ``num_attacks`` samples of z (the "l2lda" attack's
    trajectory and seeded z_k)."""
    out = np.zeros([num_attacks, len(y), attack.num_steps], np.float32)
    for a in range(num_attacks):
        z = attack.sample_z(len(y), a)
        for t, x_adv in enumerate(attack.trajectory(model_fn, x, y, z)):
            out[a, :, t] = _ce(model_fn, x_adv, y)
    return out


def l2l_losses(generator, model_fn, x, y, *, eps, step_size, num_steps, num_attacks, pixel_range,
               seed):
    """(A, B, T) CE of the L2L generator iterated as a learned optimiser (module docstring) from
    ``num_attacks`` uniform random starts."""
    rng = ranges_lib.get_range(pixel_range)
    latent = int(generator.l2lda_config["latent_dim"])
    z = tf.zeros([len(y), latent])
    out = np.zeros([num_attacks, len(y), num_steps], np.float32)
    for a in range(num_attacks):
        delta = tf.random.stateless_uniform(x.shape, seed=[seed, a], minval=-eps, maxval=eps)
        x_adv = tf.clip_by_value(x + delta, rng.low, rng.high)
        for t in range(num_steps):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x_adv)
                total = tf.reduce_sum(_ce(model_fn, x_adv, y))
            grad = tape.gradient(total, x_adv)
            delta = tf.clip_by_value(x_adv - x + step_size * generator(
                [x, grad, x_adv - x, z, y], training=False), -eps, eps)
            x_adv = tf.clip_by_value(x + delta, rng.low, rng.high)
            out[a, :, t] = _ce(model_fn, x_adv, y)
    return out


def summarize(losses):
    """(A, N, T) -> per step the mean over images of the max and of the std over the A attacks."""
    losses = np.asarray(losses, np.float64)
    return {"steps": list(range(1, losses.shape[-1] + 1)),
            "mean_max_loss": losses.max(axis=0).mean(axis=0).tolist(),
            "mean_std_loss": losses.std(axis=0).mean(axis=0).tolist()}


def plot(curves, path, *, title):
    """Figure 2: mean max loss per step with the mean std as the lower error bar."""
    return plots.lower_error_bars(
        {label: (c["steps"], c["mean_max_loss"], c["mean_std_loss"]) for label, c in curves.items()},
        path, title=title, xlabel="step t", ylabel="classification loss (CE)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    for name in ("num_steps", "num_attacks", "limit", "batch_size"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name} must be >= 1. Received: --{name}={FLAGS[name].value}.")
    model, info = load_for_evaluation(FLAGS.model_path)
    model_fn = as_model_fn(model, False)
    dataset = FLAGS.dataset or info.get("dataset")
    if not dataset:
        raise app.UsageError("--dataset is required: the model does not record one.")
    rng = ranges_lib.get_range(info["pixel_range"])
    eps_px = ranges_lib.check_pixel_size(FLAGS.eps, name="eps")
    step_px = eps_px / 4 if FLAGS.step_size is None else ranges_lib.check_pixel_size(
        FLAGS.step_size, name="step_size", allow_subpixel=True)
    eps, step = rng.from_pixels(eps_px), rng.from_pixels(step_px)
    common = dict(num_steps=FLAGS.num_steps, num_attacks=FLAGS.num_attacks)

    l2lda_attack = l2l_generator = None
    omitted = {}
    if FLAGS.l2lda_generator:
        l2lda_attack = attacks_lib.get("l2lda", generator_path=FLAGS.l2lda_generator, eps=eps,
                                       step_size=step, num_steps=FLAGS.num_steps,
                                       num_samples=FLAGS.num_attacks, pixel_range=rng,
                                       seed=FLAGS.seed, finetune_steps=FLAGS.finetune_steps or None)
        if FLAGS.finetune_steps > 0:
            train, _ = data_lib.load(dataset, "train", batch_size=FLAGS.batch_size, pixel_range=rng,
                                     data_dir=FLAGS.data_dir, limit=FLAGS.finetune_images,
                                     training=True, augment=False, seed=FLAGS.seed)
            print(f"Fine-tuning the L2L-DA generator: {l2lda_attack.prepare(model_fn, train)}",
                  file=sys.stderr, flush=True)
    else:
        omitted["L2L-DA"] = "no --l2lda_generator given"
    if FLAGS.l2l_generator:
        l2l_generator = load_generator(FLAGS.l2l_generator)
    else:
        omitted["L2L"] = "no --l2l_generator given"
    for label, why in omitted.items():
        print(f"Omitting the {label} curve: {why}.", file=sys.stderr, flush=True)

    ds, ds_info = data_lib.load(dataset, FLAGS.split, batch_size=FLAGS.batch_size, pixel_range=rng,
                                data_dir=FLAGS.data_dir, limit=FLAGS.limit, training=False)
    parts = {"PGD": [], "L2L": [], "L2L-DA": []}
    for i, (x, y) in enumerate(ds):
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.cast(y, tf.int32)
        seed = FLAGS.seed + 100_003 * i
        parts["PGD"].append(pgd_losses(model_fn, x, y, eps=eps, step_size=step, pixel_range=rng,
                                       seed=seed, **common))
        if l2l_generator is not None:
            parts["L2L"].append(l2l_losses(l2l_generator, model_fn, x, y, eps=eps, step_size=step,
                                           pixel_range=rng, seed=seed, **common))
        if l2lda_attack is not None:
            parts["L2L-DA"].append(l2lda_losses(l2lda_attack, model_fn, x, y,
                                                num_attacks=FLAGS.num_attacks))
    curves = {label: summarize(np.concatenate(p, axis=1)) for label, p in parts.items() if p}
    num_images = int(sum(a.shape[1] for a in parts["PGD"]))
    out_dir = FLAGS.out_dir or default_out_dir(FLAGS.model_path)
    result = {"model_path": os.path.abspath(FLAGS.model_path), "dataset": dataset,
              "split": FLAGS.split, "num_images": num_images, "eps_pixels": eps_px,
              "step_pixels": step_px, "pixel_range": str(rng), "num_steps": FLAGS.num_steps,
              "num_attacks": FLAGS.num_attacks, "finetune_steps": FLAGS.finetune_steps,
              "generators": {"L2L-DA": FLAGS.l2lda_generator, "L2L": FLAGS.l2l_generator},
              "curves": curves, "omitted": omitted}
    os.makedirs(out_dir, exist_ok=True)
    atomic.write_json(os.path.join(out_dir, JSON), result)
    plot(curves, os.path.join(out_dir, PNG),
         title=f"{info['architecture']} on {dataset}: eps {eps_px:g}/255, {num_images} images")
    for label, c in curves.items():
        print(f"{label}: mean max loss " + " ".join(f"{v:.3f}" for v in c["mean_max_loss"]))
    print(f"Wrote {os.path.join(out_dir, PNG)} and {JSON}", file=sys.stderr)


if __name__ == "__main__":
    flags.mark_flag_as_required("model_path")
    app.run(main)
