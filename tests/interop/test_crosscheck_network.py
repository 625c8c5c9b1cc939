"""tfadv.interop.crosscheck_network: what the cross-check trains is checked before it trains (the
conversion and the attack pairs run in tests/interop/test_torch_port.py, with torch)."""

import pytest


def test_the_cross_check_network_checks_train_config_keys():
    from tfadv.interop import crosscheck_network

    assert crosscheck_network.check_train_overrides({"epochs": 2}) == {"epochs": 2}
    with pytest.raises(ValueError, match=r"Unknown --train_config keys \['bogus'\].*Received: "):
        crosscheck_network.check_train_overrides({"epochs": 2, "bogus": 1})


def test_the_cross_check_takes_the_runs_model_keras_instead_of_rebuilding(tmp_path):
    import keras
    import numpy as np

    from tests import testing
    from tfadv import checkpoints, export
    from tfadv.interop import crosscheck_network

    run = str(tmp_path / "run")
    net = testing.tiny_cnn(seed=5)
    # An architecture no registry knows: rebuilding from the SavedModel's metadata would fail.
    checkpoints.write_run_config(run, model="not_registered", num_classes=10, input_shape=(8, 8, 1),
                                 pixel_range="[0,1]", dataset="digits")
    export.export_savedmodel(net, f"{run}/savedmodel", pixel_range="[0,1]",
                             metadata={"architecture": "not_registered"})
    with pytest.raises(ValueError):
        crosscheck_network.load_network(f"{run}/savedmodel")
    export.save_keras(net, f"{run}/model.keras")
    for path in (run, f"{run}/savedmodel"):
        network, info = crosscheck_network.load_network(path)
        x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 1)).astype("float32")
        assert isinstance(network, keras.Model), path
        np.testing.assert_allclose(network(x).numpy(), net(x).numpy(), atol=1e-5)
