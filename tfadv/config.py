"""The resolved configuration of a training run (:class:`TrainConfig`, sizes in pixel levels out of
255) and its resolution from the scripts' flags against a recipe's preset (:func:`config_from_flags`).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Optional, Tuple

from tfadv import data as data_lib
from tfadv import distribute as distribute_lib
from tfadv import evaluation as eval_lib
from tfadv import optimizers as optimizers_lib
from tfadv import ranges as ranges_lib
from tfadv import recipes as recipes_lib


@dataclasses.dataclass
class TrainConfig:
    """A fully resolved training run. Sizes (eps, step_size) are pixel levels out of 255."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
    # Extra keyword arguments of tfadv.data.load for both splits (e.g. ImageNet's image_size).
    data_options: dict = dataclasses.field(default_factory=dict)
    # Training augmentation (tfadv.data.augment): None = the dataset's default, "none", or a name.
    augment: Optional[str] = None
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
    lr_schedule: str = "piecewise"
    lr_peak_fraction: float = 0.5
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
    # Time to robustness (tfadv.evaluation.tracking): stop after this many training seconds, and
    # every track_every optimizer steps evaluate track_attacks on the first track_examples test
    # images, logged against training seconds in LOGDIR/robustness_over_time.json.
    time_budget: Optional[float] = None
    time_clock: str = "wall"
    track_every: int = 0
    track_attacks: str = "clean,pgd-20"
    track_examples: int = 500

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
        if self.lr_scaling not in optimizers_lib.LR_SCALINGS:
            raise ValueError(f"--lr_scaling must be one of {optimizers_lib.LR_SCALINGS}. "
                             f"Received: {self.lr_scaling!r}.")
        if self.lr_warmup_epochs < 0:
            raise ValueError(f"--lr_warmup_epochs must be >= 0. Received: {self.lr_warmup_epochs!r}.")
        if self.lr_schedule not in optimizers_lib.LR_SCHEDULES:
            raise ValueError(f"--lr_schedule must be one of {optimizers_lib.LR_SCHEDULES}. "
                             f"Received: {self.lr_schedule!r}.")
        if not 0 < self.lr_peak_fraction < 1:
            raise ValueError("--lr_peak_fraction must lie strictly between 0 and 1. "
                             f"Received: {self.lr_peak_fraction!r}.")
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
        if self.time_budget is not None and not 0 < self.time_budget < float("inf"):
            raise ValueError("--time_budget must be a positive number of training seconds or "
                             f"unset. Received: {self.time_budget!r}.")
        if self.time_clock not in ("wall", "cpu"):
            raise ValueError("--time_clock must be 'wall' or 'cpu'. "
                             f"Received: {self.time_clock!r}.")
        for name, low in (("track_every", 0), ("track_examples", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"--{name} must be an integer >= {low}. Received: {value!r}.")
        if self.track_every:
            eval_lib.parse_list(self.track_attacks, eps=self.eps, pixel_range=self.pixel_range,
                                step_size=self.eval_step_size, seed=self.seed)
        if self.augment is not None:  # "none" or a registered name; else an error naming them
            if not isinstance(self.augment, str):
                raise ValueError(f"--augment must be a name or 'none'. Received: {self.augment!r}.")
            data_lib.augment.resolve(self.dataset, self.augment)
        data_lib.holdout.check_val_limit(self.val_limit)
        data_lib.holdout.check_val_split(self.val_split)
        eval_lib.parse_list(self.eval_attacks, eps=self.eps, pixel_range=self.pixel_range,
                            step_size=self.eval_step_size, seed=self.seed)


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


def config_from_flags(flag_values, default_preset=None) -> TrainConfig:
    """Fills unset flags from the dataset's preset and returns a validated TrainConfig.

    ``default_preset(dataset, data_dir)``: a command's own choice of preset (a paper's recipe for
    the datasets it covers), written into ``--preset`` when that flag is unset; otherwise the
    dataset's own preset is used."""
    fv = flag_values
    if fv.preset is None and default_preset is not None:
        fv.preset = default_preset(fv.dataset, fv.data_dir)
    dataset = fv.dataset
    preset_name = fv.preset
    if preset_name is None:
        # Validates the dataset name (and that a tfds dataset is prepared) before anything else.
        image_shape = data_lib.info(dataset, "test", data_dir=fv.data_dir).image_shape
        preset_name = recipes_lib.for_dataset(dataset, image_shape)
    preset = recipes_lib.get(preset_name)

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
        dataset=dataset, data_dir=fv.data_dir, augment=pick_new("augment", None),
        pixel_range=pick("pixel_range", preset.pixel_range),
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
        lr_schedule=pick_new("lr_schedule", preset.lr_schedule),
        lr_peak_fraction=pick_new("lr_peak_fraction", preset.lr_peak_fraction),
        resume=pick_new("resume", True), overwrite=pick_new("overwrite", False),
        train_limit=fv.train_limit, eval_limit=fv.eval_limit,
        val_limit=pick("val_limit", preset.val_limit), val_split=pick_new("val_split", "heldout"),
        checkpoint_every=fv.checkpoint_every,
        eval_attacks=pick("eval_attacks", preset.eval_attacks),
        eval_step_size=pick("eval_step_size", preset.eval_step_size), verbose=fv.verbose,
        time_budget=pick_new("time_budget", None), time_clock=pick_new("time_clock", "wall"),
        track_every=pick_new("track_every", 0),
        track_attacks=pick_new("track_attacks", "clean,pgd-20"),
        track_examples=pick_new("track_examples", 500)).validate()
