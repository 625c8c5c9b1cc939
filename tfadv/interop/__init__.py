"""Bridges to other frameworks, for cross-checking tfadv against independent implementations.

Nothing here is imported by the rest of tfadv, and PyTorch is an optional extra
(``pip install tfadv[crosscheck]``): import :mod:`tfadv.interop.torch_port` only where torch is
installed.
"""
