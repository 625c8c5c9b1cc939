"""Bridges to other frameworks, for cross-checking tfadv against independent implementations.

:mod:`~tfadv.interop.torch_port` converts a Keras network into the same PyTorch network (its layer
converters: :mod:`~tfadv.interop.torch_layers`); :mod:`~tfadv.interop.torchattacks_pairs` pairs each
tfadv attack with its torchattacks counterpart and scores both, on the network that
:mod:`~tfadv.interop.crosscheck_network` loads, rebuilds or trains (``scripts/crosscheck_torchattacks.py``).
Nothing here is imported by the rest of tfadv (it sits above the library, beside ``tfadv.cli``), and
PyTorch is an optional extra (``pip install tfadv[crosscheck]``): import
:mod:`tfadv.interop.torch_port` only where torch is installed.
"""
