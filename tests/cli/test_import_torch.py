"""tfadv-import-torch (tfadv.cli.import_torch): a state dict file becomes a .keras model that
keras.models.load_model reads back (safe mode) with the same logits; --out is validated before
anything is read or written, and an existing file is replaced only with --overwrite."""

import os

import keras
import numpy as np
import pytest

from tests import testing
from tfadv import models
from tfadv.cli import import_torch
from tfadv.interop import state_dict as sd_lib

KWARGS = dict(depth=10, widen_factor=1)


@pytest.fixture()
def rb_npz(tmp_path):
    """A RobustBench-layout WRN-10-1 state dict as .npz, and the Keras network it came from."""
    source = models.build("trades_wrn", num_classes=5, input_shape=(8, 8, 3), **KWARGS)
    path = str(tmp_path / "rb.npz")
    np.savez(path, **sd_lib.to_state_dict(source, "rb_wrn"))
    return path, source


def _x(seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)


def test_convert_writes_a_keras_file_with_the_same_logits(rb_npz, tmp_path):
    path, source = rb_npz
    out = str(tmp_path / "m.keras")
    import_torch.convert("rb_wrn", path, out, input_shape=(8, 8, 3), model_kwargs=KWARGS,
                         normalize="0.5,0.4,0.3/0.2,0.2,0.25")
    loaded = keras.models.load_model(out, safe_mode=True)
    assert loaded.get_layer("standardize").mean == (0.5, 0.4, 0.3)
    expected = source((_x() - np.array([0.5, 0.4, 0.3], np.float32))
                      / np.array([0.2, 0.2, 0.25], np.float32), training=False)
    np.testing.assert_allclose(loaded(_x(), training=False), expected, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "rb.npz"]  # no temporary left


def test_out_is_checked_first_and_replaced_only_with_overwrite(rb_npz, tmp_path):
    path, _ = rb_npz
    out = str(tmp_path / "m.keras")
    with open(out, "w") as f:
        f.write("keep me")
    with pytest.raises(ValueError, match=r"--out exists; pass --overwrite.*Received: '.*m.keras'"):
        import_torch.convert("rb_wrn", path, out, input_shape=(8, 8, 3), model_kwargs=KWARGS)
    with pytest.raises(ValueError, match=r"ending in .keras.*Received: '.*m.h5'"):
        import_torch.convert("rb_wrn", path, str(tmp_path / "m.h5"), model_kwargs=KWARGS)
    with pytest.raises(ValueError, match=r"Unknown architecture"):
        import_torch.convert("nope", path, out, overwrite=True)
    with open(out) as f:
        assert f.read() == "keep me"
    import_torch.convert("rb_wrn", path, out, input_shape=(8, 8, 3), model_kwargs=KWARGS,
                         normalize="none", overwrite=True)
    assert [layer.name for layer in keras.models.load_model(out).layers][:2] == ["images", "conv1"]


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("None", None),
                                            ("0.5/0.25", ((0.5,), (0.25,)))])
def test_parse_normalize(value, expected):
    assert import_torch.parse_normalize(value) == expected


@pytest.mark.parametrize("value", ["0.5,0.4/0.2", "0.5/0", "mean/std", "0.5"])
def test_parse_normalize_refuses(value):
    with pytest.raises(ValueError, match=r"--normalize takes auto, none or MEAN/STD.*Received"):
        import_torch.parse_normalize(value)


def test_the_script_converts_and_refuses_an_existing_out(rb_npz, tmp_path):
    path, source = rb_npz
    out = str(tmp_path / "cli.keras")
    args = ("--arch=rb_wrn", f"--state_dict={path}", f"--out={out}", "--input_shape=8,8,3",
            "--model_kwargs=depth=10,widen_factor=1")
    proc = testing.run_script("import_torch.py", *args)
    assert "5 classes" in proc.stdout and "no normalisation inside" in proc.stdout, proc.stdout
    np.testing.assert_allclose(keras.models.load_model(out)(_x(1), training=False),
                               source(_x(1), training=False), atol=1e-5)
    again = testing.run_script("import_torch.py", *args, check=False)
    assert again.returncode != 0 and "--out exists; pass --overwrite" in again.stderr


def test_a_pt_pickle_that_would_run_code_is_refused_and_nothing_is_written(tmp_path):
    torch = pytest.importorskip("torch")
    marker, path, out = (str(tmp_path / n) for n in ("pwned", "evil.pt", "m.keras"))

    class WritesAMarker:
        def __reduce__(self):
            return (open, (marker, "w"))

    torch.save({"fc.weight": torch.zeros(2, 3), "x": WritesAMarker()}, path)
    with pytest.raises(ValueError, match=r"Refused to load the file.*weights_only"):
        import_torch.convert("rb_wrn_28_10", path, out)
    assert not os.path.exists(marker) and not os.path.exists(out)


@pytest.mark.slow
@pytest.mark.parametrize("arch,classes,shape", [("rb_wrn_28_10", 10, (32, 32, 3)),
                                                ("rb_wrn_34_10", 100, (32, 32, 3)),
                                                ("dm_wrn_28_10", 10, (32, 32, 3)),
                                                ("preact_resnet18", 10, (32, 32, 3)),
                                                ("tv_resnet50", 1000, (64, 64, 3))])
def test_full_size_safetensors_through_the_command(arch, classes, shape, tmp_path):
    """Full-size networks: a random Keras network's state dict as .safetensors, converted by the
    command's function, gives the same logits (every key of the full layout is mapped)."""
    numpy_io = pytest.importorskip("safetensors.numpy")
    source = models.build(arch, num_classes=classes, input_shape=shape)
    rng = np.random.default_rng(0)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.2, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    path = str(tmp_path / "w.safetensors")
    numpy_io.save_file(sd_lib.to_state_dict(source, arch), path)
    out = str(tmp_path / "m.keras")
    import_torch.convert(arch, path, out, input_shape=shape)
    x = np.random.default_rng(1).uniform(0, 1, (2,) + shape).astype(np.float32)
    np.testing.assert_allclose(keras.models.load_model(out)(x, training=False),
                               source(x, training=False), atol=1e-5)


def test_a_robustbench_style_pt_checkpoint_becomes_a_keras_file_with_the_same_logits(tmp_path):
    """A .pt training checkpoint ({"state_dict": ...}, DataParallel's "module.", RobustBench's
    normalize_model buffers) of a PyTorch twin, through the command's function, to a .keras file
    whose logits are the PyTorch module's."""
    torch = pytest.importorskip("torch")
    from tests.interop import torch_twins

    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    module = torch_twins.randomize(torch_twins.Normalized(
        torch_twins.TorchvisionResNet((1, 1, 1, 1), 8, 6), mean, std), seed=11)
    state = {f"module.{k}": v for k, v in module.state_dict().items()}
    path, out = str(tmp_path / "rb.pt"), str(tmp_path / "rb.keras")
    torch.save({"epoch": 99, "state_dict": state}, path)
    import_torch.convert("tv_resnet", path, out, input_shape=(32, 32, 3),
                         model_kwargs=dict(blocks=(1, 1, 1, 1), width=8))
    x = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    loaded = keras.models.load_model(out, safe_mode=True)
    np.testing.assert_allclose(loaded(x, training=False), expected, atol=1e-4, rtol=0)
    assert loaded.get_layer("standardize").mean == pytest.approx(mean)
