"""Cross-check of tfadv's AutoAttack-grade attacks against torchattacks on the same network.

    pip install -e '.[crosscheck]'      # torch==2.13.0 (CPU) + torchattacks
    python scripts/crosscheck_torchattacks.py --train_digits --eps=25.5 --out_dir=runs/crosscheck
    python scripts/crosscheck_torchattacks.py --model_path=runs/madry_digits --eps=25.5
    python scripts/crosscheck_torchattacks.py --model_path=runs/madry_mnist/savedmodel \
        --dataset=npz:../shared/data/mnist_subset.npz --eps=76.5 --num_examples=1000

torchattacks attacks the Keras network itself through tfadv.interop.keras_bridge (``--network=bridge``,
the default): a torch module whose forward pass runs the Keras model in inference mode and whose
backward pass is TensorFlow's input gradient, so any architecture runs (ResNets, WideResNets,
normalising wrappers, a ``.keras`` file). ``--network=port`` instead converts a single-chain CNN layer
by layer into an independent PyTorch network (tfadv.interop.torch_port): the network's forward and
backward are then re-implemented in PyTorch too, so it also checks them. Either way the logits are
compared with Keras' on the evaluation images before anything else. Then, on the same test images and the same Linf eps, each attack runs twice — tfadv's
(``tfadv.attacks.get``) on the Keras network and torchattacks' on the PyTorch network — with the
same budgets (AutoAttack's standard settings by default: 100 iterations, 9 target classes,
5,000 Square queries, 1 restart):

    apgd_ce     tfadv apgd_ce              torchattacks.APGD(loss='ce')
    apgd_t      tfadv apgd_t               torchattacks.APGDT (n_classes-1 targets)
    fab_t       tfadv fab_t                torchattacks.FAB(multi_targeted=True), as AutoAttack's FAB-T
    square      tfadv square               torchattacks.Square(n_queries=5000, p_init=0.8)
                (window_positions=release, as torchattacks; also inside autoattack)
    autoattack  tfadv autoattack           torchattacks.AutoAttack(version='standard'), with its
                                           members' steps set to --n_iter (torchattacks builds
                                           them with its default of 10; the paper uses 100)

Robust accuracy counts an example as robust when the network still classifies the attack's output
correctly, or when that output leaves the eps-ball or the pixel range (an invalid adversarial
example; counted and reported). The script prints the Markdown table

    | attack | tfadv acc (%) | torchattacks acc (%) | diff (pp) | within tolerance |
      only tfadv fooled | only torchattacks fooled |

(the last two: per example, how many points one library fooled and the other did not; the row
``components`` is the pointwise worst case of the four single attacks of each library, beside
AutoAttack's ensemble), 
writes it to OUT_DIR/crosscheck.md and the details to OUT_DIR/crosscheck.json (atomically, after
every attack: a rerun with the same settings resumes, skipping finished attacks), and exits with
status 1 if any |diff| exceeds --tolerance (2 on a failure to run).

``--eps`` is in pixel levels out of 255 (25.5 = 0.1 of the range, MNIST's 0.3 is 76.5). With
``--train_digits`` a Madry PGD model is first trained in-process on ``--dataset`` (default digits,
the dataset's preset; override TrainConfig fields with ``--train_config=epochs=10,...``) into
OUT_DIR/model, and reused on later runs.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tfadv.interop.crosscheck_network import LOGITS_ATOL  # noqa: E402
from tfadv.interop.torchattacks_pairs import ATTACK_NAMES  # noqa: E402

flags.DEFINE_enum("network", "bridge", ["bridge", "port"], "What torchattacks attacks: bridge = "
                  "the Keras model itself (any architecture); port = its layer-by-layer PyTorch "
                  "re-implementation (single-chain CNNs; also checks the network's numerics).")
flags.DEFINE_string("model_path", None, "tfadv SavedModel dir, run dir, checkpoints dir or "
                    ".weights.h5 (a bare SavedModel is rebuilt from its recorded architecture).")
flags.DEFINE_bool("train_digits", False, "Train a small Madry model in-process on --dataset "
                  "(default digits) into OUT_DIR/model instead of loading --model_path.")
flags.DEFINE_list("train_config", [], "TrainConfig overrides for --train_digits as key=value "
                  "(e.g. epochs=10,model=madry_mnist_cnn,num_steps=10,train_limit=10000).")
flags.DEFINE_list("train_model_kwargs", [], "Architecture options for --train_digits "
                  "(e.g. capacity=4).")
flags.DEFINE_string("dataset", None, "Dataset (default: the model's; digits with --train_digits).")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("num_examples", 1000, "The first N images of the split (fewer if it is smaller).")
flags.DEFINE_float("eps", None, "Linf budget in pixel levels out of 255 (default: 25.5 with "
                   "--train_digits, else required).")
flags.DEFINE_list("attacks", list(ATTACK_NAMES), "Attacks to compare: " + ", ".join(ATTACK_NAMES))
flags.DEFINE_float("tolerance", 1.5, "Largest allowed |tfadv - torchattacks| in percentage points.")
flags.DEFINE_integer("n_iter", 100, "Iterations of APGD-CE, APGD-T and FAB-T (both libraries).")
flags.DEFINE_integer("n_queries", 5000, "Square's query budget (both libraries).")
flags.DEFINE_integer("batch_size", 500, "Images per attack call (both libraries).")
flags.DEFINE_integer("seed", 0, "Seed of both libraries' random starts / Square.")
flags.DEFINE_list("tfadv_params", [], "Extra tfadv attack parameters as attack:key=value "
                  "(e.g. square:p_init=0.5).")
flags.DEFINE_string("out_dir", None, "Where to write crosscheck.{md,json} (default: "
                    "runs/crosscheck_<model>).")
flags.DEFINE_integer("torch_threads", 1, "PyTorch intra-op threads (0: PyTorch's default); one "
                     "thread is fastest for the small CNNs this script converts.")
flags.DEFINE_bool("resume", True, "Reuse finished attacks of OUT_DIR/crosscheck.json when the "
                  "settings match.")
FLAGS = flags.FLAGS

TABLE_HEADER = ("| attack | tfadv acc (%) | torchattacks acc (%) | diff (pp) | within tolerance | "
                "only tfadv fooled | only torchattacks fooled |\n"
                "|---|---:|---:|---:|:---:|---:|---:|")


def _parse_kv(items):
    from tfadv.config import parse_model_kwargs

    return parse_model_kwargs(items)


# ------------------------------------------------------------------------------------------------
# Report.


def markdown_table(rows, tolerance):
    lines = [TABLE_HEADER]
    for row in rows:
        ok = "yes" if abs(row["diff_pp"]) <= tolerance else "**no**"
        lines.append(f"| {row['attack']} | {row['tfadv_acc']:.2f} | {row['torchattacks_acc']:.2f} | "
                     f"{row['diff_pp']:+.2f} | {ok} | {row.get('only_torchattacks_robust', '')} | "
                     f"{row.get('only_tfadv_robust', '')} |")
    return "\n".join(lines)


def attacks_fingerprint():
    """SHA-256 of tfadv's attack sources: a resumed run never mixes results of different code."""
    import glob
    import hashlib

    import tfadv.attacks

    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(os.path.dirname(tfadv.attacks.__file__), "*.py"))):
        with open(path, "rb") as f:
            digest.update(os.path.basename(path).encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


def weights_fingerprint(network):
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for v in network.variables:
        digest.update(np.ascontiguousarray(np.asarray(v.numpy(), np.float32)).tobytes())
    return digest.hexdigest()[:16]


def versions():
    import keras
    import tensorflow as tf
    import torch
    import torchattacks

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "torch": torch.__version__,
            "torchattacks": getattr(torchattacks, "__version__", "unknown")}


def main(argv):
    try:
        return _main(argv)
    except (ValueError, FileNotFoundError) as e:  # bad model path, data, conversion, parameters
        print(f"ERROR: {e}", file=sys.stderr)
        return 2


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    names = [a.strip().lower().replace("-", "_") for a in FLAGS.attacks if a.strip()]
    bad = [a for a in names if a not in ATTACK_NAMES]
    if bad or not names:
        raise app.UsageError(f"--attacks takes {', '.join(ATTACK_NAMES)}. Received: {FLAGS.attacks}.")
    if bool(FLAGS.model_path) == bool(FLAGS.train_digits):
        raise app.UsageError("Pass exactly one of --model_path and --train_digits.")
    if FLAGS.tolerance < 0:
        raise app.UsageError(f"--tolerance must be >= 0. Received: {FLAGS.tolerance}.")
    extra = {}
    for item in FLAGS.tfadv_params:
        if ":" not in item or "=" not in item:
            raise app.UsageError(f"--tfadv_params entries are attack:key=value. Received: {item!r}.")
        attack, kv = item.split(":", 1)
        extra.setdefault(attack.strip().replace("-", "_"), {}).update(_parse_kv([kv]))
    try:
        import torch  # noqa: F401
        import torchattacks  # noqa: F401
    except ImportError as e:
        raise app.UsageError(f"This script needs the crosscheck extra (pip install -e "
                             f"'.[crosscheck]'): {e}.") from None

    import numpy as np
    import torch

    if FLAGS.torch_threads > 0:
        torch.set_num_threads(FLAGS.torch_threads)
    code_fingerprint = attacks_fingerprint()  # of the attack code this process has imported

    from tfadv import atomic
    from tfadv import data as data_lib
    from tfadv import ranges as ranges_lib
    from tfadv.interop import crosscheck_network, keras_bridge, torch_port
    from tfadv.interop import torchattacks_pairs as pairs

    if FLAGS.eps is None and not FLAGS.train_digits:
        raise app.UsageError("--eps (pixel levels out of 255) is required with --model_path.")
    eps_pixels = ranges_lib.check_pixel_size(25.5 if FLAGS.eps is None else FLAGS.eps, name="eps")

    if FLAGS.train_digits:
        dataset = FLAGS.dataset or "digits"
        out_dir = FLAGS.out_dir or os.path.join("runs", "crosscheck_digits")
        try:
            overrides = crosscheck_network.check_train_overrides(_parse_kv(FLAGS.train_config))
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        network, info = crosscheck_network.train_network(
            out_dir, dataset, data_dir=FLAGS.data_dir, seed=FLAGS.seed, overrides=overrides,
            model_kwargs=_parse_kv(FLAGS.train_model_kwargs))
    else:
        network, info = crosscheck_network.load_network(FLAGS.model_path)
        dataset = FLAGS.dataset or info.get("dataset")
        if not dataset:
            raise app.UsageError("--dataset is required: the model does not record one.")
        out_dir = FLAGS.out_dir or os.path.join("runs", f"crosscheck_{info['architecture']}")
    rng = ranges_lib.get_range(info["pixel_range"])
    eps = rng.from_pixels(eps_pixels)        # the model's input units (tfadv)
    eps01 = eps_pixels / ranges_lib.PIXEL_LEVELS   # [0,1] units (torchattacks)

    ds, ds_info = data_lib.load(dataset, FLAGS.split, batch_size=1000, pixel_range=rng,
                                data_dir=FLAGS.data_dir, limit=FLAGS.num_examples)
    xs, ys = [], []
    for xb, yb in ds:
        xs.append(xb.numpy()); ys.append(yb.numpy())
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys).astype(np.int64)
    num_classes = int(network.output_shape[-1])
    if ds_info.num_classes != num_classes:
        raise ValueError(f"The model has {num_classes} classes but {dataset} has "
                         f"{ds_info.num_classes}. Received: --dataset={dataset}.")
    x01 = np.clip((x - rng.low) / rng.width, 0.0, 1.0).astype(np.float32)

    if FLAGS.network == "port":
        net01 = torch_port.with_unit_input(torch_port.to_torch(network), rng)
    else:
        net01 = keras_bridge.KerasBridge(network, rng)
    keras_logits = np.concatenate([network(x[i:i + 1000], training=False).numpy()
                                   for i in range(0, len(x), 1000)])
    torch_logits = torch_port.torch_logits(net01, x01)
    logit_diff = float(np.max(np.abs(keras_logits - torch_logits)))
    pred_agree = float(np.mean(keras_logits.argmax(1) == torch_logits.argmax(1)))
    how = "Bridged" if FLAGS.network == "bridge" else "Converted"
    print(f"{how} {info['architecture']} to PyTorch: max |logit diff| {logit_diff:.2e} on "
          f"{len(x)} {dataset} images; predictions agree on {100 * pred_agree:.2f}%.", flush=True)
    if logit_diff > LOGITS_ATOL * max(1.0, float(np.abs(keras_logits).max())):
        print(f"ERROR: the PyTorch network does not reproduce the Keras logits "
              f"(max diff {logit_diff:.3g}).", file=sys.stderr)
        return 2

    settings = {"source": str(info.get("source")), "architecture": info["architecture"],
                "dataset": dataset, "split": FLAGS.split, "num_examples": int(len(x)),
                "threat_model": "Linf", "eps_pixels": eps_pixels, "eps_input_units": eps,
                "pixel_range": rng.name, "n_iter": FLAGS.n_iter, "n_queries": FLAGS.n_queries,
                "seed": FLAGS.seed, "batch_size": FLAGS.batch_size, "tfadv_params": extra,
                "tfadv_attacks_sha256": code_fingerprint,
                "weights_sha256": weights_fingerprint(network), "network": FLAGS.network}
    json_path = os.path.join(out_dir, "crosscheck.json")
    md_path = os.path.join(out_dir, "crosscheck.md")
    done = {}
    if FLAGS.resume and os.path.isfile(json_path):
        try:
            with open(json_path, encoding="utf-8") as f:
                previous = json.load(f)
            if previous.get("settings") == json.loads(json.dumps(settings)) and \
                    previous.get("logits_max_abs_diff") is not None:
                done = {r["attack"]: r for r in previous.get("rows", [])
                        if r["attack"] not in ("clean", "components")}
        except (OSError, json.JSONDecodeError):
            done = {}

    clean_tf = keras_logits.argmax(1) == y
    clean_torch = torch_logits.argmax(1) == y
    rows = [pairs.compare("clean", clean_tf, clean_torch, FLAGS.tolerance)]
    record = {"settings": settings, "versions": versions(),
              "logits_max_abs_diff": logit_diff, "prediction_agreement": pred_agree,
              "tolerance_pp": FLAGS.tolerance, "rows": rows}

    def write():
        atomic.write_json(json_path, record)
        text = (f"Cross-check of tfadv against torchattacks {record['versions']['torchattacks']}: "
                f"{info['architecture']} on {len(x)} {dataset}/{FLAGS.split} images, Linf eps "
                f"{eps_pixels:g}/255 of {rng.name}, {FLAGS.n_iter} iterations, {FLAGS.n_queries} "
                f"Square queries, seed {FLAGS.seed}; torchattacks on --network={FLAGS.network}, "
                f"max |logit diff| Keras vs PyTorch {logit_diff:.1e}.\n\n" + markdown_table(rows, FLAGS.tolerance) + "\n")
        atomic.write_text(md_path, text)

    print(f"eps {eps_pixels:g}/255 of {rng.name} = {eps:.5g} input units; {len(x)} images; "
          f"clean accuracy {rows[0]['tfadv_acc']:.2f}% (tfadv) / {rows[0]['torchattacks_acc']:.2f}% "
          f"(torch)", flush=True)
    for name in names:
        if name in done:
            rows.append(done[name])
            print(f"  {name}: reused from {json_path}", flush=True)
            continue
        print(f"  {name}: tfadv ...", end="", flush=True)
        budgets = dict(seed=FLAGS.seed, n_iter=FLAGS.n_iter, n_queries=FLAGS.n_queries,
                       batch_size=FLAGS.batch_size)
        tf_robust, tf_info = pairs.run_tfadv(name, network, x, y, eps=eps, rng=rng,
                                             params_extra=extra, **budgets)
        print(f" {100 * tf_robust.mean():.2f}% in {tf_info['seconds']:.0f}s; torchattacks ...",
              end="", flush=True)
        th_robust, th_info = pairs.run_torch(name, net01, network, x01, x, y, eps01=eps01, rng=rng,
                                             num_classes=num_classes, **budgets)
        print(f" {100 * th_robust.mean():.2f}% in {th_info['seconds']:.0f}s", flush=True)
        row = dict(pairs.compare(name, tf_robust, th_robust, FLAGS.tolerance),
                   tfadv=tf_info, torchattacks=th_info)
        for side, side_info in (("tfadv", tf_info), ("torchattacks", th_info)):
            if side_info["invalid"]:
                print(f"  WARNING: {side} {name} returned {side_info['invalid']} images outside "
                      f"the eps-ball or range (counted as robust).", flush=True)
        rows.append(row)
        write()
    components = pairs.components_row(rows, len(x), FLAGS.tolerance)
    if components is not None:
        rows.append(components)
    write()
    print()
    print(markdown_table(rows, FLAGS.tolerance))
    print(f"\nWrote {md_path} and {json_path}", file=sys.stderr)
    failed = [r["attack"] for r in rows if abs(r["diff_pp"]) > FLAGS.tolerance + 1e-9]
    if failed:
        print(f"FAILED: |diff| > {FLAGS.tolerance} pp for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
