"""tfadv.interop.crosscheck_network: what the cross-check trains is checked before it trains (the
conversion and the attack pairs run in tests/interop/test_torch_port.py, with torch)."""

import pytest


def test_the_cross_check_network_checks_train_config_keys():
    from tfadv.interop import crosscheck_network

    assert crosscheck_network.check_train_overrides({"epochs": 2}) == {"epochs": 2}
    with pytest.raises(ValueError, match=r"Unknown --train_config keys \['bogus'\].*Received: "):
        crosscheck_network.check_train_overrides({"epochs": 2, "bogus": 1})
