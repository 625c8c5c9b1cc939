"""The console commands of pyproject.toml's ``[project.scripts]``, one module per command.

``tfadv-train-<defense>`` (madry, natural, bat, trades, dynamic, curriculum, l2lda) is
:mod:`tfadv.cli.train_<defense>`, ``tfadv-eval`` is :mod:`tfadv.cli.eval_robustness` and
``tfadv-export`` is :mod:`tfadv.cli.export_savedmodel`. Each module's ``main()`` is the whole
program; the files of the repository's ``scripts/`` folder of the same names call the same
``main()``, so ``python scripts/train_bat.py ...`` and ``tfadv-train-bat ...`` take the same flags
and do the same thing. A module's docstring is its ``--help`` text.
"""
