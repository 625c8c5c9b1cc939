"""Paper recipes, one module per paper, apart from the algorithms of :mod:`tfadv.defenses`.

A recipe is data in pixel levels out of 255 of its pixel range (a :class:`Preset`: model, eps, step,
schedule, evaluation) and a function that builds the defense's attack and keyword arguments once,
in input units (:func:`tfadv.recipes.base.to_input` is the one boundary):

* :mod:`tfadv.recipes.madry`: the per-dataset presets ``digits``, ``mnist``, ``cifar10``,
  ``cifar100``, ``svhn`` (every script's defaults where its paper has none);
* :mod:`tfadv.recipes.bat`: BAT's named models (``R-MC-LA`` ...), ``bat_<dataset>[_short]``,
  ``bat_imagenet``;
* :mod:`tfadv.recipes.trades`: ``trades_<dataset>[_beta1]`` with their β;
* :mod:`tfadv.recipes.fosc`: the FOSC paper's ``fosc_mnist``/``fosc_cifar10`` (Dynamic and
  Curriculum) and T′;
* :mod:`tfadv.recipes.l2lda`: ``l2lda_<dataset>`` with their λ;
* :mod:`tfadv.recipes.mart`: MART's ``mart_cifar10`` and β;
* :mod:`tfadv.recipes.fast`: Fast AT's ``fast_cifar10``/``fast_mnist`` (FGSM-RS, cyclic LR) and
  its guard batch;
* :mod:`tfadv.recipes.free`: Free AT's ``free_cifar10``/``free_mnist`` and m;
* :mod:`tfadv.recipes.awp`: AWP's released γ and warm-up on top of Madry and TRADES.

``get(name)`` returns a registered :class:`Preset`; ``for_dataset``/``dataset_preset`` name the
preset of a dataset. Flags left unset take their values from the chosen preset.
"""

from __future__ import annotations

from tfadv.recipes import madry  # first: the others' presets may start from a dataset's
from tfadv.recipes import awp, bat, fast, fosc, free, l2lda, mart, trades
from tfadv.recipes.base import (PRESETS, Preset, dataset_preset, for_dataset, get, pgd_attack,
                                to_input, training_kwargs)

__all__ = ["PRESETS", "Preset", "awp", "bat", "dataset_preset", "fast", "for_dataset", "fosc",
           "free", "get", "l2lda", "madry", "mart", "pgd_attack", "to_input", "trades",
           "training_kwargs"]
