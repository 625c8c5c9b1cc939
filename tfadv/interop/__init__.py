"""Bridges to other frameworks: PyTorch weights into Keras, and the cross-check of tfadv against
independent implementations.

:mod:`~tfadv.interop.state_dict` maps the state dicts of RobustBench's PyTorch architectures onto
tfadv's Keras twins, read by :mod:`~tfadv.interop.weight_files` without running code (safetensors,
``torch.load(weights_only=True)``, npz without pickles); ``tfadv-import-torch``
(:mod:`tfadv.cli.import_torch`) is its command, the one module of the library that imports this
package. Neither needs PyTorch at import.

:mod:`~tfadv.interop.keras_bridge` makes any Keras classifier a PyTorch module (the Keras forward,
TensorFlow's input gradient as backward), which torchattacks attacks by default;
:mod:`~tfadv.interop.torch_port` converts a single-chain Keras CNN into the same PyTorch network (its
layer converters: :mod:`~tfadv.interop.torch_layers`); :mod:`~tfadv.interop.torchattacks_pairs` pairs each
tfadv attack with its torchattacks counterpart and scores both, on the network that
:mod:`~tfadv.interop.crosscheck_network` loads, rebuilds or trains (``scripts/crosscheck_torchattacks.py``).
Nothing else in tfadv imports this package (it sits above the library, below ``tfadv.cli``), and
PyTorch is an optional extra (``pip install tfadv[crosscheck]``): import
:mod:`tfadv.interop.keras_bridge` and :mod:`tfadv.interop.torch_port` only where torch is installed.
"""
