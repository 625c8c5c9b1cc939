"""AutoAttack throughput of a distributed evaluation over 1, 2 and 8 devices, side by side (issue 18);
with ``--compare``, tfadv ``autoattack`` vs ``autoattack-fast`` vs torchattacks (issue 20).

    python scripts/bench_evaluation.py                          # 8 logical CPUs: 1, 2, 8 replicas
    python scripts/bench_evaluation.py --devices=1,2 --num_examples=64 --json_out=runs/bench_eval.json
    python scripts/bench_evaluation.py --gpus                   # over the visible GPUs instead
    python scripts/bench_evaluation.py --compare=mnist,digits,cifar --compare_examples=200

``--compare=MODELS`` (of mnist, digits, cifar): per model, on the same network and the same first
``--compare_examples`` test images, tfadv's ``autoattack`` (standard), tfadv's ``autoattack-fast``
(A3 + Square-1000) and torchattacks' ``AutoAttack(version='standard')`` on the network's PyTorch
twin (same eps): wall time, forward and backward passes (per example-pass), robust accuracy and
the per-example disagreement, then issue 20's targets met or not
(:mod:`tfadv.interop.aa_comparison`). The networks are Madry PGD models trained briefly in-process
into ``--models_dir``/NAME/model and reused on later runs: MNIST CNN (2 epochs of PGD-7 on 3,000
images of ``../shared/data/mnist_subset.npz`` at eps 25.5, not Madry's 76.5: too few epochs here),
digits CNN (6 epochs of its preset's PGD-7, eps 25.5), CIFAR ResNet-20 (1 epoch of PGD-7 on 1,000 images of
``../shared/data/cifar10_subset.npz``, eps 8; that subset's test split is 860 images of the
official CIFAR-10 *training* batches). Needs PyTorch and torchattacks
(``pip install -e '.[crosscheck]'``).

``tfadv.evaluation.evaluate`` with the model passes split over a MirroredStrategy (what
``evaluate(distribute=strategy)`` does: :mod:`tfadv.evaluation.sharding`) of a small-budget AutoAttack (APGD-CE,
APGD-T, FAB-T, Square; ``--n_iter`` iterations, ``--n_queries`` queries) on a randomly initialised
CIFAR ResNet-20 and random 32x32x3 images labelled with the network's own predictions (every point
is clean-correct, so every member has work). Each device count evaluates the same batches; the
rounds are interleaved (``--repeats`` after one untimed warm-up) so that the load of a shared
machine hits every row alike. Printed: images/s per device count, its ratio to one device, and
whether the per-example robustness mask equals the one-device mask. On a CPU host the devices are
logical CPUs sharing the same cores: expect no speed-up there; the ratios show the overhead.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_list("devices", ["1", "2", "8"], "Device counts to compare (the first is the "
                  "reference of the ratios and masks).")
flags.DEFINE_bool("gpus", False, "Mirror over GPUs instead of logical CPU devices.")
flags.DEFINE_integer("num_examples", 32, "Images evaluated per device count and round.")
flags.DEFINE_integer("batch_size", 32, "Attack batch (the global batch, split over the replicas).")
flags.DEFINE_integer("n_iter", 5, "Iterations of APGD-CE, APGD-T and FAB-T.")
flags.DEFINE_integer("n_queries", 50, "Queries of Square.")
flags.DEFINE_integer("repeats", 2, "Timed rounds.")
flags.DEFINE_string("json_out", None, "Also write the rows as JSON (atomically).")
flags.DEFINE_list("compare", [], "Models (mnist, digits, cifar) on which to compare autoattack, "
                  "autoattack-fast and torchattacks' AutoAttack instead of the device scaling.")
flags.DEFINE_integer("compare_examples", 200, "Test images per model of --compare.")
flags.DEFINE_list("compare_model_path", [], "NAME=PATH: compare on this trained model (a run "
                  "directory or .keras file, as eval_robustness.py --model_path) instead of "
                  "training NAME's brief one; NAME one of --compare.")
flags.DEFINE_list("compare_eps", [], "NAME=LEVELS: eps of NAME's comparison in pixel levels out "
                  "of 255 (default: 25.5 for mnist and digits, 8 for cifar), e.g. mnist=76.5 "
                  "for a model trained at Madry's 0.3; NAME one of --compare.")
flags.DEFINE_string("models_dir", "runs/bench_evaluation", "Where --compare trains (and then "
                    "reuses) its models.")
flags.DEFINE_integer("torch_threads", 0, "PyTorch intra-op threads (0: PyTorch's default).")
FLAGS = flags.FLAGS


def _counts() -> list:
    try:
        counts = [int(d) for d in FLAGS.devices]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise app.UsageError(f"--devices must be positive integers. Received: {FLAGS.devices}.")
    for name in ("num_examples", "batch_size", "n_iter", "n_queries", "repeats"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name} must be positive. Received: {FLAGS[name].value}.")
    return counts


def compare_eps() -> dict:
    """--compare_eps as {name: eps in pixel levels}, every item checked."""
    eps = {}
    for item in FLAGS.compare_eps:
        name, _, value = item.partition("=")
        try:
            eps[name] = float(value)
        except ValueError:
            eps[name] = -1.0
        if name not in FLAGS.compare or not 0 < eps[name] <= 255:
            raise app.UsageError("--compare_eps takes NAME=LEVELS (0 < LEVELS <= 255) for models "
                                 f"named in --compare. Received: --compare_eps={item}")
    return eps


def compare_main() -> None:
    """``--compare``: the three evaluations per model, the table and the targets."""
    from tfadv.interop import aa_comparison

    unknown = sorted(set(FLAGS.compare) - set(aa_comparison.MODELS))
    if unknown or FLAGS.compare_examples < 1:
        raise app.UsageError(f"--compare takes models of {list(aa_comparison.MODELS)} and "
                             f"--compare_examples a positive count. Received: --compare="
                             f"{','.join(FLAGS.compare)}, --compare_examples={FLAGS.compare_examples}.")
    paths = dict(item.partition("=")[::2] for item in FLAGS.compare_model_path)
    if any(not path or name not in FLAGS.compare for name, path in paths.items()):
        raise app.UsageError("--compare_model_path takes NAME=PATH for models named in --compare. "
                             f"Received: --compare_model_path={','.join(FLAGS.compare_model_path)}")
    eps_by_name = compare_eps()
    try:
        aa_comparison.require_torchattacks()
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    from tfadv import atomic, loading, ranges
    from tfadv.interop import crosscheck_network, resnet_twin

    report, lines = {}, [aa_comparison.TABLE_HEAD]
    for name in FLAGS.compare:
        dataset, eps_pixels, overrides = aa_comparison.TRAINING[name]
        eps_pixels = eps_by_name.get(name, eps_pixels)
        if name in paths:
            network, info = loading.load_for_evaluation(paths[name])
        else:
            network, info = crosscheck_network.train_network(
                os.path.join(FLAGS.models_dir, name), dataset, overrides=overrides)
        rng = ranges.get_range(info["pixel_range"])
        x, y = aa_comparison.test_images(dataset, rng, FLAGS.compare_examples)
        rows = aa_comparison.compare(
            network, x, y, eps=rng.from_pixels(eps_pixels),
            pixel_range=rng.name, batch_size=FLAGS.batch_size,
            resnet_twin=resnet_twin.torch_twin if name == "cifar" else None,
            torch_threads=FLAGS.torch_threads)
        lines.append(aa_comparison.table(name, len(x), rows))
        met = aa_comparison.targets(rows)
        report[name] = {"rows": {k: {f: v for f, v in r.items() if f != "robust"}
                                 for k, r in rows.items()},
                        "targets": met, "eps_pixels": eps_pixels, "dataset": dataset}
        print("\n".join([aa_comparison.TABLE_HEAD, lines[-1]]), flush=True)
        print(f"{name} targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}"
                                              for k, v in met.items()), flush=True)
    print("\n".join(lines))
    if FLAGS.json_out:
        atomic.write_json(FLAGS.json_out, {"compare": report,
                                           "compare_examples": FLAGS.compare_examples})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    if FLAGS.compare:
        return compare_main()
    counts = _counts()
    import tensorflow as tf

    if not FLAGS.gpus:  # before TensorFlow initialises its devices
        from tfadv import distribute

        distribute.configure_logical_cpus(max(counts))
    import numpy as np

    import tfadv.models
    from tfadv import atomic, attacks, evaluation
    from tfadv.attacks.model_fn import as_model_fn
    from tfadv.evaluation import sharding

    kind = "GPU" if FLAGS.gpus else "CPU"
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    if max(counts) > len(devices):
        raise app.UsageError(f"--devices asks for {max(counts)} {kind} devices; {len(devices)} "
                             f"are visible. Received: --devices={','.join(FLAGS.devices)}.")
    model = tfadv.models.build("resnet20_cifar", input_shape=(32, 32, 3), num_classes=10)
    x = np.random.default_rng(0).random((FLAGS.num_examples, 32, 32, 3), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=-1).astype(np.int32)
    batches = [(x[i:i + FLAGS.batch_size], y[i:i + FLAGS.batch_size])
               for i in range(0, len(x), FLAGS.batch_size)]
    budgets = {"apgd_ce": {"n_iter": FLAGS.n_iter}, "apgd_t": {"n_iter": FLAGS.n_iter},
               "fab_t": {"n_iter": FLAGS.n_iter}, "square": {"n_queries": FLAGS.n_queries}}
    specs = {"AutoAttack": attacks.get("autoattack", eps=8 / 255, seed=0, attack_params=budgets)}
    # What evaluate(distribute=strategy) runs against, built once per device count so that the
    # attacks' compiled functions (keyed by the model callable) are traced in the warm-up only.
    targets = {n: model if n == 1 else sharding.shard(
        as_model_fn(model), tf.distribute.MirroredStrategy(devices[:n])) for n in counts}
    seconds = {n: [] for n in counts}
    masks = {}
    for round_index in range(FLAGS.repeats + 1):  # round 0: warm-up (tracing), not timed
        for n in counts:
            start = time.perf_counter()
            result = evaluation.evaluate(targets[n], batches, specs, pixel_range="[0,1]",
                                         progress=None)
            if round_index:
                seconds[n].append(time.perf_counter() - start)
            masks[n] = result.worst_case
    reference = counts[0]
    rows = []
    print(f"AutoAttack (n_iter={FLAGS.n_iter}, n_queries={FLAGS.n_queries}) on ResNet-20, "
          f"{FLAGS.num_examples} images, batch {FLAGS.batch_size}, {kind} devices")
    print(f"| devices | images/s | vs {reference} device(s) | same mask as {reference} |")
    print("|---|---|---|---|")
    best = {n: min(seconds[n]) for n in counts}
    for n in counts:
        rate = FLAGS.num_examples / best[n]
        ratio = best[reference] / best[n]
        same = bool(np.array_equal(masks[n], masks[reference]))
        rows.append({"devices": n, "kind": kind, "images_per_s": rate, "ratio": ratio,
                     "same_mask": same, "seconds": seconds[n]})
        print(f"| {n} | {rate:.2f} | {ratio:.2f}x | {'yes' if same else 'NO'} |")
    if FLAGS.json_out:
        atomic.write_json(FLAGS.json_out, {"rows": rows, "num_examples": FLAGS.num_examples,
                                           "batch_size": FLAGS.batch_size, "n_iter": FLAGS.n_iter,
                                           "n_queries": FLAGS.n_queries})


if __name__ == "__main__":
    app.run(main)
