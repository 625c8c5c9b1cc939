"""The training experiment every ``scripts/train_*.py`` runs: flags -> recipe (:mod:`tfadv.config`,
:mod:`tfadv.recipes`) -> data -> network -> defense -> fit (TensorBoard, checkpoints, run metadata)
-> SavedModel and `LOGDIR/model.keras` -> robustness report.

A script supplies only its defense's name and the defense's keyword arguments, as its recipe built
them (its attack built once, in input units; without one, :func:`tfadv.recipes.training_kwargs`
builds the configuration's PGD); everything else is shared here so that no training loop is ever
copied.

Scale-out (BAT ImageNet sec. 5, following the tensorpack ImageNet code): ``--batch_size`` is the
GLOBAL batch, split evenly over the replicas of ``--num_gpus``/``--strategy``; ``--lr_scaling=linear``
multiplies ``--lr`` (the LR of a 256-image batch) by global batch / 256 and warms it up linearly from
``--lr`` over ``--lr_warmup_epochs`` when above 256; ``--precision``/``--xla`` pick the dtype policy
and XLA; ``--time_budget``/``--track_every`` stop at a training-time budget and log robustness
against training seconds (:mod:`tfadv.evaluation.tracking`); a killed run continues from ``LOGDIR/backup`` (``--resume``) when its configuration
matches the one LOGDIR records, and a different one is refused unless ``--overwrite``
(:mod:`tfadv.rundir`); nothing is written before every argument has been used once.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import callbacks as callbacks_lib
from tfadv import checkpoints as ckpt_lib
from tfadv import data as data_lib
from tfadv import defenses as defenses_lib
from tfadv import distribute as distribute_lib
from tfadv import evaluation as eval_lib
from tfadv import export as export_lib
from tfadv import ranges as ranges_lib
from tfadv import recipes as recipes_lib
from tfadv import rundir as rundir_lib
from tfadv.config import TrainConfig, config_from_flags
from tfadv.evaluation import tracking
from tfadv.optimizers import base_lr, make_optimizer


PROGRESS_SECONDS = 30.0  # with --verbose=2, a progress line this often within an epoch
TRACKING_LOG = "robustness_over_time.json"  # --track_every's records


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
                             num_shards=num_shards, augment=cfg.augment, **options)

    return distribute_lib.distribute_input(strategy, load_shard, global_batch=cfg.batch_size)


def validation_dataset(ds):
    """Pipeline options for the validation data given to ``fit`` (``validation_data``):
    deterministic order and DATA auto-sharding (each worker of a multi-worker run takes its share of
    every global batch). Training input is :func:`train_input`."""
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def clock_callbacks(cfg: TrainConfig, logdir: str, rng) -> list:
    """``--time_budget`` / ``--track_every``: a :class:`~tfadv.evaluation.tracking.TrainingClock`,
    or a :class:`~tfadv.evaluation.tracking.RobustnessTracker` on the first ``--track_examples``
    test images writing LOGDIR/robustness_over_time.json."""
    if not cfg.track_every:
        return [tracking.TrainingClock(cfg.time_budget, cfg.time_clock)] if cfg.time_budget else []
    test_ds, _ = data_lib.load(cfg.dataset, "test", batch_size=max(cfg.batch_size, 100),
                               pixel_range=rng, data_dir=cfg.data_dir, limit=cfg.track_examples,
                               training=False, **(cfg.data_options or {}))
    batches = [(np.asarray(x), np.asarray(y)) for x, y in test_ds]
    specs = eval_lib.parse_list(cfg.track_attacks, eps=cfg.eps, pixel_range=cfg.pixel_range,
                                step_size=cfg.eval_step_size, seed=cfg.seed)
    return [tracking.RobustnessTracker(
        np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]), specs,
        pixel_range=rng, every=cfg.track_every, budget_seconds=cfg.time_budget,
        path=os.path.join(logdir, TRACKING_LOG), clock=cfg.time_clock)]


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
        kwargs = dict(weight_decay=cfg.weight_decay, attack_training=cfg.attack_training,
                      eps_warmup_steps=int(round(cfg.eps_warmup_epochs * steps_per_epoch)))
        if cfg.attack_fp32:
            kwargs["attack_fp32"] = True
        # The recipe's attack (built once, by the script's recipe or here from cfg's PGD).
        kwargs.update(recipes_lib.training_kwargs(cfg, defense_kwargs))
        model = defenses_lib.get(defense, network, **kwargs)
        model.compile(optimizer=make_optimizer(cfg, steps_per_epoch), jit_compile=bool(cfg.xla))
    resume = ckpt_lib.ResumeCheckpoint(logdir)
    callbacks = [resume,  # first: restores the epoch/weights before the others start
                 *clock_callbacks(cfg, logdir, rng),  # after it: reads the restored step
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
                 f"eps {cfg.eps:g}/255 of {rng} = {recipes_lib.to_input(cfg.eps, rng):.5g} "
                 "input units, "
                 f"{cfg.num_steps} steps of {cfg.step_size:g}/255; logdir {logdir}\n")
    stream.write(validation.describe() + "\n")
    if replicas > 1 or cfg.precision != "fp32" or cfg.xla or cfg.lr_scaling != "none":
        stream.write(f"{replicas} replica(s) ({type(strategy).__name__}), global batch "
                     f"{cfg.batch_size} = {per_replica} per replica; precision {cfg.precision}"
                     f"{' (attack fp32)' if cfg.attack_fp32 else ''}; XLA {cfg.xla}; "
                     f"LR {base_lr(cfg):g} ({cfg.lr_scaling} scaling)\n")
    # Free AT replays every batch m times per step: cfg.epochs counts replays (the schedules
    # follow the optimizer's iterations), so the data is passed ceil(epochs / m) times.
    fit_epochs = -(-int(cfg.epochs) // int(model.replays))
    if model.replays > 1:
        stream.write(f"Every batch replayed {model.replays} times: {fit_epochs} epochs of the "
                     f"data = {fit_epochs * model.replays} passes counting replays\n")
    start = time.time()
    model.fit(train_ds, epochs=fit_epochs, steps_per_epoch=steps_per_epoch,
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
    export_lib.save_keras(network, os.path.join(logdir, "model.keras"),
                          source=ckpt_lib.checkpoint_identity(logdir))
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
