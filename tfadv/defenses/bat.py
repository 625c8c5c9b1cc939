"""Bilateral Adversarial Training (BAT; Wang & Zhang, sec. 4, eq. 10-24, appendix A/B).

min_θ max_{x'∈S_x, y'∈S_y} L(x', y'; θ) (eq. 10), split into two conditional sub-problems:

* the adversarial image x' (eq. 22-24): one (or n) projected sign steps from a random start (eq. 3);
  untargeted steps ascend CE(f(x'), y), targeted steps *descend* CE(f(x'), t) toward the most
  confusing class t = argmax_{k≠y} z_k (MC, eq. 24), the least likely class (LL, eq. 23) or a random
  class — the library's single ``IterativeAttack``;
* the adversarial label y' (eq. 11-21, appendix A/B): ``tfadv.labels.adversarial_labels`` (``la``),
  label smoothing (``ls``, eq. 15) or the one-hot label (``none``).

The network is then trained on (x', y') only with the soft-label cross-entropy. As in the authors'
release, BatchNorm is in inference mode for the clean logits, the target class, the labels and the
attack; one clean inference forward feeds both the MC target and the labels.

Named configurations of the paper (Table 3, Table 5, appendix B; the ImageNet paper's two-step MC
attack) come from :func:`bat_config`; :data:`BAT_MODELS` lists them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import keras
import tensorflow as tf

from tfadv import attacks as attacks_lib
from tfadv import labels as labels_lib
from tfadv import losses as losses_lib
from tfadv import presets as presets_lib
from tfadv import ranges as ranges_lib
from tfadv.defenses.base import AdversarialExamples, AdversarialModel
from tfadv.evaluation import specs as specs_lib

LABEL_ADVERSARIES = ("la", "ls", "none")


@dataclasses.dataclass(frozen=True)
class BatModel:
    """One named model of the paper: how x' and y' are generated (sizes in pixel levels)."""

    target: Optional[str]  # None: untargeted (FGSM-type); "mc", "ll", "random"
    random_start: bool
    label_adversary: str = "none"
    num_steps: int = 1
    step_size: Optional[float] = None  # pixels; None: eps (one full step, the paper's one-step PGD)
    eps: Optional[float] = None  # pixels; None: the caller's eps
    beta: Optional[float] = None  # None: the caller's beta
    eps_y: Optional[float] = None
    top_k: Optional[int] = None
    variant: str = "main"
    source: str = ""


BAT_MODELS = {
    # Table 3: one-step adversarial training, eps 8 = step 8, with or without random start (R-).
    "FGSM": BatModel(None, False, source="Table 3"),
    "R-FGSM": BatModel(None, True, source="Table 3"),
    "LL": BatModel("ll", False, source="Table 3 (eq. 23)"),
    "R-LL": BatModel("ll", True, source="Table 3 (eq. 23)"),
    "MC": BatModel("mc", False, source="Table 3 (eq. 24)"),
    "R-MC": BatModel("mc", True, source="Table 3 (eq. 24)"),
    # Table 5: label smoothing eps_y = 0.5, label adversary beta = 9.
    "R-MC-LS": BatModel("mc", True, "ls", eps_y=0.5, source="Table 5 (eq. 15)"),
    "R-MC-LA": BatModel("mc", True, "la", source="Table 5 (eq. 14, 18)"),
    # Appendix B: top-9 non-true classes with solution (26) (CIFAR-100, beta 11).
    "R-MC-LA9": BatModel("mc", True, "la", top_k=9, variant="sup",
                         source="appendix B (eq. 26, 28)"),
    # Table 5: Madry's PGD-7 step 2 images (random start, untargeted) with adversarial labels.
    "Madry-LA": BatModel(None, True, "la", num_steps=7, step_size=2.0, source="Table 5"),
    # ImageNet paper: two-step MC attack, eps 16, step 8, beta 100.
    "R-MC-LA-ImageNet": BatModel("mc", True, "la", num_steps=2, step_size=8.0, eps=16.0, beta=100.0,
                                 source="ICCV ImageNet setting"),
}


def model_names():
    return sorted(BAT_MODELS)


def _lookup(name: str) -> BatModel:
    for key, value in BAT_MODELS.items():
        if key.lower() == str(name).lower():
            return value
    raise ValueError(f"Unknown BAT model. Expected one of {sorted(BAT_MODELS)}. Received: {name!r}.")


def spec_name(name: str) -> str:
    """The canonical spelling of a named BAT model."""
    _lookup(name)
    return next(key for key in BAT_MODELS if key.lower() == str(name).lower())


def bat_image_attack(*, eps: float, step_size: Optional[float] = None, num_steps: int = 1,
                     target: Optional[str] = "mc", random_start: bool = True, pixel_range="[-1,1]",
                     seed: Optional[int] = None):
    """BAT's image adversary in input units: ``num_steps`` sign steps of ``step_size`` (default eps)
    from a uniform random start in the eps-ball (eq. 3) or from x; targeted kinds descend the target's
    CE (eq. 24), ``target=None`` ascends the true class's CE (FGSM / PGD)."""
    rng = ranges_lib.get_range(pixel_range)
    label = ("r-" if random_start else "") + (target or ("fgsm" if num_steps == 1 else "pgd"))
    return attacks_lib.IterativeAttack(eps=eps, step_size=eps if step_size is None else step_size,
                           num_steps=num_steps, random_start="uniform" if random_start else "none",
                           target=target, pixel_range=rng, seed=seed, name=label)


def bat_config(name: str = "R-MC-LA", *, eps: float = 8.0, pixel_range="[-1,1]",
               step_size: Optional[float] = None, num_steps: Optional[int] = None,
               beta: float = 9.0, gamma: float = 0.01, eps_y: Optional[float] = None,
               top_k: Optional[int] = None, variant: Optional[str] = None,
               seed: Optional[int] = None) -> dict:
    """Keyword arguments of :func:`bat` for the paper's model ``name`` (see :data:`BAT_MODELS`).

    ``eps`` and ``step_size`` are pixel levels out of 255 of ``pixel_range`` (8 pixels are 16/255 in
    BAT's [-1,1] inputs). Unset ``step_size``/``num_steps`` take the model's (one step of eps; Madry-LA:
    7 steps of 2 pixels). ``beta``/``eps_y``/``top_k``/``variant`` override the model's label adversary
    where it has one (``beta`` is ignored by models that fix it, e.g. ImageNet's 100).
    """
    spec = _lookup(name)
    if eps_y is not None and spec.label_adversary != "ls":
        raise ValueError(f"eps_y is the label-smoothing budget of the LS models; {spec_name(name)} "
                         f"uses label_adversary={spec.label_adversary!r}. Received: eps_y={eps_y!r}.")
    if top_k is not None and spec.label_adversary != "la":
        raise ValueError(f"top_k restricts adversarial labels (LA models); {spec_name(name)} uses "
                         f"label_adversary={spec.label_adversary!r}. Received: top_k={top_k!r}.")
    rng = ranges_lib.get_range(pixel_range)
    eps_px = spec.eps if spec.eps is not None else float(eps)
    ranges_lib.check_pixel_size(eps_px, name="eps")
    steps = spec.num_steps if num_steps is None else int(num_steps)
    step_px = step_size if step_size is not None else (spec.step_size if spec.step_size is not None
                                                        else eps_px)
    ranges_lib.check_pixel_size(step_px, name="step_size", allow_subpixel=True)
    attack = bat_image_attack(eps=rng.from_pixels(eps_px), step_size=rng.from_pixels(step_px),
                              num_steps=steps, target=spec.target, random_start=spec.random_start,
                              pixel_range=rng, seed=seed)
    out = {"image_attack": attack, "label_adversary": spec.label_adversary, "gamma": gamma,
           "beta": spec.beta if spec.beta is not None else beta,
           "top_k": top_k if top_k is not None else spec.top_k,
           "variant": variant if variant is not None else spec.variant,
           "eps_y": eps_y if eps_y is not None else spec.eps_y}
    return out


class BilateralAdversarialTraining(AdversarialModel):
    """BAT: trains on (x', y') only, x' from ``attack`` and y' from the label adversary.

    Args (beyond AdversarialModel's):
        label_adversary: ``la`` (eq. 14/18 or 26/28), ``ls`` (eq. 15 with ``eps_y``), ``none``.
        beta, gamma, variant, top_k: of ``tfadv.labels.adversarial_labels`` (``la``).
        eps_y: label-smoothing budget (``ls``).

    ``train_step`` logs ``eps_y`` (mean label budget 1 - y'_c) and ``true_mass`` (mean y'_c);
    evaluation (``test_step``) is AdversarialModel's, on hard labels, without them.
    ``make_adversarial`` returns :class:`BilateralAdversarialTraining.Examples`: x' and y'.
    """

    @dataclasses.dataclass(frozen=True)
    class Examples(AdversarialExamples):
        """BAT's training pair: the adversarial images x' and their adversarial labels y' (B, n),
        both from one inference-mode clean forward, gradients stopped."""

        labels: Any = None

    loss_description = "mean CE(f(x'), y') on the adversarial images and labels"

    def __init__(self, network: keras.Model, *, attack, label_adversary: str = "la", beta: float = 9.0,
                 gamma: float = 0.01, eps_y: Optional[float] = None, top_k: Optional[int] = None,
                 variant: str = "main", **kwargs):
        super().__init__(network, attack=attack, **kwargs)
        if label_adversary not in LABEL_ADVERSARIES:
            raise ValueError(f"Unknown label_adversary. Expected one of {LABEL_ADVERSARIES}. "
                             f"Received: {label_adversary!r}.")
        if label_adversary == "ls" and eps_y is None:
            raise ValueError("label_adversary='ls' needs eps_y (Table 5 uses 0.5). Received: None.")
        if label_adversary != "ls" and eps_y is not None:
            raise ValueError(f"eps_y is the label-smoothing budget; it is only used with "
                             f"label_adversary='ls'. Received: eps_y={eps_y!r}, "
                             f"label_adversary={label_adversary!r}.")
        if label_adversary != "la" and top_k is not None:
            raise ValueError(f"top_k applies to label_adversary='la'. Received: top_k={top_k!r}, "
                             f"label_adversary={label_adversary!r}.")
        self.label_adversary = label_adversary
        self.beta, self.gamma, self.variant, self.top_k = beta, gamma, variant, top_k
        self.eps_y = eps_y
        # Validate the label parameters once, on a dummy batch (errors at construction, not in fit).
        self.soft_labels(tf.zeros([1, self.num_classes]), tf.zeros([1], tf.int32))
        self._bat_trackers = {"eps_y": keras.metrics.Mean(name="eps_y"),
                              "true_mass": keras.metrics.Mean(name="true_mass")}

    @property
    def defense_metrics(self):
        return list(self._bat_trackers.values())

    def soft_labels(self, logits_clean, y):
        """y' (B, n) from the clean logits (gradients stopped)."""
        if self.label_adversary == "la":
            return labels_lib.adversarial_labels(logits_clean, y, beta=self.beta, gamma=self.gamma,
                                                 variant=self.variant, top_k=self.top_k)
        if self.label_adversary == "ls":
            return labels_lib.label_smoothing(y, self.num_classes, self.eps_y)
        return tf.one_hot(tf.cast(y, tf.int32), self.num_classes, dtype=tf.float32)

    def adversarial_pair(self, x, y):
        """(x', y') from ONE inference-mode clean forward shared by the target and the labels."""
        x = tf.convert_to_tensor(x, tf.float32)
        logits_clean = tf.stop_gradient(self.logits(x))
        kwargs = {"eps_scale": self.eps_scale()} if self.eps_warmup_steps else {}
        x_adv = self.attack(self.model_fn(self.attack_training), x, y, logits_clean=logits_clean,
                            **kwargs)
        return tf.stop_gradient(x_adv), tf.stop_gradient(self.soft_labels(logits_clean, y))

    def make_adversarial(self, x, y):
        """The adversarial pair (x', y') of :meth:`adversarial_pair`."""
        x_adv, y_soft = self.adversarial_pair(x, y)
        return self.Examples(x_adv, labels=y_soft)

    def defense_loss(self, x, y, examples):
        """CE(f(x'), y') on the adversarial pair only (eq. 10), BN in training mode."""
        y_soft = examples.labels
        logits_adv = self.network(examples.x_adv, training=True)
        mass = labels_lib.true_class_mass(y_soft, y)
        self._bat_trackers["true_mass"].update_state(mass)
        self._bat_trackers["eps_y"].update_state(1.0 - mass)
        return tf.reduce_mean(losses_lib.ce(logits=logits_adv, labels=y_soft)), logits_adv


def bat(network, *, image_attack=None, attack=None, label_adversary: str = "la", beta: float = 9.0,
        gamma: float = 0.01, eps_y: Optional[float] = None, top_k: Optional[int] = None,
        variant: str = "main", pixel_range="[-1,1]", eval_attack=None, weight_decay: float = 2e-4,
        attack_training: bool = False, track_clean: bool = True, **kwargs):
    """Builds a BAT model (``tfadv.defenses.get("bat", network, ...)``).

    ``image_attack`` (alias ``attack``) defaults to the paper's R-MC attack: one MC-targeted step of
    8 pixels from a uniform random start within 8 pixels of ``pixel_range`` (BAT: [-1,1]).
    ``eval_attack`` defaults to the paper's one-step evaluation: untargeted FGSM without random start
    at the training eps. Weight decay 2e-4 · Σ ½‖W‖² as released. For the paper's named models use
    ``bat(network, **bat_config("R-MC-LA9", beta=11))``.
    """
    if image_attack is not None and attack is not None and image_attack is not attack:
        raise ValueError(f"Pass the image attack once (image_attack= or attack=). "
                         f"Received: image_attack={image_attack!r}, attack={attack!r}.")
    image_attack = image_attack if image_attack is not None else attack
    if image_attack is None:
        rng = ranges_lib.get_range(pixel_range)
        image_attack = bat_image_attack(eps=rng.from_pixels(8), step_size=rng.from_pixels(8),
                                        target="mc", random_start=True, pixel_range=rng)
    if eval_attack is None and getattr(image_attack, "eps", None) is not None:
        eval_attack = attacks_lib.get("fgsm", eps=image_attack.eps, norm=image_attack.norm,
                                      pixel_range=image_attack.pixel_range)
    return BilateralAdversarialTraining(
        network, attack=image_attack, label_adversary=label_adversary, beta=beta, gamma=gamma,
        eps_y=eps_y, top_k=top_k, variant=variant, eval_attack=eval_attack,
        weight_decay=weight_decay, attack_training=attack_training, track_clean=track_clean,
        **kwargs)


# ------------------------------------------------------------------------------------------------
# Script defaults (BAT sec. 5 "Implementation Details" and the authors' release): WRN-28-10 of Madry
# without per-image standardization, inputs in [-1,1], eps 8 = step 8 pixels, batch 128, SGD momentum
# 0.9, LR 0.1 (SVHN 0.01) x0.1 at epochs 100/150 of 200 (short: 60/90 of 100), wd 2e-4 (l2_loss).
# Registered in the shared preset registry as bat_<dataset>[_short] for scripts/train_bat.py.

BAT_DATASETS = ("cifar10", "cifar100", "svhn")


def preset_name(dataset: str, schedule: str = "long") -> str:
    if schedule not in ("long", "short"):
        raise ValueError(f"schedule must be long or short. Received: {schedule!r}.")
    return f"bat_{dataset}" + ("_short" if schedule == "short" else "")


def _register_presets():
    for dataset in BAT_DATASETS:
        for schedule, epochs, boundaries in (("long", 200, (100, 150)), ("short", 100, (60, 90))):
            preset = presets_lib.Preset(
                model="madry_wrn28", pixel_range="[-1,1]", eps=8.0, step_size=8.0, num_steps=1,
                epochs=epochs, batch_size=128, optimizer="sgd",
                lr=0.01 if dataset == "svhn" else 0.1, lr_boundaries=boundaries, momentum=0.9,
                weight_decay=2e-4, eval_attacks="clean,fgsm,pgd-7,pgd-20", eval_step_size=2.0)
            name = preset_name(dataset, schedule)
            if name not in presets_lib.PRESETS.names():
                presets_lib.PRESETS.register(name)(lambda p=preset: p)


_register_presets()

# ImageNet (BAT ICCV sec. 5 "Implementation Details", sec. 5.4, Table 9), following the tensorpack
# ImageNet-Adversarial-Training code the paper says it uses: ResNet-50 (101/152 with --model), inputs
# in [-1,1], the two-step MC attack (eps 16, step 8) with beta 100 (bat_model R-MC-LA-ImageNet),
# 100 epochs, LR 0.1 x0.1 at epochs 30/60/90, global batch 256 (8 GPUs x 32), LR scaled by
# global batch / 256 with a 5-epoch warm-up above 256, momentum 0.9 (tensorpack: Nesterov), weight
# decay 1e-4 * sum(w^2)/2 on kernels (tensorpack's l2_regularizer(1e-4) on '.*/W'), evaluation =
# Table 9's columns (the bat_imagenet suite).
IMAGENET_PRESET = "bat_imagenet"
IMAGENET_EVAL = ",".join(specs_lib.SUITES["bat_imagenet"])
if IMAGENET_PRESET not in presets_lib.PRESETS.names():
    presets_lib.PRESETS.register(IMAGENET_PRESET)(lambda: presets_lib.Preset(
        model="resnet50_imagenet", pixel_range="[-1,1]", eps=16.0, step_size=8.0, num_steps=2,
        epochs=100, batch_size=256, optimizer="sgd", lr=0.1, lr_boundaries=(30, 60, 90),
        momentum=0.9, weight_decay=1e-4, eval_attacks=IMAGENET_EVAL, val_limit=1000,
        lr_scaling="linear", lr_warmup_epochs=5.0))
