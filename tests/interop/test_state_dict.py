"""tfadv.interop.state_dict: each architecture's converted Keras network gives its PyTorch twin's
logits (randomly initialised PyTorch modules defined in tests/interop/torch_twins.py, random BN
statistics; no downloads). The parity tests need torch (CI installs the crosscheck extra); the
mapping's errors and a Keras -> state dict -> Keras round trip run without it."""

import numpy as np
import pytest

from tfadv import models
from tfadv.interop import state_dict as sd_lib
from tfadv.interop import weight_files

ATOL = 1e-4
TORCH_SHAPE = (2, 3, 32, 32)


def _logits(network, x_nchw):
    return np.asarray(network(np.transpose(x_nchw, (0, 2, 3, 1)), training=False))


def _torch_parity(module, arch, x, **build_kwargs):
    torch = pytest.importorskip("torch")
    tensors = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    tensors, normalization = weight_files.unwrap(tensors)
    network = sd_lib.build(arch, tensors, input_shape=x.shape[2:] + x.shape[1:2],
                           normalization=normalization, **build_kwargs)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = _logits(network, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    assert np.abs(expected).max() > 1e-2  # a real signal, not all zeros
    return network


def _images(shape=TORCH_SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


class TestParityWithPyTorch:
    @pytest.fixture(autouse=True)
    def _twins(self):
        pytest.importorskip("torch")
        from tests.interop import torch_twins

        self.twins = torch_twins

    def test_robustbench_wide_resnet(self):
        module = self.twins.randomize(self.twins.RBWideResNet(16, 2, 10), seed=1)
        _torch_parity(module, "rb_wrn", _images(), model_kwargs=dict(depth=16, widen_factor=2))

    @pytest.mark.parametrize("act", ["swish", "relu"])
    def test_deepmind_wide_resnet_with_its_normalisation(self, act):
        fn = self.twins.Swish if act == "swish" else self.twins.nn.ReLU
        mean, std = (0.3, 0.5, 0.4), (0.2, 0.3, 0.25)
        module = self.twins.randomize(self.twins.DMWideResNet(16, 2, 10, fn, mean, std), seed=2)
        network = _torch_parity(module, "dm_wrn", _images(),
                                model_kwargs=dict(depth=16, width=2, activation=act, mean=mean,
                                                  std=std))
        assert network.get_layer("standardize").mean == mean

    def test_deepmind_on_non_square_inputs(self):
        module = self.twins.randomize(self.twins.DMWideResNet(10, 1, 5, self.twins.Swish,
                                                              (0.5,) * 3, (0.25,) * 3), seed=3)
        _torch_parity(module, "dm_wrn", _images((2, 3, 12, 20)),
                      model_kwargs=dict(depth=10, width=1, mean=(0.5,) * 3, std=(0.25,) * 3))

    @pytest.mark.parametrize("bn_before_fc,out_shortcut", [(False, False), (True, True)])
    def test_preact_resnet18(self, bn_before_fc, out_shortcut):
        module = self.twins.randomize(self.twins.PreActResNet18(10, bn_before_fc, out_shortcut), 4)
        _torch_parity(module, "preact_resnet18", _images((2, 3, 16, 16)),
                      model_kwargs=dict(bn_before_fc=bn_before_fc, out_shortcut=out_shortcut))

    def test_torchvision_resnet_in_robustbench_normalize_model(self):
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        net = self.twins.TorchvisionResNet((1, 2, 1, 1), 8, 7)
        module = self.twins.randomize(self.twins.Normalized(net, mean, std), seed=5)
        network = _torch_parity(module, "tv_resnet", _images((2, 3, 33, 33)),
                                model_kwargs=dict(blocks=(1, 2, 1, 1), width=8))
        assert network.get_layer("standardize").std == pytest.approx(std)

    def test_full_resnet50_keys_and_shapes_match_torchvision_layout(self):
        module = self.twins.TorchvisionResNet((3, 4, 6, 3), 64, 1000)
        tensors = {k: v.detach().numpy() for k, v in module.state_dict().items()}
        network = sd_lib.build("tv_resnet50", tensors, input_shape=(64, 64, 3))
        assert network.count_params() == sum(v.size for k, v in tensors.items()
                                             if not k.endswith("num_batches_tracked"))


    def test_to_state_dict_loads_strictly_into_the_pytorch_twin(self):
        torch = pytest.importorskip("torch")
        network = models.build("preact_resnet18", num_classes=10, input_shape=(16, 16, 3))
        module = self.twins.PreActResNet18(10, False, False).eval()
        tensors = sd_lib.to_state_dict(network, "preact_resnet18")
        result = module.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()},
                                        strict=True)
        assert result.missing_keys == [] and result.unexpected_keys == []
        x = _images((2, 3, 16, 16), seed=9)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(_logits(network, x), expected, atol=ATOL, rtol=0)


def test_round_trip_through_a_state_dict_without_torch():
    kwargs = dict(depth=10, width=1, activation="relu", mean=(0.5,) * 3, std=(0.2,) * 3)
    source = models.build("dm_wrn", num_classes=4, input_shape=(8, 8, 3), **kwargs)
    tensors = sd_lib.to_state_dict(source, "dm_wrn")
    assert "layer.0.block.0.conv_0.weight" in tensors and tensors["logits.weight"].shape == (4, 64)
    tensors["layer.1.block.0.batchnorm_0.num_batches_tracked"] = np.array(3)  # ignored
    copy = sd_lib.build("dm_wrn", tensors, input_shape=(8, 8, 3), model_kwargs=kwargs)
    x = _images((3, 3, 8, 8), seed=7)
    np.testing.assert_array_equal(_logits(copy, x), _logits(source, x))


def test_to_state_dict_survives_a_safetensors_round_trip(tmp_path):
    """The arrays are C-contiguous: the safetensors writer stores a transposed view's memory
    as it lies, which scrambled every conv kernel before."""
    numpy_io = pytest.importorskip("safetensors.numpy")
    source = models.build("trades_wrn", num_classes=3, input_shape=(8, 8, 3), depth=10,
                          widen_factor=1)
    tensors = sd_lib.to_state_dict(source, "rb_wrn")
    assert all(v.flags["C_CONTIGUOUS"] for v in tensors.values())
    numpy_io.save_file(tensors, str(tmp_path / "w.safetensors"))
    back = weight_files.read(str(tmp_path / "w.safetensors"))
    copy = sd_lib.build("rb_wrn", back, input_shape=(8, 8, 3),
                        model_kwargs=dict(depth=10, widen_factor=1))
    x = _images((2, 3, 8, 8), seed=4)
    np.testing.assert_array_equal(_logits(copy, x), _logits(source, x))


@pytest.mark.parametrize("arch,layer,key", [
    ("rb_wrn_28_10", "block2_layer1_shortcut_conv", "block2.layer.0.convShortcut"),
    ("rb_wrn_34_10", "final_bn", "bn1"),
    ("rb_wrn_34_10", "logits", "fc"),
    ("dm_wrn_70_16", "layer2_block7_batchnorm_1", "layer.2.block.7.batchnorm_1"),
    ("preact_resnet18", "layer3_0_shortcut_0", "layer3.0.shortcut.0"),
    ("preact_resnet18", "bn", "bn"),
    ("tv_resnet50", "layer4_0_downsample_1", "layer4.0.downsample.1"),
    ("tv_resnet50", "layer1_2_conv3", "layer1.2.conv3"),
])
def test_layer_names_become_the_pytorch_module_paths(arch, layer, key):
    assert sd_lib.get_architecture(arch).torch_name(layer) == key


def _small_dm():
    kwargs = dict(depth=10, width=1)
    arch = sd_lib.get_architecture("dm_wrn")
    return arch, sd_lib.to_state_dict(models.build("dm_wrn", num_classes=3, input_shape=(8, 8, 3),
                                                   **kwargs), "dm_wrn"), kwargs


def test_missing_and_unexpected_keys_are_listed_and_nothing_is_set():
    arch, tensors, kwargs = _small_dm()
    del tensors["layer.2.block.0.shortcut.weight"]
    tensors["layer.2.block.0.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"missing keys \(1\): \['layer.2.block.0.shortcut.weight'\]"
                       r".*unexpected keys \(1\): \['layer.2.block.0.extra.weight'\].*Received: "):
        sd_lib.build("dm_wrn", tensors, input_shape=(8, 8, 3), model_kwargs=kwargs)


def test_a_shape_mismatch_is_named_and_nothing_is_assigned():
    arch, tensors, kwargs = _small_dm()
    target = models.build("dm_wrn", num_classes=3, input_shape=(8, 8, 3), **kwargs)
    before = [np.array(v) for v in target.weights]
    tensors["init_conv.weight"] = np.zeros((16, 3, 5, 5), np.float32)
    tensors["logits.bias"] = np.zeros(3, np.float32) + 1.0
    with pytest.raises(ValueError, match=r"init_conv.weight: expected \(3, 3, 3, 16\)"):
        sd_lib.load(target, arch, tensors)
    for old, new in zip(before, target.weights):
        np.testing.assert_array_equal(old, np.array(new))


def test_wrong_architecture_and_unknown_name():
    _, tensors, _ = _small_dm()
    with pytest.raises(ValueError, match=r"no classifier weight 'fc.weight'.*Received"):
        sd_lib.build("rb_wrn_28_10", tensors)
    with pytest.raises(ValueError, match=r"Unknown architecture.*Received: arch='vit'"):
        sd_lib.get_architecture("vit")
