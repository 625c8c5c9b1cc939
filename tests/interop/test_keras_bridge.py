"""tfadv.interop.keras_bridge: any Keras model as a PyTorch module (Keras forward, TensorFlow's input
gradient as backward). Needs torch (the crosscheck extra); only the APGD run needs torchattacks."""

import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests import testing  # noqa: E402
from tfadv import models, wrappers  # noqa: E402
from tfadv.interop import keras_bridge  # noqa: E402


@pytest.fixture(scope="module")
def resnet():
    """ResNet-20 (residual connections, BatchNormalization with non-trivial inference statistics)."""
    return testing.randomize_bn(models.build("resnet20_cifar", num_classes=10,
                                             input_shape=(16, 16, 3)), seed=1)


def _unit_images(n, shape_chw, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape_chw)).astype(np.float32)


def _to_model_units(x01_nchw, low, high):
    return (x01_nchw * (high - low) + low).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("pixel_range,low,high", [("[0,1]", 0.0, 1.0), ("[-1,1]", -1.0, 1.0)])
def test_the_bridges_logits_equal_the_keras_models_exactly(resnet, pixel_range, low, high):
    bridge = keras_bridge.KerasBridge(resnet, pixel_range)
    x01 = _unit_images(5, (3, 16, 16))
    expected = resnet(_to_model_units(x01, low, high), training=False).numpy()
    with torch.no_grad():
        no_grad = bridge(torch.from_numpy(x01))
    with_grad = bridge(torch.from_numpy(x01).requires_grad_(True))
    assert no_grad.dtype == torch.float32 and tuple(no_grad.shape) == (5, 10)
    np.testing.assert_array_equal(no_grad.numpy(), expected)
    np.testing.assert_array_equal(with_grad.detach().numpy(), expected)
    assert with_grad.requires_grad and not no_grad.requires_grad


@pytest.mark.parametrize("case", ["resnet_bn", "normalizing_wrapper"])
def test_the_bridges_input_gradient_is_tensorflows(resnet, case):
    if case == "resnet_bn":
        network, low, high = resnet, -1.0, 1.0
    else:  # (x - mean) / std inside the model: its gradient carries the 1/std factor
        inner = testing.randomize_bn(testing.tiny_cnn(input_shape=(16, 16, 3), seed=2))
        network = wrappers.wrap(inner, input_shape=(16, 16, 3),
                                normalize=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
        low, high = 0.0, 1.0
    bridge = keras_bridge.KerasBridge(network, f"[{low:g},{high:g}]")
    x01 = _unit_images(4, (3, 16, 16), seed=3)
    y = np.array([0, 3, 7, 9])
    xt = torch.from_numpy(x01).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(bridge(xt), torch.from_numpy(y), reduction="sum")
    loss.backward()
    # d/dx01 = (high - low) * d/dx_model, and NHWC -> NCHW.
    expected = testing.ce_input_gradient(network, _to_model_units(x01, low, high), y)
    expected = (high - low) * expected.transpose(0, 3, 1, 2)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(xt.grad.numpy(), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_repeated_backward_passes_give_the_rows_of_the_jacobian(resnet):
    """FAB back-propagates one-hot vectors through the same logits (retain_graph=True)."""
    bridge = keras_bridge.KerasBridge(resnet, "[0,1]")
    x01 = _unit_images(2, (3, 16, 16), seed=4)
    x = tf.constant(x01.transpose(0, 2, 3, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = resnet(x, training=False)
    jacobian = tape.batch_jacobian(logits, x).numpy()  # (N, classes, H, W, C)
    xt = torch.from_numpy(x01).requires_grad_(True)
    out = bridge(xt)
    for k in (0, 4, 9):
        xt.grad = None
        mask = torch.zeros_like(out)
        mask[:, k] = 1.0
        out.backward(mask, retain_graph=True)
        np.testing.assert_allclose(xt.grad.numpy(), jacobian[:, k].transpose(0, 3, 1, 2),
                                   rtol=1e-5, atol=1e-6 * np.abs(jacobian).max())


def test_gradcheck_in_float64():
    """torch.autograd.gradcheck (finite differences vs the analytic backward) on a float64 model."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 4, 2), dtype="float64")
    h = keras.layers.Conv2D(3, 3, padding="same", activation="tanh", dtype="float64")(inputs)
    h = keras.layers.BatchNormalization(dtype="float64")(h)
    h = keras.layers.Flatten(dtype="float64")(h)
    outputs = keras.layers.Dense(4, dtype="float64")(h)
    network = keras.Model(inputs, outputs)
    bridge = keras_bridge.KerasBridge(network, "[-1,1]")
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (2, 2, 5, 4))).requires_grad_(True)
    assert bridge(x).dtype == torch.float64
    assert torch.autograd.gradcheck(bridge, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_layout_range_and_batches_round_trip():
    """A model whose logits are its input pixels in NHWC flatten order: the bridge must transpose
    NCHW -> NHWC and map [0,1] to the model's range, for any batch size (also 0)."""
    network = keras.Sequential([keras.Input((3, 2, 2)), keras.layers.Flatten()])
    bridge = keras_bridge.KerasBridge(network, "[-1,1]")
    assert bridge.input_shape_chw == (2, 3, 2)
    for n in (1, 3, 0):
        x01 = torch.from_numpy(_unit_images(n, (2, 3, 2), seed=n))
        expected = (2.0 * x01 - 1.0).permute(0, 2, 3, 1).reshape(n, 12)
        out = bridge(x01)
        assert tuple(out.shape) == (n, 12)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)


def test_what_torchattacks_reads_from_the_module(resnet):
    bridge = keras_bridge.KerasBridge(resnet, "[0,1]")
    assert next(bridge.parameters()).device == torch.device("cpu")  # its device lookup
    assert not bridge.training
    assert bridge.train() is bridge and bridge.training and not bridge.eval().training
    x01 = torch.from_numpy(_unit_images(2, (3, 16, 16)))
    with torch.no_grad():  # train() does not switch the Keras model to training mode
        np.testing.assert_array_equal(bridge.train()(x01).numpy(), bridge.eval()(x01).numpy())


def test_the_bridge_rejects_what_it_cannot_run(resnet):
    with pytest.raises(ValueError, match=r"needs a keras.Model.*Received: function\."):
        keras_bridge.KerasBridge(lambda x: x, "[0,1]")
    bridge = keras_bridge.KerasBridge(resnet, "[0,1]")
    with pytest.raises(ValueError, match=r"NCHW images of shape \(N, 3, 16, 16\)\. Received: shape "
                                         r"\(2, 16, 16, 3\)\."):
        bridge(torch.zeros(2, 16, 16, 3))


def test_torchattacks_apgd_runs_through_the_bridge():
    torchattacks = pytest.importorskip("torchattacks")
    network = testing.tiny_cnn(input_shape=(8, 8, 1), seed=0)
    bridge = keras_bridge.KerasBridge(network, "[-1,1]")
    x01 = torch.from_numpy(_unit_images(16, (1, 8, 8), seed=5))
    with torch.no_grad():
        y = bridge(x01).argmax(1)  # every example starts correctly classified
    eps = 0.3
    attack = torchattacks.APGD(bridge, norm="Linf", eps=eps, steps=10, n_restarts=1, seed=0)
    adv = attack(x01, y).detach()
    assert float((adv - x01).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    keras_pred = network(_to_model_units(adv.numpy(), -1.0, 1.0), training=False).numpy().argmax(1)
    fooled = keras_pred != y.numpy()
    assert fooled.sum() >= 8  # an untrained network falls to eps 0.3 of the range


def test_the_crosscheck_script_runs_a_resnet_through_the_bridge(tmp_path):
    """scripts/crosscheck_torchattacks.py's default on a residual network (which the layer-by-layer
    port refuses): exact logits, per-example disagreement counts, the components' worst case."""
    pytest.importorskip("torchattacks")
    import json

    from tfadv import checkpoints as ckpt_lib

    logdir = str(tmp_path / "run")
    keras.utils.set_random_seed(0)
    network = models.build("resnet20_cifar", num_classes=10, input_shape=(8, 8, 1))
    ckpt_lib.write_run_config(logdir, model="resnet20_cifar", num_classes=10, input_shape=(8, 8, 1),
                              pixel_range="[0,1]", dataset="digits")
    ckpt_lib.save(f"{logdir}/checkpoints", network, 1)
    proc = testing.run_script("crosscheck_torchattacks.py", f"--model_path={logdir}", "--eps=25.5",
                              "--num_examples=12", "--attacks=apgd_ce,apgd_t,fab_t,square",
                              "--n_iter=2", "--n_queries=5", f"--out_dir={tmp_path / 'cc'}",
                              check=False)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Bridged resnet20_cifar to PyTorch: max |logit diff| 0.00e+00" in proc.stdout
    assert "| only tfadv fooled | only torchattacks fooled |" in proc.stdout
    with open(tmp_path / "cc" / "crosscheck.json") as f:
        report = json.load(f)
    assert report["settings"]["network"] == "bridge"
    rows = {r["attack"]: r for r in report["rows"]}
    assert list(rows) == ["clean", "apgd_ce", "apgd_t", "fab_t", "square", "components"]
    for row in rows.values():
        tf_fooled, th_fooled = set(row["tfadv_fooled"]), set(row["torchattacks_fooled"])
        assert row["only_torchattacks_robust"] == len(tf_fooled - th_fooled)
        assert row["only_tfadv_robust"] == len(th_fooled - tf_fooled)
        assert row["tfadv_acc"] == pytest.approx(100 * (12 - len(tf_fooled)) / 12, abs=0.01)
    for side in ("tfadv", "torchattacks"):  # the worst case: fooled by any component
        union = set().union(*(rows[a][f"{side}_fooled"] for a in ("apgd_ce", "apgd_t", "fab_t",
                                                                  "square")))
        assert set(rows["components"][f"{side}_fooled"]) == union
    assert rows["clean"]["diff_pp"] == 0.0
