"""The training experiment every ``scripts/train_*.py`` runs: flags -> data -> network -> defense ->
fit (TensorBoard, checkpoints, run metadata) -> SavedModel -> robustness report.

A script supplies only its defense's name and the defense's keyword arguments; everything else is
shared here so that no training loop is ever copied.

Scale-out (BAT ImageNet sec. 5, following the tensorpack ImageNet code): ``--batch_size`` is the
GLOBAL batch, split evenly over the replicas of ``--num_gpus``/``--strategy``; ``--lr_scaling=linear``
multiplies ``--lr`` (the LR of a 256-image batch) by global batch / 256 and warms it up linearly from
``--lr`` over ``--lr_warmup_epochs`` when above 256; ``--precision``/``--xla`` pick the dtype policy
and XLA; a killed run continues from ``LOGDIR/backup`` (``--resume``) when its configuration
matches the one LOGDIR records, and a different one is refused unless ``--overwrite``
(:mod:`tfadv.rundir`); nothing is written before every argument has been used once.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import sys
import time
from typing import Callable, Optional, Tuple

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import callbacks as callbacks_lib
from tfadv import checkpoints as ckpt_lib
from tfadv import data as data_lib
from tfadv import defenses as defenses_lib
from tfadv import distribute as distribute_lib
from tfadv import evaluation as eval_lib
from tfadv import export as export_lib
from tfadv import presets as presets_lib
from tfadv import ranges as ranges_lib
from tfadv import rundir as rundir_lib


@dataclasses.dataclass
class TrainConfig:
    """A fully resolved training run. Sizes (eps, step_size) are pixel levels out of 255."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
    # Extra keyword arguments of tfadv.data.load for both splits (e.g. ImageNet's image_size).
    data_options: dict = dataclasses.field(default_factory=dict)
    pixel_range: str = "[0,1]"
    model: str = "digits_cnn"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    init_checkpoint: Optional[str] = None
    eps: float = 25.5
    step_size: float = 6.375
    num_steps: int = 7
    random_start: str = "uniform"
    norm: str = "linf"
    attack_training: bool = False
    eps_warmup_epochs: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_boundaries: Tuple[int, ...] = ()
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    logdir: str = "runs/madry_digits"
    seed: int = 0
    num_gpus: int = 0
    strategy: str = "auto"
    logical_cpus: int = 0
    precision: str = "fp32"
    attack_fp32: bool = False
    xla: bool = False
    lr_scaling: str = "none"
    lr_warmup_epochs: float = 5.0
    resume: bool = True
    overwrite: bool = False  # move a different run in LOGDIR aside (tfadv.rundir) instead of failing
    train_limit: Optional[int] = None
    eval_limit: Optional[int] = None
    val_limit: Optional[int] = 1000
    # "heldout": validate on the last examples of the training split, excluded from training
    # (tfadv.data.holdout); "test": on the test split, only when asked for.
    val_split: str = "heldout"
    checkpoint_every: int = 1
    eval_attacks: str = "clean,fgsm,pgd-20"
    eval_step_size: Optional[float] = None
    verbose: int = 2

    def validate(self):
        """Checks every field (the evaluation attacks parsed included) so that a bad value stops
        the run before anything is loaded, written or trained."""
        ranges_lib.get_range(self.pixel_range)
        ranges_lib.check_pixel_size(self.eps, name="eps")
        ranges_lib.check_pixel_size(self.step_size, name="step_size", allow_subpixel=True)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1. Received: {getattr(self, name)!r}.")
        if self.eps_warmup_epochs < 0:
            raise ValueError(f"--eps_warmup_epochs must be >= 0. Received: {self.eps_warmup_epochs!r}.")
        if self.num_steps < 0:
            raise ValueError(f"--num_steps must be >= 0. Received: {self.num_steps!r}.")
        if list(self.lr_boundaries) != sorted(self.lr_boundaries):
            raise ValueError(f"--lr_boundaries must increase. Received: {self.lr_boundaries!r}.")
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"--lr_scaling must be one of {LR_SCALINGS}. "
                             f"Received: {self.lr_scaling!r}.")
        if self.lr_warmup_epochs < 0:
            raise ValueError(f"--lr_warmup_epochs must be >= 0. Received: {self.lr_warmup_epochs!r}.")
        if self.precision not in distribute_lib.PRECISIONS:
            raise ValueError(f"--precision must be one of {sorted(distribute_lib.PRECISIONS)}. "
                             f"Received: {self.precision!r}.")
        if self.strategy not in distribute_lib.STRATEGIES:
            raise ValueError(f"--strategy must be one of {distribute_lib.STRATEGIES}. "
                             f"Received: {self.strategy!r}.")
        for name in ("num_gpus", "logical_cpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0. Received: {getattr(self, name)!r}.")
        self._validate_inputs()
        return self

    def _validate_inputs(self):
        if not self.lr > 0 or self.lr == float("inf"):
            raise ValueError(f"--lr must be a finite number > 0. Received: {self.lr!r}.")
        for name, optional in (("checkpoint_every", False), ("train_limit", True),
                               ("eval_limit", True)):
            value = getattr(self, name)
            if (value is not None or not optional) and (
                    isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"--{name} must be an integer >= 1{' or unset' if optional else ''}."
                                 f" Received: {value!r}.")
        if isinstance(self.verbose, bool) or self.verbose not in (0, 1, 2):
            raise ValueError("--verbose must be 0 (silent), 1 (a progress bar) or 2 (a line per "
                             f"epoch, a progress line within it). Received: {self.verbose!r}.")
        data_lib.holdout.check_val_limit(self.val_limit)
        data_lib.holdout.check_val_split(self.val_split)
        eval_lib.parse_list(self.eval_attacks, eps=self.eps, pixel_range=self.pixel_range,
                            step_size=self.eval_step_size, seed=self.seed)


LR_SCALINGS = ("none", "linear")
PROGRESS_SECONDS = 30.0  # with --verbose=2, a progress line this often within an epoch
REFERENCE_BATCH = 256  # Goyal et al.'s linear scaling rule, as the tensorpack ImageNet code uses it


def parse_model_kwargs(items) -> dict:
    """``["depth=28", "per_image_standardization=true"]`` -> ``{"depth": 28, ...: True}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--model_kwargs entries are key=value. Received: {item!r}.")
        key, value = (t.strip() for t in item.split("=", 1))
        lowered = value.lower()
        if lowered in ("true", "false"):
            out[key] = lowered == "true"
            continue
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def config_from_flags(flag_values) -> TrainConfig:
    """Fills unset flags from the dataset's preset and returns a validated TrainConfig."""
    fv = flag_values
    dataset = fv.dataset
    preset_name = fv.preset
    if preset_name is None:
        # Validates the dataset name (and that a tfds dataset is prepared) before anything else.
        image_shape = data_lib.info(dataset, "test", data_dir=fv.data_dir).image_shape
        preset_name = presets_lib.for_dataset(dataset, image_shape)
    preset = presets_lib.get(preset_name)

    def pick(flag, default):
        value = getattr(fv, flag)
        return default if value is None else value

    def pick_new(flag, default):  # flags newer than some callers' flag namespaces
        value = getattr(fv, flag, None)
        return default if value is None else value

    boundaries = pick("lr_boundaries", preset.lr_boundaries)
    try:
        boundaries = tuple(int(float(b)) for b in boundaries)
    except ValueError:
        raise ValueError(f"--lr_boundaries must be epochs. Received: {fv.lr_boundaries!r}.") from None
    return TrainConfig(
        dataset=dataset, data_dir=fv.data_dir, pixel_range=pick("pixel_range", preset.pixel_range),
        model=pick("model", preset.model), model_kwargs=parse_model_kwargs(fv.model_kwargs),
        init_checkpoint=fv.init_checkpoint, eps=pick("eps", preset.eps),
        step_size=pick("step_size", preset.step_size), num_steps=pick("num_steps", preset.num_steps),
        random_start=fv.random_start, norm=fv.norm, attack_training=fv.attack_training,
        eps_warmup_epochs=fv.eps_warmup_epochs,
        epochs=pick("epochs", preset.epochs), batch_size=pick("batch_size", preset.batch_size),
        optimizer=pick("optimizer", preset.optimizer), lr=pick("lr", preset.lr),
        lr_boundaries=boundaries, lr_decay=pick("lr_decay", preset.lr_decay),
        momentum=pick("momentum", preset.momentum),
        weight_decay=pick("weight_decay", preset.weight_decay), logdir=fv.logdir, seed=fv.seed,
        num_gpus=fv.num_gpus, strategy=pick_new("strategy", "auto"),
        logical_cpus=pick_new("logical_cpus", 0), precision=pick_new("precision", "fp32"),
        attack_fp32=pick_new("attack_fp32", False), xla=pick_new("xla", False),
        lr_scaling=pick_new("lr_scaling", preset.lr_scaling),
        lr_warmup_epochs=pick_new("lr_warmup_epochs", preset.lr_warmup_epochs),
        resume=pick_new("resume", True), overwrite=pick_new("overwrite", False),
        train_limit=fv.train_limit, eval_limit=fv.eval_limit,
        val_limit=pick("val_limit", preset.val_limit), val_split=pick_new("val_split", "heldout"),
        checkpoint_every=fv.checkpoint_every,
        eval_attacks=pick("eval_attacks", preset.eval_attacks),
        eval_step_size=pick("eval_step_size", preset.eval_step_size), verbose=fv.verbose).validate()


def base_lr(cfg: TrainConfig) -> float:
    """The LR after the scaling rule: ``lr x global_batch / 256`` for ``lr_scaling="linear"``
    (Goyal et al. sec. 2.1, the tensorpack ImageNet code's ``BASE_LR``), else ``lr``."""
    if cfg.lr_scaling == "linear":
        return cfg.lr * cfg.batch_size / REFERENCE_BATCH
    return cfg.lr


@keras.saving.register_keras_serializable(package="tfadv")
class WarmupPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant LR (``values[i]`` while ``step <= boundaries[i]``, as
    PiecewiseConstantDecay) preceded by a linear warm-up from ``warmup_from`` to ``values[0]`` over
    the first ``warmup_steps`` updates (Goyal et al. sec. 2.2: the tensorpack code's step-based
    linear interpolation from 0.1 to BASE_LR over 5 epochs)."""

    def __init__(self, boundaries, values, warmup_steps: int = 0, warmup_from: float = 0.0):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values needs one more entry than boundaries. Received: "
                             f"boundaries={boundaries!r}, values={values!r}.")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]
        self.warmup_steps = int(warmup_steps)
        self.warmup_from = float(warmup_from)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.values[0], tf.float32)
        for boundary, value in zip(self.boundaries, self.values[1:]):
            lr = tf.where(step > boundary, tf.constant(value, tf.float32), lr)
        if self.warmup_steps > 0:
            ramp = self.warmup_from + (self.values[0] - self.warmup_from) * step / self.warmup_steps
            lr = tf.where(step < self.warmup_steps, ramp, lr)
        return lr

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values,
                "warmup_steps": self.warmup_steps, "warmup_from": self.warmup_from}


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    """SGD (momentum) or Adam with a piecewise-constant LR whose boundaries are given in epochs,
    scaled and warmed up per ``cfg.lr_scaling`` (warm-up only when the scaled LR exceeds ``lr``,
    as the tensorpack code's ``if BASE_LR > 0.1``)."""
    lr = base_lr(cfg)
    warmup = 0
    if cfg.lr_scaling == "linear" and lr > cfg.lr:
        warmup = int(round(cfg.lr_warmup_epochs * steps_per_epoch))
    # The step counter is the number of updates already made, so epoch b's first update has step
    # b*steps_per_epoch: values[i] is kept while step <= b*steps_per_epoch - 1.
    boundaries = [b * steps_per_epoch - 1 for b in cfg.lr_boundaries]
    values = [lr * cfg.lr_decay ** i for i in range(len(cfg.lr_boundaries) + 1)]
    if warmup:
        lr = WarmupPiecewiseConstant(boundaries, values, warmup_steps=warmup, warmup_from=cfg.lr)
    elif cfg.lr_boundaries:
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    raise ValueError(f"Unknown optimizer. Expected sgd or adam. Received: {cfg.optimizer!r}.")


def training_attack(cfg: TrainConfig):
    rng = ranges_lib.get_range(cfg.pixel_range)
    return attacks_lib.get("pgd", eps=rng.from_pixels(cfg.eps), step_size=rng.from_pixels(cfg.step_size),
                           num_steps=cfg.num_steps, random_start=cfg.random_start, norm=cfg.norm,
                           pixel_range=rng)


def run_evaluation(model, cfg: TrainConfig, *, out_dir: str, row: str, stream=sys.stdout,
                   extra_metadata: Optional[dict] = None):
    """Evaluates ``model`` on the test split under ``cfg.eval_attacks``, prints and writes the report."""
    test_ds, test_info = data_lib.load(cfg.dataset, "test", batch_size=max(cfg.batch_size, 100),
                                       pixel_range=cfg.pixel_range, data_dir=cfg.data_dir,
                                       limit=cfg.eval_limit, **(cfg.data_options or {}))
    specs = eval_lib.parse_list(cfg.eval_attacks, eps=cfg.eps, pixel_range=cfg.pixel_range,
                                step_size=cfg.eval_step_size, seed=cfg.seed)
    result = eval_lib.evaluate(model, test_ds, specs, pixel_range=cfg.pixel_range,
                               num_examples=test_info.num_examples)
    meta = {"dataset": cfg.dataset, "split": "test", "threat_model": cfg.norm.capitalize(),
            "eps_pixels": cfg.eps, "pixel_range": cfg.pixel_range, "architecture": cfg.model,
            "attacks": {label: spec.params for label, spec in specs.items()}}
    meta.update(extra_metadata or {})
    eval_lib.write(result, out_dir, metadata=meta, row=row)
    stream.write(eval_lib.markdown_table(result, row=row) + "\n")
    stream.flush()
    return result


def train_input(cfg: TrainConfig, strategy, split: str = "train") -> distribute_lib.WorkerInput:
    """The training input ``fit`` reads: one pipeline per worker from
    ``strategy.distribute_datasets_from_function`` (:func:`tfadv.distribute.distribute_input`),
    each a disjoint, equal shard of the (first ``train_limit``) training examples, shuffled and
    batched on its own host; ``steps`` per epoch, the same on every worker. ``split`` is the
    training split or slice (``train[:-N]`` when a held-out slice validates)."""
    options = dict(cfg.data_options or {})
    for key in ("shard_index", "num_shards"):
        if key in options:
            raise ValueError(f"data_options cannot set {key}: each worker's shard comes from the "
                             f"strategy's input pipelines. Received: data_options={options!r}.")

    def load_shard(shard_index, num_shards, batch_size):
        return data_lib.load(cfg.dataset, split, batch_size=batch_size,
                             pixel_range=cfg.pixel_range, data_dir=cfg.data_dir, seed=cfg.seed,
                             limit=cfg.train_limit, shard_index=shard_index,
                             num_shards=num_shards, **options)

    return distribute_lib.distribute_input(strategy, load_shard, global_batch=cfg.batch_size)


def validation_dataset(ds):
    """Pipeline options for the validation data given to ``fit`` (``validation_data``):
    deterministic order and DATA auto-sharding (each worker of a multi-worker run takes its share of
    every global batch). Training input is :func:`train_input`."""
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train(cfg: TrainConfig, *, defense: str, defense_kwargs: Optional[dict] = None,
          flags: Optional[dict] = None, extra_callbacks=(), stream=sys.stdout, strategy=None):
    """Runs one training experiment end to end; returns (defense model, evaluation result).

    ``strategy`` defaults to the one ``cfg`` names (scripts create it first, before anything
    initialises TensorFlow, as logical devices and multi-worker collectives require). On the
    non-chief workers of a multi-worker run the files go to a scratch directory under
    ``LOGDIR/workers`` and the result is None (the chief evaluates).
    """
    cfg.validate()  # also for callers that build a TrainConfig themselves
    if strategy is None:
        strategy = distribute_lib.strategy_from_flags(cfg.num_gpus, strategy=cfg.strategy,
                                                      logical_cpus=cfg.logical_cpus)
    keras.utils.set_random_seed(cfg.seed)
    replicas = strategy.num_replicas_in_sync
    per_replica = distribute_lib.global_batch_check(cfg.batch_size, strategy)
    chief = distribute_lib.is_chief(strategy)
    logdir = distribute_lib.worker_logdir(cfg.logdir, strategy)
    rng = ranges_lib.get_range(cfg.pixel_range)
    validation = data_lib.validation_plan(cfg.dataset, cfg.val_split, cfg.val_limit,
                                          data_dir=cfg.data_dir, **(cfg.data_options or {}))
    inputs = train_input(cfg, strategy, split=validation.train_split)
    train_ds, info, steps_per_epoch = inputs.dataset, inputs.info, inputs.steps
    val_ds = None
    if validation.split is not None:  # the held-out training slice unless --val_split=test
        val_ds, _ = data_lib.load(cfg.dataset, validation.split, batch_size=max(cfg.batch_size, 100),
                                  pixel_range=rng, data_dir=cfg.data_dir, limit=validation.limit,
                                  training=False, **(cfg.data_options or {}))
        val_ds = validation_dataset(val_ds)
    from tfadv import models  # architecture registry

    with strategy.scope(), distribute_lib.precision_policy(cfg.precision):
        network = models.build(cfg.model, num_classes=info.num_classes, input_shape=info.image_shape,
                               **cfg.model_kwargs)
        distribute_lib.float32_logits(network)
        if cfg.init_checkpoint:
            ckpt_lib.load_into(network, cfg.init_checkpoint)
        attack = training_attack(cfg)
        kwargs = dict(attack=attack, weight_decay=cfg.weight_decay,
                      attack_training=cfg.attack_training,
                      eps_warmup_steps=int(round(cfg.eps_warmup_epochs * steps_per_epoch)))
        if cfg.attack_fp32:
            kwargs["attack_fp32"] = True
        kwargs.update(defense_kwargs or {})
        model = defenses_lib.get(defense, network, **kwargs)
        model.compile(optimizer=make_optimizer(cfg, steps_per_epoch), jit_compile=bool(cfg.xla))
    resume = ckpt_lib.ResumeCheckpoint(logdir)
    callbacks = [resume,  # first: restores the epoch/weights before the others start
                 callbacks_lib.LearningRateLogger(),
                 *model.training_callbacks(logdir),  # the defense's schedules and their logs
                 keras.callbacks.TensorBoard(os.path.join(logdir, "tensorboard")),
                 # After ResumeCheckpoint; writes the final weights too, before the export below.
                 ckpt_lib.AtomicCheckpoint(logdir, network, every=cfg.checkpoint_every),
                 *([callbacks_lib.ProgressLogger(stream, every=PROGRESS_SECONDS)]
                   if cfg.verbose == 2 else []),  # Keras' own line comes only at the epoch's end
                 *extra_callbacks]
    # Everything that can fail on a bad argument has run (the config was validated first); only
    # now is LOGDIR written, if it holds no other run (tfadv.rundir).
    kwargs_record = rundir_lib.plain(defense_kwargs or {})
    rundir_lib.prepare(logdir, rundir_lib.identity(dataclasses.asdict(cfg), defense, kwargs_record),
                       resume=cfg.resume, overwrite=cfg.overwrite, stream=stream)
    os.makedirs(logdir, exist_ok=True)
    # The metadata first: a directory killed between the two still names the run it belongs to.
    callbacks_lib.write_run_metadata(logdir, flags=flags or dataclasses.asdict(cfg), seed=cfg.seed,
                                     extra={"config": dataclasses.asdict(cfg), "defense": defense,
                                            "defense_kwargs": kwargs_record,
                                            "replicas": replicas, "per_replica_batch": per_replica,
                                            "base_lr": base_lr(cfg),
                                            "validation": validation.as_dict()})
    ckpt_lib.write_run_config(logdir, model=cfg.model, num_classes=info.num_classes,
                              input_shape=info.image_shape, pixel_range=rng.name, dataset=cfg.dataset,
                              model_kwargs=cfg.model_kwargs)
    stream.write(f"Training {defense} on {cfg.dataset} ({info.num_examples} images, "
                 f"{info.image_shape}, {info.num_classes} classes) with {cfg.model}; "
                 f"eps {cfg.eps:g}/255 of {rng} = {rng.from_pixels(cfg.eps):.5g} input units, "
                 f"{cfg.num_steps} steps of {cfg.step_size:g}/255; logdir {logdir}\n")
    stream.write(validation.describe() + "\n")
    if replicas > 1 or cfg.precision != "fp32" or cfg.xla or cfg.lr_scaling != "none":
        stream.write(f"{replicas} replica(s) ({type(strategy).__name__}), global batch "
                     f"{cfg.batch_size} = {per_replica} per replica; precision {cfg.precision}"
                     f"{' (attack fp32)' if cfg.attack_fp32 else ''}; XLA {cfg.xla}; "
                     f"LR {base_lr(cfg):g} ({cfg.lr_scaling} scaling)\n")
    start = time.time()
    model.fit(train_ds, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
              validation_data=val_ds, callbacks=callbacks, verbose=cfg.verbose,
              shuffle=False)  # the pipeline shuffles (seeded) and repeats: one pass per epoch
    train_seconds = time.time() - start
    stream.write(f"Training took {train_seconds:.1f} s"
                 + (f" (resumed at epoch {resume.resumed_epoch})" if resume.resumed_epoch else "")
                 + "\n")
    export_lib.export_savedmodel(network, os.path.join(logdir, "savedmodel"), pixel_range=rng,
                                 metadata={"architecture": cfg.model, "dataset": cfg.dataset,
                                           "model_kwargs": dict(cfg.model_kwargs or {}),
                                           "defense": defense, "eps_pixels": cfg.eps})
    if not chief:
        return model, None
    result = run_evaluation(network, cfg, out_dir=logdir, row=f"{defense} ({cfg.model})",
                            stream=stream, extra_metadata={"defense": defense,
                                                           "train_seconds": round(train_seconds, 1)})
    return model, result


def script_main(defense: str, defense_kwargs: Optional[Callable[[], dict]] = None, *,
                resolve: Optional[Callable] = None, define_flags: Optional[Callable[[], None]] = None,
                logdir: Optional[str] = None):
    """The whole body of ``scripts/train_<defense>.py``: define the shared flags, parse, train.

    ``defense_kwargs`` (optional) reads the script's own extra flags into the defense's kwargs.
    Scripts whose configuration depends on their own flags (a preset picked per defense, an attack
    built from the resolved config) pass ``resolve(FLAGS) -> (TrainConfig, defense kwargs)`` instead,
    ``define_flags()`` to define those flags, and their default ``logdir``.
    """
    from absl import app, logging

    from tfadv import flags as tfadv_flags

    tfadv_flags.define_data_flags()
    tfadv_flags.define_attack_flags()
    tfadv_flags.define_training_flags()
    if define_flags is not None:
        define_flags()
    if logdir is not None:
        tfadv_flags.FLAGS.set_default("logdir", logdir)

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
        logging.set_verbosity(logging.WARNING)
        # The strategy before anything (presets, data info) initialises TensorFlow: logical CPU
        # devices and multi-worker collectives can only be configured at program start.
        fv = tfadv_flags.FLAGS
        strategy = distribute_lib.strategy_from_flags(fv.num_gpus, strategy=fv.strategy,
                                                      logical_cpus=fv.logical_cpus)
        if resolve is not None:
            cfg, kwargs = resolve(tfadv_flags.FLAGS)
        else:
            cfg = config_from_flags(tfadv_flags.FLAGS)
            kwargs = defense_kwargs() if defense_kwargs else None
        train(cfg, defense=defense, defense_kwargs=kwargs, flags=tfadv_flags.flag_values(),
              strategy=strategy)

    app.run(main)
