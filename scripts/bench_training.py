"""Wall time of one training step of each defense, divided by a clean step, in one run (issue 8).

    python scripts/bench_training.py                       # ResNet-20, batch 128, 32x32x3
    python scripts/bench_training.py --steps=5 --repeats=3 --json_out=runs/bench_training.json
    python scripts/bench_training.py --defenses=clean,madry_pgd7 \
        --variants=fp32,bf16,fp16,fp32+xla,bf16+xla,bf16+attack_fp32

Every defense is built by ``tfadv.defenses.get(name, network)`` around its own copy of the CIFAR
ResNet-20 of ``models/resnet_cifar.py`` (same weights), compiled with SGD (momentum 0.9) and stepped with
``train_on_batch`` on the same random batch in [0,1]. Rows:

    clean         natural training (the unit: one forward+backward+update)
    madry_pgd7    Madry et al., PGD-7 (8/255, step 2/255, uniform start)
    bat_rmc_la    BAT, R-MC-LA: one MC-targeted step of 8/255 from a random start, adversarial
                  labels from the same inference-mode clean logits as the target
    trades_k10    TRADES, K=10 KL steps of 0.007 from a Gaussian start, beta 6
    dynamic       Dynamic AT, PGD-10 step eps/4 with the FOSC stop (c_max 0.5, epoch 0: the
                  strongest early stopping) and its FOSC recording
    l2lda         L2L-DA with its default generator (a "not available" row until
                  ``tfadv.defenses.DEFENSES.lookup("l2lda")`` works)

``track_clean`` (an extra inference forward for clean training metrics) is off for every row
unless ``--track_clean``. Each row prints the measured ratio to the clean step, the ideal ratio
from its count of passes (a forward+backward pass "fb" counts 1 whatever it differentiates, a lone
inference forward "f" 1/3), the row's OWN peak memory and its extra memory over the clean step of
the same variant (``--memory``): on a GPU, TensorFlow's peak device memory with the statistics
reset before each row's steps; on a CPU, a process per row (``--memory=process``, the default
there) that builds only that row's network and defense, takes its warm-up and timed steps and
reports its peak resident set size (``ru_maxrss``) - a process's peak RSS never falls, so rows
measured one after the other in one process would all show the largest row's figure. The defenses are timed round by round (``--repeats`` rounds of ``--steps`` steps
after ``--warmup`` untimed steps each) so that a shared machine's load hits every row alike.

``--variants`` (default ``fp32`` only: the table above) repeats every requested defense under
each precision / XLA variant of ``VARIANTS``, built the way ``tfadv.experiment.train`` builds a
``--precision``/``--xla``/``--attack_fp32`` run: network, defense and ``compile()`` inside
``tfadv.distribute.precision_policy`` with ``tfadv.distribute.float32_logits`` on the network,
``compile(jit_compile=xla)`` (Keras' ``compile`` wraps the optimizer in a LossScaleOptimizer under
``mixed_float16``, as in training), and ``attack_fp32=True`` given to every defense with an attack
(not ``clean``). ``fp32`` is always measured (the unit of the extra column). All variants' rows
are timed in the same rounds; ``x clean step`` is the ratio to the clean step of the SAME variant
(the targets apply to it) and ``x fp32 (same defense)`` the ratio to the same defense's fp32 row.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

DEFENSES = ("clean", "madry_pgd7", "bat_rmc_la", "trades_k10", "dynamic", "l2lda")
# Issue 8's targets: training-step time / clean-step time.
TARGETS = {"madry_pgd7": 8.5, "bat_rmc_la": 2.6, "trades_k10": 13.0}


class Variant(NamedTuple):
    """How a row's defense is built: training's ``--precision``, ``--xla``, ``--attack_fp32``."""

    precision: str = "fp32"     # a key of tfadv.distribute.PRECISIONS
    xla: bool = False           # compile(jit_compile=...)
    attack_fp32: bool = False   # trace make_adversarial in float32 under a mixed policy


VARIANTS = {
    "fp32": Variant(),
    "bf16": Variant(precision="bf16"),
    "fp16": Variant(precision="fp16"),
    "fp32+xla": Variant(xla=True),
    "bf16+xla": Variant(precision="bf16", xla=True),
    "bf16+attack_fp32": Variant(precision="bf16", attack_fp32=True),
}

flags.DEFINE_string("model", "resnet20_cifar", "Architecture from the models registry.")
flags.DEFINE_integer("batch_size", 128, "Images per training step.")
flags.DEFINE_integer("image_size", 32, "Height and width of the random images.")
flags.DEFINE_integer("num_classes", 10, "Classes of the network.")
flags.DEFINE_integer("steps", 3, "Timed training steps per defense and round.")
flags.DEFINE_integer("repeats", 2, "Rounds (a row's time per step is the median over rounds).")
flags.DEFINE_integer("warmup", 2, "Untimed steps per defense first (tracing).")
flags.DEFINE_list("defenses", list(DEFENSES), "Subset of " + ", ".join(DEFENSES))
flags.DEFINE_list("variants", ["fp32"], "Precision/XLA variants, a subset of " +
                  ", ".join(VARIANTS) + " (fp32 is always measured).")
flags.DEFINE_bool("track_clean", False, "Keep the defenses' extra clean-metrics forward.")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the batch.")
flags.DEFINE_string("json_out", None, "Also write the rows as JSON here.")
flags.DEFINE_enum("memory", "auto", ["auto", "process", "gpu", "off"],
                  "Each row's own peak memory: 'gpu' (TensorFlow's device peak, reset per row), "
                  "'process' (a process per row, its peak RSS), 'off'; 'auto' is 'gpu' when a GPU "
                  "is present, else 'process'.")
flags.DEFINE_string("memory_row", None, "Internal (--memory=process): measure only the row "
                    "VARIANT/DEFENSE in this process and print its peak RSS as JSON.")
FLAGS = flags.FLAGS


# (forward+backward passes, lone inference forwards) per training step, track_clean off.
PASSES = {
    "clean": (1, 0),
    "madry_pgd7": (7 + 1, 0),           # 7 attack steps + the training pass
    "bat_rmc_la": (1 + 1, 1),           # 1 attack step + training; 1 clean forward (target, y')
    "trades_k10": (10 + 2, 1),          # 10 KL steps + training on x and x'; clean forward for KL
    "dynamic": (10 + 1 + 1, 0),         # <= 10 PGD steps + FOSC recording + training
}


def ideal_ratio(name, track_clean):
    if name not in PASSES:
        return None, "n/a"
    fb, f = PASSES[name]
    if track_clean and name != "clean":
        f += 1
    text = f"{fb} fb" + (f" + {f} f" if f else "")
    return fb + f / 3.0, ("<= " if name == "dynamic" else "") + text


def parse_variants(names):
    """``--variants`` as ``[(name, Variant)]``, ``fp32`` first and always present."""
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise app.UsageError(f"Unknown variants {unknown}; expected a subset of {list(VARIANTS)}. "
                             f"Received: variants={','.join(names)}")
    ordered = ["fp32"] + [n for n in dict.fromkeys(names) if n != "fp32"]
    return [(n, VARIANTS[n]) for n in ordered]


def _from_recipe(defense, recipe, *args):
    """A builder of ``defense`` with the paper's sizes from ``tfadv.recipes.<recipe>`` (the
    defenses take input units only; the recipe converts its pixel levels for ``pixel_range``)."""

    def builder(get, network, pixel_range, **kwargs):
        import importlib

        recipe_kwargs = importlib.import_module(f"tfadv.recipes.{recipe}").defense_kwargs(
            *args, pixel_range=pixel_range)
        return get(defense, network, **recipe_kwargs, **kwargs)

    return builder


# Row name -> builder(get, network, pixel_range, **kwargs); get is tfadv.defenses.get. Madry: PGD-7
# of 2 within 8 pixels; BAT: R-MC-LA; TRADES: K = 10; Dynamic: 10 steps of eps/4; L2L-DA: CIFAR-10.
BUILDERS = {
    "clean": lambda get, network, pixel_range, **kw: get("natural", network, **kw),
    "madry_pgd7": _from_recipe("madry", "madry"),
    "bat_rmc_la": _from_recipe("bat", "bat", "R-MC-LA"),
    "trades_k10": _from_recipe("trades", "trades"),
    "dynamic": _from_recipe("dynamic", "fosc"),
    "l2lda": _from_recipe("l2lda", "l2lda", "cifar10"),
}


def build(name, network, pixel_range="[0,1]", track_clean=False, attack_fp32=False):
    """The defense ``name`` around ``network`` (raises LookupError/ValueError when unavailable).
    ``attack_fp32`` is passed (as ``tfadv.experiment.train`` does) to every defense with an
    attack; ``clean`` has none."""
    from tfadv import defenses

    if name not in BUILDERS:
        raise app.UsageError(f"Unknown defense; expected one of {DEFENSES}. Received: {name!r}")
    kwargs = {"track_clean": False if name == "clean" else track_clean}
    if attack_fp32 and name != "clean":
        kwargs["attack_fp32"] = True
    return BUILDERS[name](defenses.get, network, pixel_range, **kwargs)


def gpu_peak_mib(tf, fn):
    """Runs ``fn`` and returns TensorFlow's peak memory on GPU:0 during it (MiB), the statistics
    reset first, so the figure is this window's own."""
    tf.config.experimental.reset_memory_stats("GPU:0")
    fn()
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20


def peak_rss_mib():
    """This process's peak resident set size so far (MiB; ``ru_maxrss`` is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_mode(requested, tf):
    """``--memory=auto`` resolved: ``gpu`` when TensorFlow sees a GPU, else ``process``."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if requested == "gpu" and not gpu:
        raise app.UsageError(f"--memory=gpu needs a GPU; TensorFlow sees none. Received: "
                             f"memory={requested}")
    return ("gpu" if gpu else "process") if requested == "auto" else requested


MEMORY_KINDS = {"gpu": "GPU peak", "process": "peak RSS"}


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def batch_and_weights(*, model, batch_size, image_size, num_classes, seed):
    """The random batch in [0,1] (labels too) and the network's initial weights of ``seed``."""
    import keras
    import numpy as np

    from tfadv import models

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch_size, image_size, image_size, 3)).astype(np.float32)
    y = rng.integers(0, num_classes, batch_size).astype(np.int32)
    keras.utils.set_random_seed(seed)
    reference = models.build(model, num_classes=num_classes,
                             input_shape=(image_size, image_size, 3))
    return x, y, reference.get_weights()


def measure_row(key, *, model, batch_size, image_size, num_classes, steps, warmup, track_clean,
                seed):
    """``--memory_row``: this process builds and steps only the row ``key`` (its warm-up and
    ``steps`` timed-length steps) and returns its peak RSS (MiB), or its failure status."""
    x, y, weights = batch_and_weights(model=model, batch_size=batch_size, image_size=image_size,
                                      num_classes=num_classes, seed=seed)
    status, defense = build_row(key, model=model, image_size=image_size,
                                num_classes=num_classes, weights=weights, track_clean=track_clean)
    if defense is not None:
        for _ in range(max(warmup, 1) + steps):
            defense.train_on_batch(x, y)
    return {"variant": key[0], "defense": key[1], "status": status,
            "peak_mib": peak_rss_mib() if defense is not None else None}


def measure_rows_in_processes(keys, argv) -> dict:
    """``--memory=process``: ``{(variant, defense): (peak MiB or None, note or None)}``, each
    row's peak RSS from a process of its own running this script with ``argv`` (the run's flags)
    plus ``--memory_row=VARIANT/DEFENSE``, one after the other, before the timing process builds
    anything (so that it holds no memory meanwhile)."""
    import subprocess

    script = os.path.abspath(__file__)
    measured = {}
    for variant, defense in keys:
        proc = subprocess.run(
            [sys.executable, script, *argv, f"--memory_row={variant}/{defense}"],
            capture_output=True, text=True, check=False)
        lines = [l for l in proc.stdout.splitlines() if l.startswith(MEMORY_ROW_TAG)]
        if proc.returncode != 0 or not lines:
            measured[(variant, defense)] = (None, f"memory process failed (exit "
                                            f"{proc.returncode}): " + (proc.stderr.strip(
                                                ).splitlines() or ["no output"])[-1][:160])
            continue
        row = json.loads(lines[-1][len(MEMORY_ROW_TAG):])
        measured[(variant, defense)] = (row["peak_mib"],
                                        None if row["status"] == "ok" else row["status"])
    return measured


def add_extra_memory(rows):
    """Each row's ``extra_mib``: its peak minus the clean step's peak of the same variant."""
    clean = {r["variant"]: r["peak_mib"] for r in rows if r["defense"] == "clean"}
    for r in rows:
        base = clean.get(r["variant"])
        r["extra_mib"] = (None if r.get("peak_mib") is None or base is None
                          else r["peak_mib"] - base)


MEMORY_ROW_TAG = "MEMORY_ROW "


def build_row(key, *, model, image_size, num_classes, weights, track_clean):
    """``(status, defense)`` of the row ``key = (variant, defense name)``: the network (set to
    ``weights``) and defense built and compiled as ``tfadv.experiment.train`` builds a
    ``--precision``/``--xla``/``--attack_fp32`` run; ``defense`` is None when unavailable."""
    import keras

    from tfadv import distribute, models

    vname, name = key
    variant = VARIANTS[vname]
    if name == "l2lda":
        try:
            from tfadv import defenses as defenses_lib

            defenses_lib.DEFENSES.lookup("l2lda")
        except (ImportError, ValueError) as e:
            return (f"not available (tfadv.defenses.DEFENSES.lookup('l2lda'): "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:100]})"), None
    try:
        with distribute.precision_policy(variant.precision):
            network = models.build(model, num_classes=num_classes,
                                   input_shape=(image_size, image_size, 3))
            distribute.float32_logits(network)
            network.set_weights(weights)
            defense = build(name, network, track_clean=track_clean,
                            attack_fp32=variant.attack_fp32)
            defense.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                            jit_compile=variant.xla)
        return "ok", defense
    except Exception as e:  # noqa: BLE001 - one defense failing is a row, not a crash
        return f"failed ({type(e).__name__}: {str(e).splitlines()[0][:160]})", None


def run_benchmark(*, model, batch_size, image_size, num_classes, steps, repeats, warmup,
                  defenses, track_clean=False, seed=0, variants=("fp32",), memory="off"):
    """Returns the rows (one per variant and defense): seconds per step, ratio to the variant's
    clean step, ratio to the defense's fp32 row, ideal ratio, and with ``memory="gpu"`` each row's
    own peak device memory (``"process"`` rows get theirs from :func:`measure_rows_in_processes`).
    """
    import tensorflow as tf

    unknown = sorted(set(defenses) - set(DEFENSES))
    if unknown:
        raise app.UsageError(f"Unknown defenses {unknown}; expected a subset of {DEFENSES}. "
                             f"Received: defenses={','.join(defenses)}")
    variant_list = parse_variants(variants)
    names = ["clean"] + [d for d in dict.fromkeys(defenses) if d != "clean"]
    x, y, weights = batch_and_weights(model=model, batch_size=batch_size, image_size=image_size,
                                      num_classes=num_classes, seed=seed)
    keys = [(v, name) for v, _ in variant_list for name in names]  # (variant, defense)
    built, status, optimizers = {}, {}, {}
    for key in keys:
        status[key], defense = build_row(key, model=model, image_size=image_size,
                                         num_classes=num_classes, weights=weights,
                                         track_clean=track_clean)
        if defense is not None:
            for _ in range(max(warmup, 1)):
                defense.train_on_batch(x, y)
            built[key] = defense
            optimizers[key] = type(defense.optimizer).__name__
    times = {key: [] for key in built}
    peaks = {key: None for key in built}
    for _ in range(repeats):
        for key, defense in built.items():
            def timed_steps(defense=defense, key=key):
                start = time.perf_counter()
                for _ in range(steps):
                    defense.train_on_batch(x, y)
                times[key].append((time.perf_counter() - start) / steps)

            if memory == "gpu":  # this row's own device peak (statistics reset per window)
                peak = gpu_peak_mib(tf, timed_steps)
                peaks[key] = max(peaks[key] or 0.0, peak)
            else:
                timed_steps()
    per_step = {key: median(t) for key, t in times.items()}
    rows = []
    for key in keys:
        vname, name = key
        variant = VARIANTS[vname]
        ideal, passes = ideal_ratio(name, track_clean)
        row = {"defense": name, "variant": vname, "precision": variant.precision,
               "xla": variant.xla, "attack_fp32": variant.attack_fp32 and name != "clean",
               "ideal": ideal, "passes": passes, "target": TARGETS.get(name), "verdict": None,
               "memory": MEMORY_KINDS.get(memory), "optimizer": optimizers.get(key)}
        if key in per_step:
            sec = per_step[key]
            clean = per_step.get((vname, "clean"))
            fp32 = per_step.get(("fp32", name))
            ratio = sec / clean if clean else None
            target = TARGETS.get(name)
            verdict = None if target is None or ratio is None else (
                "met" if ratio <= target else "MISSED")
            row.update({"s_per_step": sec, "ratio": ratio, "vs_fp32": sec / fp32 if fp32 else None,
                        "verdict": verdict, "peak_mib": peaks[key], "status": "ok"})
        else:
            row.update({"s_per_step": None, "ratio": None, "vs_fp32": None, "peak_mib": None,
                        "extra_mib": None,
                        "status": status[key]})
        rows.append(row)
    return rows


def format_table(rows):
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    kind = next((r["memory"] for r in rows if r["memory"]), None)
    mem_cols = [] if kind is None else [f"{kind} (MiB)", "extra over clean (MiB)"]
    # The variant columns only when a variant other than fp32 was measured (the default table
    # stays as it was).
    variants = any(r.get("variant", "fp32") != "fp32" for r in rows)
    head = ["defense", "s/step", "x clean step", "ideal (passes)", "target", *mem_cols, "status"]
    align = ["---", "---:", "---:", "---", "---:", *["---:"] * len(mem_cols), "---"]
    if variants:
        head[1:1], align[1:1] = ["variant"], ["---"]
        head.insert(4, "x fp32 (same defense)")
        align.insert(4, "---:")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for r in rows:
        ideal = "-" if r["ideal"] is None else f"{r['ideal']:.2f} ({r['passes']})"
        target = "-" if r["target"] is None else f"<= {r['target']:g}" + (
            f" {r['verdict']}" if r["verdict"] else "")
        cells = [r["defense"], num(r["s_per_step"], ".3f"), num(r["ratio"], ".2f")]
        if variants:
            cells[1:1] = [r["variant"]]
            cells.append(num(r.get("vs_fp32"), ".2f"))
        cells += [ideal, target]
        if mem_cols:
            cells += [num(r.get("peak_mib"), ".0f"), num(r.get("extra_mib"), "+.0f")]
        status = r["status"] + (f"; {r['memory_status']}" if r.get("memory_status") else "")
        lines.append("| " + " | ".join(cells + [status]) + " |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    variants = [n for n, _ in parse_variants(FLAGS.variants)]  # fails before TensorFlow loads
    shape = dict(model=FLAGS.model, batch_size=FLAGS.batch_size, image_size=FLAGS.image_size,
                 num_classes=FLAGS.num_classes, steps=FLAGS.steps, warmup=FLAGS.warmup,
                 track_clean=FLAGS.track_clean, seed=FLAGS.seed)
    if FLAGS.memory_row:
        vname, _, name = FLAGS.memory_row.partition("/")
        if vname not in VARIANTS or name not in DEFENSES:
            raise app.UsageError(f"--memory_row must be VARIANT/DEFENSE with a variant of "
                                 f"{list(VARIANTS)} and a defense of {list(DEFENSES)}. "
                                 f"Received: memory_row={FLAGS.memory_row}")
        print(MEMORY_ROW_TAG + json.dumps(measure_row((vname, name), **shape)))
        return
    import tensorflow as tf

    memory = memory_mode(FLAGS.memory, tf)
    measured = {}
    if memory == "process":
        names = ["clean"] + [d for d in dict.fromkeys(FLAGS.defenses) if d != "clean"]
        if set(names) <= set(DEFENSES):  # else run_benchmark refuses them below
            measured = measure_rows_in_processes([(v, n) for v in variants for n in names],
                                                 [f"--{k}={v}" for k, v in shape.items()])
    rows = run_benchmark(repeats=FLAGS.repeats, defenses=FLAGS.defenses, variants=variants,
                         memory=memory, **shape)
    for row in rows:
        if (row["variant"], row["defense"]) in measured and row["status"] == "ok":
            row["peak_mib"], note = measured[(row["variant"], row["defense"])]
            if note:
                row["memory_status"] = note
    if memory != "off":
        add_extra_memory(rows)
    print(f"# Training step time: {FLAGS.model}, batch {FLAGS.batch_size}, "
          f"{FLAGS.image_size}x{FLAGS.image_size}x3, median of {FLAGS.repeats} rounds x "
          f"{FLAGS.steps} steps, track_clean={FLAGS.track_clean}"
          + (f", variants {','.join(variants)}" if variants != ["fp32"] else "")
          + f", memory {memory}; TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores")
    print(format_table(rows))
    if FLAGS.json_out:
        from tfadv import atomic

        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json_out)), exist_ok=True)
        atomic.write_json(FLAGS.json_out, {"rows": rows, "memory": memory})


if __name__ == "__main__":
    app.run(main)
