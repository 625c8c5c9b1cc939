"""What makes a module of :mod:`tfadv.cli` the program that runs: its ``--help``."""

from __future__ import annotations

import sys

from absl import flags

from tfadv import experiment


def as_main(module_name: str, doc: str) -> None:
    """Presents the command of ``module_name`` as the main program, as when its script defined it.

    absl's ``--help`` prints the ``__main__`` module's docstring and the flags that module
    defined. A command's flags are defined by its module of :mod:`tfadv.cli`, and its ``__main__``
    is the thin file of ``scripts/`` or the console-command wrapper pip writes; so the module's
    flags become key flags of the main program (``sys.argv[0]``, the name absl files ``__main__``'s
    flags under) and, where ``__main__`` has no docstring, the module's docstring becomes its.
    Call it after the module's flags are defined, before they are parsed.
    """
    values = flags.FLAGS
    for flag in values.get_key_flags_for_module(module_name):
        values.register_key_flag_for_module(sys.argv[0], flag)
    main = sys.modules.get("__main__")
    if main is not None and not getattr(main, "__doc__", None):
        main.__doc__ = doc


def run_training(defense: str, module_name: str, doc: str, *, define_flags=None, **script_kwargs):
    """Runs the training command of ``defense`` (:func:`tfadv.experiment.script_main`) whose
    module is ``module_name`` (docstring ``doc``): its own flags (``define_flags``) are defined
    beside the shared ones and presented as the main program's (:func:`as_main`)."""

    def define_command_flags():
        if define_flags is not None:
            define_flags()
        as_main(module_name, doc)

    experiment.script_main(defense, define_flags=define_command_flags, **script_kwargs)
