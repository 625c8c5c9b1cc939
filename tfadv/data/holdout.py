"""Which examples validate a training run: a held-out slice of the training split by default.

Validation during training (Keras ``validation_data``; Curriculum's k schedule follows it) must not
read the test split, or the test set steers training. :func:`validation_plan` resolves
``--val_split``:

* ``heldout`` (default): the last ``N`` examples of the training split, in the split's fixed order
  (tfds' prepared order, the file order of ``npz:PATH``, scikit-learn's order of ``digits``, a fixed
  seeded permutation of ImageNet's sorted file list), excluded from training: training reads
  ``train[:-N]`` and validation ``train[-N:]``. ``N`` is ``--val_limit``, capped at a tenth of the
  training split (:data:`MAX_HELDOUT_FRACTION`) so that training keeps most of its data; unset, it is
  that tenth. ``--train_limit`` then takes the first examples of ``train[:-N]``. None of the
  registered datasets has a validation split of its own (tfds' mnist, cifar10, cifar100 and
  svhn_cropped have only train and test), so ``heldout`` always slices the training split.
* ``test``: the first ``--val_limit`` test examples (all when unset), only when asked for; the run
  records and prints that the test split was used.

``--val_limit=0`` turns validation off with either source.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Optional

from tfadv.data import core

#: ``--val_split`` values.
VAL_SPLITS = ("heldout", "test")
#: The held-out slice is at most this fraction of the training split.
MAX_HELDOUT_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class ValidationPlan:
    """Where training and validation examples come from.

    Attributes:
        source: ``"heldout"``, ``"test"`` or ``"none"`` (``--val_limit=0``).
        train_split: the split training reads (``"train"`` or ``"train[:-N]"``).
        split: the split validation reads (``"train[-N:]"``, ``"test"``), None without validation.
        limit: ``limit`` for loading ``split`` (the test split's ``--val_limit``), else None.
        num_examples: validation examples per epoch (0 without validation).
        capped_from: the ``--val_limit`` asked for when the held-out cap made it smaller, else None.
    """

    source: str
    train_split: str
    split: Optional[str]
    limit: Optional[int]
    num_examples: int
    capped_from: Optional[int] = None

    def describe(self) -> str:
        """One line for the training log."""
        if self.source == "none":
            return "Validation: none (--val_limit=0)"
        if self.source == "test":
            return (f"Validation: {self.num_examples} images of the TEST split (--val_split=test): "
                    f"the test set is seen during training")
        capped = (f"; --val_limit={self.capped_from} capped at {MAX_HELDOUT_FRACTION:.0%} of the "
                  f"training split" if self.capped_from is not None else "")
        return (f"Validation: {self.num_examples} held-out training images ({self.split}, "
                f"excluded from training, which reads {self.train_split}{capped})")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_val_split(val_split) -> str:
    if val_split not in VAL_SPLITS:
        raise ValueError(f"--val_split must be one of {list(VAL_SPLITS)}. Received: {val_split!r}.")
    return val_split


def check_val_limit(val_limit) -> Optional[int]:
    if val_limit is not None and (isinstance(val_limit, bool)
                                  or not isinstance(val_limit, numbers.Integral) or val_limit < 0):
        raise ValueError(f"--val_limit must be an integer >= 0 (0: no validation) or unset. "
                         f"Received: {val_limit!r}.")
    return val_limit


def heldout_size(num_train: int, val_limit: Optional[int]) -> int:
    """``N`` of the held-out slice: ``val_limit`` capped at ``MAX_HELDOUT_FRACTION`` of the
    training split (that fraction when ``val_limit`` is None)."""
    cap = int(num_train * MAX_HELDOUT_FRACTION)
    return cap if val_limit is None else min(val_limit, cap)


def validation_plan(name: str, val_split: str = "heldout", val_limit: Optional[int] = None, *,
                    data_dir: Optional[str] = None, **source_options) -> ValidationPlan:
    """Resolves ``--val_split``/``--val_limit`` for dataset ``name`` (see the module docstring).

    Raises ValueError for an unknown ``val_split``, a negative ``val_limit``, and a training split
    too small to hold anything out.
    """
    check_val_split(val_split)
    check_val_limit(val_limit)
    if val_limit == 0:
        return ValidationPlan("none", "train", None, None, 0)
    if val_split == "test":
        test = core.info(name, "test", data_dir=data_dir, limit=val_limit, **source_options)
        return ValidationPlan("test", "train", "test", val_limit, test.num_examples)
    num_train = core.info(name, "train", data_dir=data_dir, **source_options).num_examples
    size = heldout_size(num_train or 0, val_limit)
    if size < 1:
        raise ValueError(
            f"The training split of {name!r} has {num_train} examples: too few to hold out "
            f"validation examples (at most {MAX_HELDOUT_FRACTION:.0%} of it). Pass "
            f"--val_split=test to validate on the test split or --val_limit=0 for no validation. "
            f"Received: --val_split={val_split!r}, --val_limit={val_limit!r}.")
    capped_from = val_limit if val_limit is not None and val_limit > size else None
    return ValidationPlan("heldout", f"train[:-{size}]", f"train[-{size}:]", None, size,
                          capped_from)
