"""Mixed precision in attacks: speed and robust accuracy of attacks run on a bf16/fp16 copy of a
model, against the same attacks in fp32, in one run (issue 20, item 4).

    python scripts/bench_attack_precision.py --model_path=runs/cifar/madry \
        --dataset=npz:../shared/data/cifar10_subset.npz --eps=8 --num_examples=200
    python scripts/bench_attack_precision.py --model_path=RUN --attacks=pgd-20,apgd-ce \
        --precisions=fp32,bf16,fp16 --repeats=2

Each attack runs against the model's low-precision copy (``tfadv.wrappers.low_precision_copy``:
the same layers and weights under Keras' ``mixed_bfloat16``/``mixed_float16`` policy, float32
logits), so its forward and backward passes compute in bf16/fp16 while its steps, projections and
clipping stay float32 (the attacks cast what they get). Accuracy is always that of the fp32 model
on the attack's output: a low-precision attack can only report a *weaker* or *stronger* attack,
never a different model. Rows are timed in interleaved rounds (``--repeats`` after one untimed
warm-up round) so that a shared machine's load hits every precision alike. Printed: seconds,
ratio to fp32, robust accuracy, its change in pp against fp32, and the per-example disagreement
(points fooled only in fp32 / only in low precision). The library's attacks run in fp32 unless a
caller does this: this script measures whether doing so pays.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

PRECISIONS = ("fp32", "bf16", "fp16")

flags.DEFINE_string("model_path", None, "A run directory, SavedModel, .keras file ... "
                    "(as eval_robustness.py --model_path; a functional Keras model is needed).")
flags.DEFINE_string("dataset", "digits", "Dataset of the test images.")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_integer("num_examples", 200, "First test images attacked.")
flags.DEFINE_integer("batch_size", 100, "Attack batch.")
flags.DEFINE_float("eps", 8.0, "Linf budget in pixel levels out of 255.")
flags.DEFINE_float("step_size", None, "PGD step in pixel levels (default: the spec's).")
flags.DEFINE_list("attacks", ["pgd-20"], "Attack specs (eval_robustness.py's syntax).")
flags.DEFINE_list("precisions", list(PRECISIONS), "Subset of fp32, bf16, fp16 (fp32 always runs: "
                  "the reference).")
flags.DEFINE_integer("repeats", 1, "Timed rounds (each row's time is the median).")
flags.DEFINE_string("json_out", None, "Also write the rows as JSON (atomically).")
FLAGS = flags.FLAGS


def check_flags() -> list:
    unknown = [p for p in FLAGS.precisions if p not in PRECISIONS]
    if unknown:
        raise app.UsageError(f"--precisions must be a subset of {list(PRECISIONS)}. "
                             f"Received: precisions={','.join(FLAGS.precisions)}")
    for name in ("num_examples", "batch_size", "repeats"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name} must be >= 1. Received: {name}={FLAGS[name].value}")
    if not FLAGS.model_path:
        raise app.UsageError("--model_path is required. Received: model_path=None")
    return ["fp32"] + [p for p in dict.fromkeys(FLAGS.precisions) if p != "fp32"]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    precisions = check_flags()
    import numpy as np
    import tensorflow as tf

    from tfadv import atomic, wrappers
    from tfadv import data as data_lib
    from tfadv import evaluation as eval_lib
    from tfadv import loading

    model, info = loading.load_for_evaluation(FLAGS.model_path)
    rng = info["pixel_range"]
    specs = eval_lib.parse_list(",".join(FLAGS.attacks), eps=FLAGS.eps, pixel_range=rng,
                                step_size=FLAGS.step_size, seed=0)
    copies = {p: wrappers.low_precision_copy(model, p) for p in precisions}
    ds, _ = data_lib.load(FLAGS.dataset, "test", batch_size=FLAGS.batch_size, pixel_range=rng,
                          data_dir=FLAGS.data_dir, limit=FLAGS.num_examples, training=False)
    batches = [(tf.constant(x), tf.cast(tf.constant(y), tf.int32)) for x, y in ds]

    def fp32_fn(x):
        return model(x, training=False)

    def run(precision, attack):
        attacked = copies[precision]
        correct = []
        for x, y in batches:
            x_adv = attack(lambda z: attacked(z, training=False), x, y)
            correct.append(np.argmax(fp32_fn(x_adv), -1) == y.numpy())
        return np.concatenate(correct)

    rows = []
    for label, spec in specs.items():
        times = {p: [] for p in precisions}
        masks = {}
        for round_ in range(FLAGS.repeats + 1):  # round 0: warm-up (tracing), untimed
            for p in precisions:
                start = time.perf_counter()
                masks[p] = run(p, spec.attack)
                if round_:
                    times[p].append(time.perf_counter() - start)
        base_s, base = float(np.median(times["fp32"])), masks["fp32"]
        for p in precisions:
            seconds = float(np.median(times[p]))
            rows.append({"attack": label, "precision": p, "seconds": seconds,
                         "vs_fp32": seconds / base_s, "robust_accuracy": 100.0 * masks[p].mean(),
                         "delta_pp": 100.0 * (masks[p].mean() - base.mean()),
                         "only_fp32_fooled": int(np.sum(~base & masks[p])),
                         "only_this_fooled": int(np.sum(base & ~masks[p]))})
    print(f"# Attacks in low precision: {FLAGS.model_path}, {len(base)} images of "
          f"{FLAGS.dataset}, eps {FLAGS.eps:g}/255, median of {FLAGS.repeats} round(s); "
          f"TensorFlow {tf.__version__}, "
          f"{'GPU' if tf.config.list_physical_devices('GPU') else f'{os.cpu_count()} CPU cores'}")
    print("| attack | precision | s | x fp32 | robust acc. (%) | change (pp) | "
          "fooled only in fp32 / only here |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['attack']} | {r['precision']} | {r['seconds']:.2f} | {r['vs_fp32']:.2f} | "
              f"{r['robust_accuracy']:.2f} | {r['delta_pp']:+.2f} | "
              f"{r['only_fp32_fooled']} / {r['only_this_fooled']} |")
    if FLAGS.json_out:
        atomic.write_json(FLAGS.json_out, {"rows": rows, "model_path": FLAGS.model_path,
                                           "num_examples": int(len(base))})


if __name__ == "__main__":
    app.run(main)
