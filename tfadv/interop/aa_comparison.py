"""tfadv ``autoattack``, tfadv ``autoattack-fast`` and torchattacks' AutoAttack on one network and
the same images (issue 20; ``scripts/bench_evaluation.py --compare=...``).

Per model, in one process: each evaluation runs on the same images (the first ``num_examples`` of
the test split), is timed (wall clock) and counts its passes per example-pass — tfadv's inside the
model callable (:class:`tfadv.attacks.model_fn.CountedModelFn`), torchattacks' in a wrapper
module around the PyTorch twin (a forward adds the batch size; a gradient reaching the input adds
its batch size once per backward pass). Robust accuracy is scored as the cross-check scores it
(:func:`tfadv.interop.torchattacks_pairs.score`); the disagreement of two evaluations counts the
points one fooled and the other did not.

Models (``MODELS``): a Madry PGD model trained in-process (briefly: ``TRAINING``) or taken from a
run directory, converted layer by layer (:func:`tfadv.interop.torch_port.to_torch`) or, for the
CIFAR ResNet-20, by the twin ``scripts/bench_attacks.py`` builds (passed in as ``resnet_twin``).
torchattacks and PyTorch are imported lazily; a missing one is a clear error.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

import numpy as np

# name -> (dataset, eps in pixel levels, TrainConfig overrides of the dataset's Madry preset).
# Brief on purpose (2 CPU cores shared with other jobs): the MNIST CNN 2 epochs of PGD-7 on 3,000
# images at eps 25.5 (0.1; one epoch at Madry's 0.3 left it at 17% clean accuracy), the digits
# CNN 6 epochs of its PGD-7, ResNet-20 1 epoch of PGD-7 on 1,000 CIFAR images.
TRAINING = {
    "mnist": ("npz:../shared/data/mnist_subset.npz", 25.5,
              {"epochs": 2, "eps": 25.5, "num_steps": 7, "step_size": 6.375, "lr": 1e-3,
               "train_limit": 3000, "val_limit": 0}),
    "digits": ("digits", 25.5, {"epochs": 6}),
    "cifar": ("npz:../shared/data/cifar10_subset.npz", 8.0,
              {"model": "resnet20_cifar", "epochs": 1, "optimizer": "adam", "lr": 1e-3,
               "lr_boundaries": (), "weight_decay": 0.0, "train_limit": 1000, "val_limit": 0}),
}
MODELS = tuple(TRAINING)
EVALUATIONS = ("tfadv autoattack", "tfadv autoattack-fast", "torchattacks AutoAttack")


def require_torchattacks():
    """Imports torch and torchattacks, or raises a ValueError saying how to install them."""
    try:
        import torch  # noqa: F401
        import torchattacks  # noqa: F401
    except ImportError as e:
        raise ValueError("The comparison with torchattacks needs PyTorch and torchattacks: "
                         "pip install -e '.[crosscheck]'. Received: ImportError "
                         f"({e}).") from None


def test_images(dataset: str, pixel_range, limit: int):
    """The first ``limit`` test images and labels of ``dataset`` as NumPy arrays (float32 images
    in ``pixel_range``, int32 labels)."""
    from tfadv import data

    batches, _ = data.load(dataset, "test", batch_size=1000, pixel_range=pixel_range, limit=limit)
    pairs = [(xb.numpy(), yb.numpy()) for xb, yb in batches]
    return (np.concatenate([p[0] for p in pairs]).astype(np.float32),
            np.concatenate([p[1] for p in pairs]).astype(np.int32))


def counting_module(net):
    """``net`` (a torch module) inside a module that counts forward and backward passes per
    example in ``.passes`` (a dict)."""
    import torch

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.passes = {"forward": 0, "backward": 0}

        def forward(self, x):
            self.passes["forward"] += int(x.shape[0])
            if x.requires_grad:
                x.register_hook(self._backward)
            return self.inner(x)

        def _backward(self, grad):
            self.passes["backward"] += int(grad.shape[0])
            return grad

    return Counting(net).eval()


def run_tfadv(name, network, x, y, *, eps, pixel_range, seed, batch_size):
    """tfadv's ``name`` (``autoattack`` or ``autoattack_fast``): ``(robust, row)``."""
    import tensorflow as tf

    from tfadv import attacks
    from tfadv.interop import torchattacks_pairs as pairs

    attack = attacks.get(name, eps=eps, seed=seed, pixel_range=pixel_range)
    counted = attack.counted(network)
    before = counted.counter.totals()
    start = time.perf_counter()
    adv = np.concatenate([np.asarray(attack(counted, tf.constant(x[i:i + batch_size]),
                                            tf.constant(y[i:i + batch_size])))
                          for i in range(0, len(x), batch_size)])
    seconds = time.perf_counter() - start
    after = counted.counter.totals()
    rng = attack.pixel_range
    robust, checks = pairs.score(adv, x, y, lambda a: pairs.keras_predict(network, a), eps=eps,
                                 low=rng.low, high=rng.high)
    return robust, {"seconds": seconds, "forward": after[0] - before[0],
                    "backward": after[1] - before[1], **checks}


def run_torchattacks(net01, x01, y, *, eps01, num_classes, seed, batch_size):
    """torchattacks' AutoAttack (standard: 100 iterations, 9 targets, 5,000 queries) on the twin
    taking [0,1] NCHW images: ``(robust, row)``."""
    from tfadv.interop import torch_port
    from tfadv.interop import torchattacks_pairs as pairs

    counting = counting_module(net01)
    attack, _ = pairs.torch_attack("autoattack", counting, eps=eps01, num_classes=num_classes,
                                   seed=seed, n_iter=100, n_queries=5000)
    adv01, seconds = pairs.attack_in_batches(attack, x01, y, batch_size)
    passes = dict(counting.passes)
    robust, checks = pairs.score(adv01, x01, y,
                                 lambda a: torch_port.torch_logits(net01, a).argmax(axis=1),
                                 eps=eps01, low=0.0, high=1.0)
    return robust, {"seconds": seconds, **passes, **checks}


def compare(network, x, y, *, eps, pixel_range, seed=0, batch_size=500,
            resnet_twin: Optional[Callable] = None, torch_threads: int = 0) -> Dict[str, dict]:
    """The three evaluations on ``network`` and the images ``x`` (labels ``y``) in
    ``pixel_range``: per evaluation ``seconds``, ``forward``, ``backward``, ``robust_acc`` (%),
    ``robust`` (the mask) and the disagreement with the others (``fooled_only_by``)."""
    import torch

    from tfadv import ranges
    from tfadv.interop import torch_port

    require_torchattacks()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    rng = ranges.get_range(pixel_range)
    rows, masks = {}, {}
    for name, label in (("autoattack", EVALUATIONS[0]), ("autoattack_fast", EVALUATIONS[1])):
        masks[label], rows[label] = run_tfadv(name, network, x, y, eps=eps, pixel_range=rng.name,
                                              seed=seed, batch_size=batch_size)
    twin = resnet_twin(network) if resnet_twin is not None else torch_port.to_torch(network)
    net01 = torch_port.with_unit_input(twin, rng.name)
    x01 = ((x - rng.low) / rng.width).astype(np.float32)
    with torch.no_grad():
        logits = torch_port.torch_logits(net01, x01[:64])
    keras_logits = np.asarray(network(x[:64], training=False))
    twin_diff = float(np.abs(logits - keras_logits).max())
    label = EVALUATIONS[2]
    masks[label], rows[label] = run_torchattacks(
        net01, x01, y, eps01=eps / rng.width, num_classes=int(keras_logits.shape[-1]), seed=seed,
        batch_size=batch_size)
    for label, row in rows.items():
        row["robust_acc"] = 100.0 * float(masks[label].mean())
        row["robust"] = masks[label]
        row["fooled_only_by"] = {other: int((~masks[label] & masks[other]).sum())
                                 for other in rows if other != label}
        row["twin_max_logit_diff"] = twin_diff
    return rows


def table(model: str, n: int, rows: Dict[str, dict]) -> str:
    """The Markdown rows of one model: time, passes, robust accuracy, ratios to tfadv autoattack
    and disagreement with it."""
    ref = rows[EVALUATIONS[0]]
    lines = []
    for label, row in rows.items():
        vs = EVALUATIONS[0] if label != EVALUATIONS[0] else EVALUATIONS[2]
        lines.append(
            f"| {model} | {n} | {label} | {row['seconds']:.1f} | {row['forward']:,} | "
            f"{row['backward']:,} | {row['robust_acc']:.2f} | "
            f"{ref['seconds'] / row['seconds']:.2f}x | "
            f"{ref['backward'] / max(row['backward'], 1):.2f}x | "
            f"{row['fooled_only_by'][vs]} / {rows[vs]['fooled_only_by'][label]} vs {vs} |")
    return "\n".join(lines)


TABLE_HEAD = ("| model | images | evaluation | wall (s) | forward passes | backward passes | robust "
              "acc. (%) | wall: autoattack / this | backward: autoattack / this | fooled only "
              "by this / only by the other |\n|---|---|---|---|---|---|---|---|---|---|")


def targets(rows: Dict[str, dict]) -> Dict[str, bool]:
    """Issue 20's targets on one model."""
    aa, fast, ta = (rows[k] for k in EVALUATIONS)
    return {
        "fast: >= 5x fewer backward passes": aa["backward"] >= 5 * fast["backward"],
        "fast: >= 3x less wall time": aa["seconds"] >= 3 * fast["seconds"],
        "fast: robust acc. <= autoattack + 0.3 pp": fast["robust_acc"] <= aa["robust_acc"] + 0.3,
        "autoattack wall <= 1.0x torchattacks": aa["seconds"] <= ta["seconds"],
        "fast wall <= 0.3x torchattacks": fast["seconds"] <= 0.3 * ta["seconds"],
    }
