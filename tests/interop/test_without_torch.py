"""tfadv.interop without PyTorch: the import error names the crosscheck extra (runs where torch is
missing or not; torch is hidden from the import system for the test)."""

import importlib
import sys

import pytest

PORT_MODULES = ("tfadv.interop.torch_port", "tfadv.interop.torch_layers", "tfadv.interop.keras_bridge")


@pytest.mark.parametrize("module", PORT_MODULES)
def test_the_port_without_torch_names_the_crosscheck_extra(module, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    for name in PORT_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match=r"pip install 'tfadv\[crosscheck\]'"):
        importlib.import_module(module)

