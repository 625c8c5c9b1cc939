"""Attack throughput of tfadv beside cleverhans.tf2, ART and torchattacks, in one process (issue 8).

    pip install -e '.[cpu,bench]'        # the peers live in the `bench` extra, never in the core
    python scripts/bench_attacks.py                              # ResNet-20, batch 128, PGD-10 + FGSM
    python scripts/bench_attacks.py --repeats=5 --json_out=runs/bench_attacks.json

The network is the CIFAR ResNet-20 of ``models/resnet_cifar.py`` (3 stages x 3 basic blocks,
16/32/64 filters, option-A shortcuts) on random 32x32x3 images in [0,1]; torchattacks attacks its
PyTorch twin (same layers, the Keras weights copied over; the script prints the largest logit
difference between the two). Every framework runs PGD-k (eps ``--eps``, step ``--step_size``
pixel levels out of 255, uniform random start, k = ``--num_steps``) and FGSM (one step of eps)
on the same batch, BatchNorm in inference mode:

    tfadv           tfadv.attacks.get("pgd"/"fgsm") called eagerly (as a user calls it)
    cleverhans.tf2  cleverhans.tf2.attacks projected_gradient_descent / fast_gradient_method
    ART             TensorFlowV2Classifier + ProjectedGradientDescent / FastGradientMethod
    torchattacks    torchattacks.PGD / torchattacks.FGSM on the PyTorch twin

Each framework's *limit* is one forward+backward pass with respect to the input (the only work an
attack step cannot avoid), compiled as well as the framework allows (a ``tf.function`` whose
tape watches only the input, ``watch_accessed_variables=False``, for TensorFlow; plain autograd for
PyTorch), divided by k: an attack at 1.0x its limit spends nothing
beyond its k gradient passes (for tfadv the pass is its own ``tfadv.attacks.gradients``
``input_gradient``, compiled alone).
The calls are interleaved round by round (``--repeats`` rounds after
``--warmup`` untimed ones) so that the load of a shared machine hits every row alike; only ratios
measured in one run count. A peer that is not importable is a "not installed" row; a peer that
fails is a "failed" row naming the error.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from tfadv.interop.resnet_twin import torch_twin  # noqa: E402  (the twin lives in the library)

FRAMEWORKS = ("tfadv", "cleverhans.tf2", "art", "torchattacks")
PEER_MODULES = {"cleverhans.tf2": "cleverhans.tf2.attacks.projected_gradient_descent",
                "art": "art.estimators.classification", "torchattacks": "torchattacks"}
# Targets of issue 8 for tfadv's PGD-k, printed beside the measured ratios.
TARGET_VS_LIMIT = 0.95
TARGET_VS_CLEVERHANS = 1.1

flags.DEFINE_string("model", "resnet20_cifar", "Architecture from the models registry (a CIFAR "
                    "ResNet: resnet20_cifar; the PyTorch twin follows its layers).")
flags.DEFINE_integer("batch_size", 128, "Images per attack call.")
flags.DEFINE_integer("image_size", 32, "Height and width of the random images.")
flags.DEFINE_integer("num_classes", 10, "Classes of the network.")
flags.DEFINE_integer("num_steps", 10, "k of PGD-k.")
flags.DEFINE_float("eps", 8.0, "Linf budget in pixel levels out of 255 of [0,1].")
flags.DEFINE_float("step_size", 2.0, "PGD step in pixel levels out of 255 of [0,1].")
flags.DEFINE_integer("repeats", 3, "Timed rounds (each row's time is the median of its rounds).")
flags.DEFINE_integer("warmup", 1, "Untimed rounds first (tracing, kernel caches).")
flags.DEFINE_list("frameworks", list(FRAMEWORKS), "Subset of " + ", ".join(FRAMEWORKS))
flags.DEFINE_integer("torch_threads", 0, "PyTorch intra-op threads (0: PyTorch's default).")
flags.DEFINE_integer("seed", 0, "Seed of the network's weights and the images.")
flags.DEFINE_string("json_out", None, "Also write the rows as JSON here.")
FLAGS = flags.FLAGS


# ------------------------------------------------------------------------------------------------
# The network and its PyTorch twin.


def keras_network(name, image_size, num_classes, seed):
    import keras

    from tfadv import models

    keras.utils.set_random_seed(seed)
    return models.build(name, num_classes=num_classes, input_shape=(image_size, image_size, 3))


# ------------------------------------------------------------------------------------------------
# One callable per row.


def tf_rows(network, x, y, eps, step, k):
    """tfadv's attacks and TensorFlow's limit (one compiled input-gradient pass)."""
    import tensorflow as tf

    from tfadv import attacks
    from tfadv.attacks import core
    from tfadv.attacks import gradients

    xt, yt = tf.constant(x), tf.constant(y)
    model_fn = core.ModelFn(network, training=False)

    # tfadv's own input-gradient pass (the tape watches only the input), compiled alone.
    @tf.function
    def input_gradient(images, labels):
        return gradients.input_gradient(model_fn, gradients.ce_objective, images, (labels,))[2]

    pgd = attacks.get("pgd", eps=eps, step_size=step, num_steps=k, random_start="uniform")
    fgsm = attacks.get("fgsm", eps=eps)
    return {"limit": lambda: input_gradient(xt, yt).numpy(),
            "pgd": lambda: pgd(network, xt, yt).numpy(),
            "fgsm": lambda: fgsm(network, xt, yt).numpy()}


def cleverhans_rows(network, x, y, eps, step, k):
    import numpy as np
    import tensorflow as tf
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    xt, yt = tf.constant(x), tf.constant(y)

    def model_fn(images):
        return network(images, training=False)

    return {"pgd": lambda: projected_gradient_descent(
                model_fn, xt, eps, step, k, np.inf, clip_min=0.0, clip_max=1.0, y=yt,
                rand_init=True).numpy(),
            "fgsm": lambda: fast_gradient_method(model_fn, xt, eps, np.inf, clip_min=0.0,
                                                 clip_max=1.0, y=yt).numpy()}


def art_rows(network, x, y, eps, step, k):
    import keras
    import numpy as np
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    num_classes = int(network.output_shape[-1])
    classifier = TensorFlowV2Classifier(
        model=network, nb_classes=num_classes, input_shape=tuple(x.shape[1:]),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True), clip_values=(0.0, 1.0))
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=step, max_iter=k,
                                   num_random_init=1, batch_size=len(x), verbose=False)
    fgsm = FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=len(x))
    return {"limit": lambda: classifier.loss_gradient(x, onehot),
            "pgd": lambda: pgd.generate(x=x, y=onehot),
            "fgsm": lambda: fgsm.generate(x=x, y=onehot)}


def torch_rows(twin, x, y, eps, step, k):
    import numpy as np
    import torch
    import torchattacks

    xt = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
    yt = torch.from_numpy(y.astype(np.int64))

    def input_gradient():
        images = xt.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(twin(images), yt, reduction="sum")
        return torch.autograd.grad(loss, images)[0]

    pgd = torchattacks.PGD(twin, eps=eps, alpha=step, steps=k, random_start=True)
    fgsm = torchattacks.FGSM(twin, eps=eps)
    return {"limit": input_gradient, "pgd": lambda: pgd(xt, yt), "fgsm": lambda: fgsm(xt, yt)}


# ------------------------------------------------------------------------------------------------


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def time_rounds(calls, repeats, warmup):
    """Median seconds per call of every callable, interleaved round by round."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times = {key: [] for key in calls}
    for _ in range(repeats):
        for key, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {key: median(v) for key, v in times.items()}


def run_benchmark(*, model, batch_size, image_size, num_classes, num_steps, eps_pixels,
                  step_pixels, repeats, warmup, frameworks, torch_threads=0, seed=0):
    """Returns ``(rows, notes)``: one row per framework and attack/limit, img/s and ratios."""
    import numpy as np

    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        raise app.UsageError(f"Unknown frameworks {unknown}; expected a subset of {FRAMEWORKS}.")
    eps, step = eps_pixels / 255.0, step_pixels / 255.0
    network = keras_network(model, image_size, num_classes, seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch_size, image_size, image_size, 3)).astype(np.float32)
    y = rng.integers(0, num_classes, batch_size).astype(np.int32)
    notes = []
    status = {}
    for fw in frameworks:
        if fw != "tfadv":
            try:
                importlib.import_module(PEER_MODULES[fw])
            except ImportError as e:
                status[fw] = f"not installed ({type(e).__name__}: {e})"
                continue
        status[fw] = "ok"
    calls = {}
    for fw in frameworks:
        if status[fw] != "ok":
            continue
        try:
            if fw == "tfadv":
                rows = tf_rows(network, x, y, eps, step, num_steps)
                rows = {("TF limit" if key == "limit" else fw, key): fn
                        for key, fn in rows.items()}
            elif fw == "cleverhans.tf2":
                rows = {(fw, key): fn for key, fn in
                        cleverhans_rows(network, x, y, eps, step, num_steps).items()}
            elif fw == "art":
                rows = {(fw, key): fn for key, fn in
                        art_rows(network, x, y, eps, step, num_steps).items()}
            else:
                import torch

                if torch_threads:
                    torch.set_num_threads(torch_threads)
                twin = torch_twin(network)
                with torch.no_grad():
                    ref = network(x[:8], training=False).numpy()
                    out = twin(torch.from_numpy(np.transpose(x[:8], (0, 3, 1, 2)).copy())).numpy()
                notes.append(f"PyTorch twin: max |logit difference| to the Keras network "
                             f"{float(np.max(np.abs(ref - out))):.2e}")
                rows = torch_rows(twin, x, y, eps, step, num_steps)
                rows = {("PyTorch limit" if key == "limit" else fw, key): fn
                        for key, fn in rows.items()}
            for key, fn in rows.items():
                # Fail here, per framework, rather than inside the timed rounds. tfadv's first
                # eager call runs op by op and its second traces the compiled attack: both untimed.
                for _ in range(2 if fw == "tfadv" else 1):
                    fn()
            calls.update(rows)
        except Exception as e:  # noqa: BLE001 - a peer's failure is a row, not a crash
            status[fw] = f"failed ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    seconds = time_rounds(calls, repeats, warmup) if calls else {}
    out = []
    limits = {}
    for (fw, kind), sec in seconds.items():
        if kind == "limit":
            limits[fw] = batch_size / (sec * num_steps)  # k passes
    tf_limit, torch_limit = limits.get("TF limit"), limits.get("PyTorch limit")
    ch = {kind: batch_size / s for (fw, kind), s in seconds.items() if fw == "cleverhans.tf2"}
    for (fw, kind), sec in seconds.items():
        if kind == "limit":
            label, ips = f"limit of PGD-{num_steps} (1 fwd+bwd w.r.t. x, x{num_steps})", limits[fw]
            own = None
        else:
            label = {"pgd": f"PGD-{num_steps}", "fgsm": "FGSM"}[kind]
            ips = batch_size / sec
            own_limit = {"torchattacks": torch_limit, "art": limits.get("art")}.get(fw, tf_limit)
            if own_limit is None:
                own = None
            else:  # FGSM is one gradient pass: its limit is k times PGD-k's
                own = ips / (own_limit * (num_steps if kind == "fgsm" else 1))
        out.append({"framework": fw, "attack": label, "kind": kind, "img_per_s": ips,
                    "vs_own_limit": own,
                    "vs_cleverhans": (ips / ch[kind]) if kind in ch else None,
                    "status": "ok"})
    for fw in frameworks:
        if status[fw] != "ok":
            out.append({"framework": fw, "attack": "-", "kind": None, "img_per_s": None,
                        "vs_own_limit": None, "vs_cleverhans": None, "status": status[fw]})
    return out, notes


def format_table(rows, *, num_steps):
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["| framework | attack | img/s | x own limit | x cleverhans.tf2 | status |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['framework']} | {r['attack']} | {num(r['img_per_s'], '.1f')} | "
                     f"{num(r['vs_own_limit'], '.3f')} | {num(r['vs_cleverhans'], '.3f')} | "
                     f"{r['status']} |")
    return "\n".join(lines)


def target_lines(rows, *, num_steps):
    """tfadv's PGD-k against issue 8's targets (met / missed / not measured)."""
    pgd = next((r for r in rows if r["framework"] == "tfadv" and r["kind"] == "pgd"), None)
    out = []
    for what, key, target in ((f"tfadv PGD-{num_steps} / TF limit", "vs_own_limit",
                               TARGET_VS_LIMIT),
                              (f"tfadv PGD-{num_steps} / cleverhans.tf2 PGD-{num_steps}",
                               "vs_cleverhans", TARGET_VS_CLEVERHANS)):
        value = None if pgd is None else pgd[key]
        verdict = "not measured" if value is None else ("met" if value >= target else "MISSED")
        out.append(f"{what} = {'-' if value is None else format(value, '.3f')} "
                   f"(target >= {target}): {verdict}")
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import tensorflow as tf

    rows, notes = run_benchmark(
        model=FLAGS.model, batch_size=FLAGS.batch_size, image_size=FLAGS.image_size,
        num_classes=FLAGS.num_classes, num_steps=FLAGS.num_steps, eps_pixels=FLAGS.eps,
        step_pixels=FLAGS.step_size, repeats=FLAGS.repeats, warmup=FLAGS.warmup,
        frameworks=FLAGS.frameworks, torch_threads=FLAGS.torch_threads, seed=FLAGS.seed)
    print(f"# Attack throughput: {FLAGS.model}, batch {FLAGS.batch_size}, "
          f"{FLAGS.image_size}x{FLAGS.image_size}x3, PGD-{FLAGS.num_steps} eps {FLAGS.eps:g}/255 "
          f"step {FLAGS.step_size:g}/255, FGSM eps {FLAGS.eps:g}/255; median of {FLAGS.repeats} "
          f"interleaved rounds; TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores")
    print(format_table(rows, num_steps=FLAGS.num_steps))
    for line in notes + target_lines(rows, num_steps=FLAGS.num_steps):
        print(line)
    if FLAGS.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json_out)), exist_ok=True)
        with open(FLAGS.json_out, "w", encoding="utf-8") as f:
            json.dump({"flags": {k: FLAGS[k].value for k in (
                "model", "batch_size", "image_size", "num_steps", "eps", "step_size", "repeats")},
                "rows": rows, "notes": notes}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
