"""The training experiment every ``scripts/train_*.py`` runs: flags -> data -> network -> defense ->
fit (TensorBoard, checkpoints, run metadata) -> SavedModel -> robustness report.

A script supplies only its defense's name and the defense's keyword arguments; everything else is
shared here so that no training loop is ever copied.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Callable, Optional, Tuple

import keras

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


@dataclasses.dataclass
class TrainConfig:
    """A fully resolved training run. Sizes (eps, step_size) are pixel levels out of 255."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
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
    train_limit: Optional[int] = None
    eval_limit: Optional[int] = None
    val_limit: Optional[int] = 1000
    checkpoint_every: int = 1
    eval_attacks: str = "clean,fgsm,pgd-20"
    eval_step_size: Optional[float] = None
    verbose: int = 2

    def validate(self):
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
        return self


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
        num_gpus=fv.num_gpus, train_limit=fv.train_limit, eval_limit=fv.eval_limit,
        val_limit=pick("val_limit", preset.val_limit), checkpoint_every=fv.checkpoint_every,
        eval_attacks=pick("eval_attacks", preset.eval_attacks),
        eval_step_size=pick("eval_step_size", preset.eval_step_size), verbose=fv.verbose).validate()


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    """SGD (momentum) or Adam with a piecewise-constant LR whose boundaries are given in epochs."""
    lr = cfg.lr
    if cfg.lr_boundaries:
        values = [cfg.lr * cfg.lr_decay ** i for i in range(len(cfg.lr_boundaries) + 1)]
        # PiecewiseConstantDecay keeps values[i] while step <= boundary[i]; the step counter is the
        # number of updates already made, so epoch b's first update has step b*steps_per_epoch.
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [b * steps_per_epoch - 1 for b in cfg.lr_boundaries], values)
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
                                       limit=cfg.eval_limit)
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


def train(cfg: TrainConfig, *, defense: str, defense_kwargs: Optional[dict] = None,
          flags: Optional[dict] = None, extra_callbacks=(), stream=sys.stdout):
    """Runs one training experiment end to end; returns (defense model, evaluation result)."""
    keras.utils.set_random_seed(cfg.seed)
    rng = ranges_lib.get_range(cfg.pixel_range)
    strategy = distribute_lib.strategy_from_flags(cfg.num_gpus)
    train_ds, info = data_lib.load(cfg.dataset, "train", batch_size=cfg.batch_size,
                                   pixel_range=rng, data_dir=cfg.data_dir, seed=cfg.seed,
                                   limit=cfg.train_limit)
    val_ds = None
    if cfg.val_limit != 0:
        val_ds, _ = data_lib.load(cfg.dataset, "test", batch_size=max(cfg.batch_size, 100),
                                  pixel_range=rng, data_dir=cfg.data_dir, limit=cfg.val_limit)
    steps_per_epoch = math.ceil(info.num_examples / cfg.batch_size)
    os.makedirs(cfg.logdir, exist_ok=True)
    ckpt_lib.write_run_config(cfg.logdir, model=cfg.model, num_classes=info.num_classes,
                              input_shape=info.image_shape, pixel_range=rng.name, dataset=cfg.dataset,
                              model_kwargs=cfg.model_kwargs)
    callbacks_lib.write_run_metadata(cfg.logdir, flags=flags or dataclasses.asdict(cfg), seed=cfg.seed,
                                     extra={"config": dataclasses.asdict(cfg), "defense": defense})
    import models  # architecture registry

    with strategy.scope():
        network = models.build(cfg.model, num_classes=info.num_classes, input_shape=info.image_shape,
                               **cfg.model_kwargs)
        if cfg.init_checkpoint:
            ckpt_lib.load_into(network, cfg.init_checkpoint)
        attack = training_attack(cfg)
        kwargs = dict(attack=attack, weight_decay=cfg.weight_decay,
                      attack_training=cfg.attack_training,
                      eps_warmup_steps=int(round(cfg.eps_warmup_epochs * steps_per_epoch)))
        kwargs.update(defense_kwargs or {})
        model = defenses_lib.get(defense)(network, **kwargs)
        model.compile(optimizer=make_optimizer(cfg, steps_per_epoch))
    callbacks = [callbacks_lib.LearningRateLogger(),
                 *model.training_callbacks(cfg.logdir),  # the defense's schedules and their logs
                 keras.callbacks.TensorBoard(os.path.join(cfg.logdir, "tensorboard")),
                 ckpt_lib.AtomicCheckpoint(cfg.logdir, network, every=cfg.checkpoint_every),
                 *extra_callbacks]
    stream.write(f"Training {defense} on {cfg.dataset} ({info.num_examples} images, "
                 f"{info.image_shape}, {info.num_classes} classes) with {cfg.model}; "
                 f"eps {cfg.eps:g}/255 of {rng} = {rng.from_pixels(cfg.eps):.5g} input units, "
                 f"{cfg.num_steps} steps of {cfg.step_size:g}/255; logdir {cfg.logdir}\n")
    start = time.time()
    model.fit(train_ds, epochs=cfg.epochs, validation_data=val_ds, callbacks=callbacks,
              verbose=cfg.verbose, shuffle=False)  # the pipeline shuffles (seeded)
    train_seconds = time.time() - start
    stream.write(f"Training took {train_seconds:.1f} s\n")
    export_lib.export_savedmodel(network, os.path.join(cfg.logdir, "savedmodel"), pixel_range=rng,
                                 metadata={"architecture": cfg.model, "dataset": cfg.dataset,
                                           "model_kwargs": dict(cfg.model_kwargs or {}),
                                           "defense": defense, "eps_pixels": cfg.eps})
    result = run_evaluation(network, cfg, out_dir=cfg.logdir, row=f"{defense} ({cfg.model})",
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
        if resolve is not None:
            cfg, kwargs = resolve(tfadv_flags.FLAGS)
        else:
            cfg = config_from_flags(tfadv_flags.FLAGS)
            kwargs = defense_kwargs() if defense_kwargs else None
        train(cfg, defense=defense, defense_kwargs=kwargs, flags=tfadv_flags.flag_values())

    app.run(main)
