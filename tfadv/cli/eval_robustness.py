"""Robustness evaluation of a SavedModel, checkpoint or your own model under attacks or a suite.

    python scripts/eval_robustness.py --model_path=runs/madry_digits/savedmodel \
        --dataset=digits --eps=25.5 --attacks=clean,fgsm,pgd-40,cw-20
    python scripts/eval_robustness.py --model_path=... --suite=autoattack --resume --tensorboard
    python scripts/eval_robustness.py --model_path=... --attacks=clean,pgd-20 --diagnostics --analyses \
        --transfer_source=runs/natural_digits/savedmodel

Your own model (docs/guide/own-model.md): --model_path=FILE.keras (Keras safe mode; a Lambda layer
needs --unsafe_deserialization), FILE.weights.h5 with --arch=NAME --num_classes=N --input_shape=H,W,C,
a plain TF/Keras SavedModel (--signature=NAME when it has several), or keras.applications:NAME (its
preprocessing inside; random weights unless --app_weights=LOCAL_FILE; nothing is downloaded).
--pixel_range declares what the model takes; --normalize=MEAN,STD puts the normalisation inside the
model so that eps stays in pixel space; softmax outputs are turned into log-probabilities with a
warning; images that do not fit the model are refused before any attack. A SavedModel is a program:
evaluate only trusted ones.

Attack list grammar (tfadv/evaluation/specs.py): clean, fgsm, pgd-K, cw-K,
pgd(steps=K,step=S,loss=ce|cw,restarts=R,start=uniform|gaussian|none,norm=linf|l2,eps=E,target=mc|ll|random),
and any registered attack as NAME, NAME-K or NAME(key=value,...) (apgd_ce, apgd_t, fab_t, square,
mifgsm, deepfool, cw_linf, cw_l2, autoattack, ...). Suites: autoattack (clean + standard AutoAttack),
paper (the attacks of the five papers), full (paper + AutoAttack and its members). Sizes are pixel
levels out of 255.

Prints a paper-style table (Acc.(%) per attack and the pointwise worst case) and a details table, and
writes OUT_DIR/robustness.md and robustness.json (a RobustBench-style model card). Options:
--diagnostics prints the gradient-masking checklist as PASS/WARN/SKIP lines (OUT_DIR/diagnostics.json);
--analyses writes gradient-magnitude and FOSC statistics with PNG plots to OUT_DIR/analyses/;
Generator attacks (advgan, gap, l2lda(generator_path=RUN_DIR)) are first fitted to the model on
--finetune_images training images (--finetune_split, batches of --finetune_batch_size) for
--finetune_steps steps unless their spec sets finetune_steps=N.
--tensorboard writes summaries to OUT_DIR/tensorboard; --resume keeps the progress in
OUT_DIR/eval_state.npz and continues an interrupted run with the same configuration: the same
model (SavedModel fingerprint or checkpoint SHA-256), dataset, split, --limit (number of images),
--batch_size, eps, attacks, --seed, --only_robust and pixel range; a state file of anything else is
refused with the fields that differ (delete it or choose another --out_dir), a corrupt one too.

Several devices: --num_gpus=N (MirroredStrategy; on a CPU host with --logical_cpus=N, a testing
aid) splits every model pass of the attacks over the replicas and gathers the results in example
order: the per-example results are those of one device, and a --resume state continues on any
device layout. --strategy=multi_worker (several hosts, TF_CONFIG) splits the evaluation by whole
attack batches: batch b goes to task b mod W (the chief is task 0), each task on its own devices
(--num_gpus); every task writes its resumable shard to OUT_DIR/shards/ (a rerun continues it), and
the chief waits at most --shard_timeout seconds for the others and writes the one report, per
example that of one device. OUT_DIR must be a directory shared by all tasks; attacks whose result
on a batch depends on earlier calls (a seeded random start: pgd-K, cw-K) are refused there.

Where reports go: OUT_DIR is checked to be writable before the model is evaluated. By default it
is RUN/eval/SLUG inside the run directory the model came from (never the training run's own
robustness.md/json), else MODEL_PATH_eval/SLUG beside a bare SavedModel; SLUG is the suite or
attack list and the eps (e.g. ``paper_eps25.5``). Reports already in OUT_DIR are replaced only when
they record the same evaluation (same model, data and attacks: a rerun); reports of another run or
evaluation are refused unless --overwrite, and the script always says what it wrote or replaced.
"""

import hashlib
import os
import re
import sys

import tensorflow as tf
from absl import app, flags, logging

from tfadv import atomic
from tfadv import checkpoints as ckpt_lib
from tfadv import data as data_lib
from tfadv import distribute as distribute_lib
from tfadv import evaluation as eval_lib
from tfadv import flags as tfadv_flags
from tfadv import ranges as ranges_lib
from tfadv import wrappers
from tfadv.attacks import checks as checks_lib
from tfadv.cli import program
from tfadv.evaluation import report as report_lib
from tfadv.evaluation import runner as runner_lib
from tfadv.evaluation import specs as specs_lib
from tfadv.evaluation import workers as workers_lib
from tfadv.loading import APPLICATIONS, LoadOptions, load_for_evaluation

flags.DEFINE_string("model_path", None, "SavedModel dir (tfadv's or a plain TF/Keras one), run dir, "
                    "checkpoints dir, .weights.h5, .keras file or keras.applications:NAME.")


def _define_model_flags():
    """The flags that say how to read a user's own model (tfadv.loading.LoadOptions)."""
    for name, text in (
            ("arch", "tfadv.models architecture of a bare .weights.h5 --model_path."),
            ("signature", "Serving signature of a plain SavedModel (default: its only one; "
                          "several are refused with their names)."),
            ("normalize", "MEAN,STD (numbers or per-channel lists [a,b,c],[d,e,f]) applied "
                          "inside the model, so that eps stays in pixel space."),
            ("app_weights", "Local weights file of a keras.applications classifier (default "
                            "random weights; nothing is downloaded).")):
        flags.DEFINE_string(name, None, text)
    flags.DEFINE_integer("num_classes", None, "Classes of --arch or a keras.applications classifier.")
    flags.DEFINE_list("input_shape", None, "Image shape H,W,C where the model does not state it.")
    flags.DEFINE_enum("pixel_range", None, list(ranges_lib.RANGES), "Pixel range the model takes "
                      "(default: the recorded one, else [0,1]).")
    flags.DEFINE_boolean("unsafe_deserialization", False, "Load .keras files with safe_mode=False "
                         "(runs a Lambda layer's code): only for files from a trusted source.")


_define_model_flags()

flags.DEFINE_string("dataset", None, "Dataset (default: the one recorded with the model).")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("limit", None, "Evaluate the first N examples only.")
flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.")
flags.DEFINE_float("eps", 8.0, "Budget in pixel levels out of 255 (76.5 is MNIST's 0.3).")
flags.DEFINE_float("step_size", None, "Default PGD step in pixel levels (default 2.5*eps/steps).")
flags.DEFINE_string("attacks", "clean,fgsm,pgd-20,cw-20", "Comma-separated attack specs.")
flags.DEFINE_enum("suite", None, sorted(specs_lib.SUITES),
                  "A fixed attack suite instead of --attacks: autoattack, paper or full.")
flags.DEFINE_boolean("only_robust", None, "Run each attack only on the points still robust under the "
                     "previous ones (default: on with --suite, off with --attacks).")
flags.DEFINE_string("out_dir", None, "Where to write robustness.{md,json} (default: RUN/eval/SLUG "
                    "in the model's run directory, else MODEL_PATH_eval/SLUG; see the docstring).")
flags.DEFINE_boolean("overwrite", False, "Replace reports in --out_dir that another run or another "
                     "evaluation wrote (without it such reports are refused).")
flags.DEFINE_integer("seed", 0, "Seed of random starts.")
flags.DEFINE_boolean("diagnostics", False, "Run the gradient-masking checklist (PASS/WARN lines).")
flags.DEFINE_boolean("analyses", False, "Write gradient-magnitude/FOSC statistics and PNG plots.")
flags.DEFINE_integer("diagnostics_limit", 1000, "Examples used by --diagnostics and --analyses.")
flags.DEFINE_boolean("tensorboard", False, "Write TensorBoard summaries to OUT_DIR/tensorboard.")
flags.DEFINE_boolean("resume", False, "Save progress to OUT_DIR/eval_state.npz and resume from it.")
flags.DEFINE_string("transfer_source", None, "Source model (path) of the transfer diagnostic.")
flags.DEFINE_integer("square_queries", 5000, "Queries of the Square attack in --diagnostics.")
flags.DEFINE_integer("finetune_steps", None, "Fitting steps of generator attacks (advgan, gap, "
                     "l2lda) whose spec sets no finetune_steps (default: the attack's, 500).")
flags.DEFINE_integer("finetune_images", 10000, "Training images the generator attacks are fitted on.")
flags.DEFINE_integer("finetune_batch_size", 100, "Batch size of the generator attacks' fitting.")
flags.DEFINE_string("finetune_split", "train", "Split the generator attacks are fitted on.")
flags.DEFINE_float("shard_timeout", 3600.0, "--strategy=multi_worker: seconds the chief waits for "
                   "the other tasks' shards after its own.")
tfadv_flags.define_distribute_flags()
FLAGS = flags.FLAGS

STATE_FILE = "eval_state.npz"


def default_out_dir(model_path: str, slug: str) -> str:
    """RUN/eval/SLUG in the run directory the model came from, else MODEL_PATH_eval/SLUG."""
    path = os.path.abspath(model_path.rstrip("/"))
    for candidate in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        if os.path.isfile(os.path.join(candidate, ckpt_lib.RUN_CONFIG)):
            return os.path.join(candidate, "eval", slug)
    return os.path.join(path + "_eval", slug)


def out_dir_slug(suite, attacks, eps) -> str:
    """``SUITE_epsE`` or the attack list made a file name (``clean_fgsm_pgd-20_cw-20_eps8``)."""
    name = re.sub(r"[^A-Za-z0-9.\-]+", "_", suite or attacks).strip("_")[:80]
    return f"{name}_eps{eps:g}"


def check_reports(out_dir: str, evaluation_id: str) -> str:
    """What writing the reports will do (a sentence); refuses to replace another run's reports."""
    paths, previous = report_lib.existing_report(out_dir)
    if not paths:
        return "new reports"
    if previous == evaluation_id:
        return "replacing the reports of the same evaluation"
    origin = (f"evaluation {previous}" if previous else
              "a training run or an evaluation that recorded no evaluation_id")
    if not FLAGS.overwrite:
        raise app.UsageError(
            f"The output directory already holds reports of another run ({origin}): "
            f"{', '.join(paths)}. Reports are not replaced silently: choose another --out_dir, or "
            f"pass --overwrite to replace them. Received: {out_dir!r}.")
    print(f"Replacing {', '.join(paths)} (--overwrite; they were written by {origin})",
          file=sys.stderr, flush=True)
    return f"replacing the reports of {origin}"


def threat_model(specs) -> str:
    """``L2`` when every attack other than the clean pass is an L2 attack, else ``Linf``."""
    norms = [str(s.params.get("norm", "linf")).lower() for s in specs.values()
             if s.params.get("attack") not in ("noop", None)]
    return "L2" if norms and all(n == "l2" for n in norms) else "Linf"


def replicas_note(strategy) -> str:
    """``, model passes split over N replicas (Strategy)`` for a distributed run, else empty."""
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return ""
    return (f", model passes split over {strategy.num_replicas_in_sync} replica(s) "
            f"({type(strategy).__name__})")


def load_options() -> LoadOptions:
    """The model-reading flags, validated before anything is loaded."""
    shape = None
    if FLAGS.input_shape is not None:
        try:
            shape = tuple(int(d) for d in FLAGS.input_shape)
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise app.UsageError(f"--input_shape must be three positive integers H,W,C. "
                                 f"Received: {','.join(FLAGS.input_shape)!r}.")
    if FLAGS.num_classes is not None and FLAGS.num_classes < 2:
        raise app.UsageError(f"--num_classes must be at least 2. Received: {FLAGS.num_classes}.")
    normalize = None if FLAGS.normalize is None else wrappers.parse_normalize(FLAGS.normalize)
    return LoadOptions(arch=FLAGS.arch, num_classes=FLAGS.num_classes, input_shape=shape,
                       signature=FLAGS.signature, pixel_range=FLAGS.pixel_range,
                       normalize=normalize, unsafe_deserialization=FLAGS.unsafe_deserialization,
                       app_weights=FLAGS.app_weights)


def run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")  # one tf.function per attack: TF's retracing notes are noise
    # --strategy=multi_worker: this task's place in the TF_CONFIG cluster; the tasks share only
    # OUT_DIR (tfadv.evaluation.workers), each splits its batches over its own devices.
    worker = workers_lib.Worker.from_tf_config() if FLAGS.strategy == "multi_worker" else None
    if worker is not None and not FLAGS.shard_timeout > 0:
        raise app.UsageError(f"--shard_timeout must be positive. Received: {FLAGS.shard_timeout}.")
    # The strategy before anything initialises TensorFlow's devices (--logical_cpus).
    strategy = distribute_lib.strategy_from_flags(
        FLAGS.num_gpus, strategy="auto" if worker else FLAGS.strategy,
        logical_cpus=FLAGS.logical_cpus)
    if FLAGS.suite and FLAGS["attacks"].present:
        raise app.UsageError(f"Give --suite or --attacks, not both. Received: --suite={FLAGS.suite}, "
                             f"--attacks={FLAGS.attacks}.")
    model, info = load_for_evaluation(FLAGS.model_path, load_options())
    dataset = FLAGS.dataset or info.get("dataset")
    if not dataset:
        raise app.UsageError("--dataset is required: the model does not record one.")
    eps = ranges_lib.check_pixel_size(FLAGS.eps, name="eps")
    pixel_range = info["pixel_range"]
    kwargs = dict(eps=eps, pixel_range=pixel_range, step_size=FLAGS.step_size, seed=FLAGS.seed)
    if FLAGS.suite:
        specs = eval_lib.parse_suite(FLAGS.suite, **kwargs)
    else:
        specs = eval_lib.parse_list(FLAGS.attacks, **kwargs)
    only_robust = bool(FLAGS.suite) if FLAGS.only_robust is None else FLAGS.only_robust
    out_dir = FLAGS.out_dir or default_out_dir(FLAGS.model_path,
                                               out_dir_slug(FLAGS.suite, FLAGS.attacks, eps))
    report_lib.check_writable(out_dir)  # before the data and the attacks, not after an hour
    ds, ds_info = data_lib.load(dataset, FLAGS.split, batch_size=FLAGS.batch_size,
                                pixel_range=pixel_range, data_dir=FLAGS.data_dir, limit=FLAGS.limit,
                                training=False)
    # Before any attack: images of the wrong shape, channel count or dtype for the model.
    checks_lib.check_model_input(model, ds.element_spec[0], what=f"The {dataset} images")
    if ds_info.num_classes != info["num_classes"]:
        raise ValueError(f"The model has {info['num_classes']} classes but {dataset} has "
                         f"{ds_info.num_classes}. Received: --dataset={dataset}.")
    needs_preparation = any(getattr(spec.attack, "needs_preparation", False)
                            for spec in specs.values())
    identity = {"model": info["model_id"], "dataset": dataset, "split": FLAGS.split,
                "limit": FLAGS.limit, "num_examples": ds_info.num_examples,
                "batch_size": FLAGS.batch_size, "eps_pixels": eps, "seed": FLAGS.seed}
    if info["wrappers"]:
        identity["wrappers"] = info["wrappers"]
    if needs_preparation:
        identity["finetune"] = [FLAGS.finetune_split, FLAGS.finetune_images, FLAGS.finetune_batch_size]
    key = runner_lib.fingerprint(specs, pixel_range=pixel_range, only_robust=only_robust,
                                 identity=identity, prepare_steps=FLAGS.finetune_steps)
    evaluation_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    tb_dir = os.path.join(out_dir, "tensorboard") if FLAGS.tensorboard else None
    state_path = os.path.join(out_dir, STATE_FILE) if FLAGS.resume and worker is None else None
    if worker is not None:
        workers_lib.check_reproducible(specs)  # before any attack runs
    if state_path and os.path.exists(state_path):
        runner_lib.check_state(state_path, key)  # another model, data or attacks: refused here
        print(f"Resuming from {state_path}", file=sys.stderr, flush=True)
    replacing = check_reports(out_dir, evaluation_id) if worker is None or worker.chief else ""
    print(f"Evaluating {info['source']} ({info['architecture']}) on {dataset}/{FLAGS.split} "
          f"({ds_info.num_examples} images), eps {eps:g}/255 of {pixel_range}"
          f"{', only on points still robust' if only_robust else ''}"
          f"{replicas_note(strategy)}"
          f"{f', task {worker.index} of {worker.count}' if worker else ''}", flush=True)
    prepare_data = None
    if needs_preparation:
        prepare_data, _ = data_lib.load(dataset, FLAGS.finetune_split,
                                        batch_size=FLAGS.finetune_batch_size, pixel_range=pixel_range,
                                        data_dir=FLAGS.data_dir, limit=FLAGS.finetune_images,
                                        training=True, augment=False, seed=FLAGS.seed)
    if worker is None:
        result = eval_lib.evaluate(model, ds, specs, pixel_range=pixel_range,
                                   num_examples=ds_info.num_examples, only_robust=only_robust,
                                   state_path=state_path, tensorboard_dir=tb_dir,
                                   prepare_data=prepare_data, prepare_steps=FLAGS.finetune_steps,
                                   identity=identity, distribute=strategy)
    else:
        result = workers_lib.evaluate_on_workers(
            model, ds, specs, worker=worker, out_dir=out_dir, batch_size=FLAGS.batch_size,
            num_examples=ds_info.num_examples, pixel_range=pixel_range, only_robust=only_robust,
            identity=identity, timeout_s=FLAGS.shard_timeout, distribute=strategy)
        if result is None:  # not the chief: its shard is its whole output
            print(f"Wrote {workers_lib.shard_path(out_dir, worker.index, worker.count)} (task "
                  f"{worker.index} of {worker.count}; the chief writes the report)", file=sys.stderr)
            return
    rng = ranges_lib.get_range(pixel_range)
    model_path = (FLAGS.model_path if FLAGS.model_path.startswith(APPLICATIONS)
                  else os.path.abspath(FLAGS.model_path))
    meta = {"model_path": model_path, "wrappers": info["wrappers"], "dataset": dataset, "split": FLAGS.split,
            "threat_model": threat_model(specs), "eps_pixels": eps, "pixel_range": pixel_range,
            "architecture": info["architecture"], "suite": FLAGS.suite,
            "attacks": {label: spec.params for label, spec in specs.items()},
            "model_id": info["model_id"], "evaluation_id": evaluation_id}

    eval_lib.write(result, out_dir, metadata=meta, row=info["architecture"], tensorboard_dir=tb_dir)
    print()
    print(eval_lib.markdown_table(result, row=info["architecture"]))
    print()
    print(eval_lib.details_table(result), flush=True)
    print(f"\nWrote {os.path.join(out_dir, 'robustness.md')} and robustness.json ({replacing})",
          file=sys.stderr)

    diag = None
    if FLAGS.diagnostics or FLAGS.analyses:
        diag_ds, _ = data_lib.load(dataset, FLAGS.split, batch_size=FLAGS.batch_size,
                                   pixel_range=pixel_range, data_dir=FLAGS.data_dir, training=False,
                                   limit=min(FLAGS.limit or FLAGS.diagnostics_limit,
                                             FLAGS.diagnostics_limit))
    if FLAGS.diagnostics:
        print("\nGradient-masking diagnostics:", flush=True)
        diag = eval_lib.run_diagnostics(model, diag_ds, eps=rng.from_pixels(eps), pixel_range=rng,
                                        transfer_source=FLAGS.transfer_source, seed=FLAGS.seed,
                                        square_params={"n_queries": FLAGS.square_queries},
                                        batch_size=FLAGS.batch_size, stream=sys.stdout,
                                        distribute=strategy)
        atomic.write_json(os.path.join(out_dir, "diagnostics.json"), diag.to_json())
        meta["diagnostics"] = {r.name: r.status for r in diag.records}
        eval_lib.write(result, out_dir, metadata=meta, row=info["architecture"])
        print(f"Wrote {os.path.join(out_dir, 'diagnostics.json')}", file=sys.stderr)
    if FLAGS.analyses:
        from tfadv.evaluation import analyses as analyses_lib

        analysis_dir = os.path.join(out_dir, "analyses")
        obj = analyses_lib.run_analyses(model, diag_ds, eps=rng.from_pixels(eps), pixel_range=rng,
                                        out_dir=analysis_dir, diagnostics=diag, seed=FLAGS.seed,
                                        batch_size=FLAGS.batch_size, distribute=strategy)
        print("\nInput-gradient magnitude (BAT Table 2):")
        print(analyses_lib.gradient_table(obj["gradient_norm_sq"]))
        print("FOSC of PGD outputs (mean): " + ", ".join(
            f"{k} {v['mean']:.4g}" for k, v in obj["fosc"].items() if v["mean"] is not None))
        print(f"Wrote {analysis_dir}/analyses.json and " + ", ".join(obj["files"].values()),
              file=sys.stderr)


def main():
    """Runs ``tfadv-eval`` (``python scripts/eval_robustness.py``): parses the flags, evaluates."""
    program.as_main(__name__, __doc__)
    flags.mark_flag_as_required("model_path")
    app.run(run)
