"""tfadv.interop.weight_files: loading a state dict is not executing it. A .pt pickle that would
run code is refused by torch.load(weights_only=True) (and, without torch, never opened); .npz
object arrays are refused; .safetensors reads without torch. Checkpoint dicts, DataParallel's
prefix and RobustBench's normalize_model wrapper are unwrapped."""

import os
import pickle
import sys

import numpy as np
import pytest

from tfadv.interop import weight_files


class _WritesAMarker:
    """Unpickling this object calls ``open(marker, "w")``: a file appears if the pickle runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_pt(tmp_path, with_torch):
    marker = str(tmp_path / "pwned")
    path = str(tmp_path / "model.pt")
    payload = {"conv1.weight": np.zeros((2, 3, 3, 3), np.float32), "evil": _WritesAMarker(marker)}
    if with_torch:
        import torch

        payload["conv1.weight"] = torch.zeros(2, 3, 3, 3)
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    # The pickle really would run the code: plain pickle.load writes the marker.
    probe = str(tmp_path / "probe")
    with open(probe + ".pkl", "wb") as f:
        pickle.dump(_WritesAMarker(probe), f)
    with open(probe + ".pkl", "rb") as f:
        pickle.load(f).close()
    assert os.path.exists(probe)
    return path, marker


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    pytest.importorskip("torch")
    path, marker = _malicious_pt(tmp_path, with_torch=True)
    with pytest.raises(ValueError, match=r"Refused to load the file: torch.load\(weights_only=True\)"
                       r".*\(Unsupported global: GLOBAL .*open was not an allowed global by "
                       r"default\).*Received: '.*model.pt'\.") as e:
        weight_files.read(path)
    assert not os.path.exists(marker)
    assert "weights_only=False" not in str(e.value)  # no advice to run the pickle


def test_without_torch_a_pt_file_is_not_opened_and_the_error_names_the_extra(tmp_path,
                                                                               monkeypatch):
    path, marker = _malicious_pt(tmp_path, with_torch=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'tfadv\[crosscheck\]'"):
        weight_files.read(path)
    assert not os.path.exists(marker)


def test_a_plain_pt_state_dict_and_a_training_checkpoint_load(tmp_path):
    torch = pytest.importorskip("torch")
    weight = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    torch.save({"epoch": 3, "state_dict": {"module.fc.weight": weight,
                                           "module.bn.num_batches_tracked": torch.tensor(5)}},
               str(tmp_path / "ckpt.pth"))
    tensors, normalization = weight_files.unwrap(weight_files.read(str(tmp_path / "ckpt.pth")))
    assert normalization is None and sorted(tensors) == ["bn.num_batches_tracked", "fc.weight"]
    assert tensors["fc.weight"].dtype == np.float32
    np.testing.assert_array_equal(tensors["fc.weight"], np.arange(6).reshape(2, 3))


def test_a_file_that_is_not_a_pytorch_file_is_refused_too(tmp_path):
    pytest.importorskip("torch")
    path = str(tmp_path / "junk.pth")
    with open(path, "wb") as f:
        f.write(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"Refused to load the file.*\(Unsupported operand \d+\)"
                       r".*not a PyTorch state dict.*Received: '.*junk.pth'"):
        weight_files.read(path)


def test_npz_object_arrays_are_refused(tmp_path):
    path = str(tmp_path / "w.npz")
    np.savez(path, good=np.ones(3, np.float32), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"not read, as reading it would unpickle.*Received"):
        weight_files.read(path)
    np.savez(path, **{"fc.weight": np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(weight_files.read(path)["fc.weight"], np.ones((2, 3)))


def test_safetensors_reads_without_torch(tmp_path, monkeypatch):
    numpy_io = pytest.importorskip("safetensors.numpy")
    path = str(tmp_path / "w.safetensors")
    numpy_io.save_file({"normalize.mean": np.array([0.1, 0.2, 0.3], np.float32).reshape(1, 3, 1, 1),
                        "normalize.std": np.array([0.5, 0.5, 0.25], np.float32).reshape(1, 3, 1, 1),
                        "model.fc.weight": np.ones((4, 2), np.float32)}, path)
    monkeypatch.setitem(sys.modules, "torch", None)
    tensors, normalization = weight_files.unwrap(weight_files.read(path))
    assert list(tensors) == ["fc.weight"] and tensors["fc.weight"].shape == (4, 2)
    assert normalization[0] == pytest.approx((0.1, 0.2, 0.3))
    assert normalization[1] == pytest.approx((0.5, 0.5, 0.25))


def test_mu_sigma_buffers_become_the_normalisation():
    tensors, normalization = weight_files.unwrap({"mu": np.array([[0.5]]), "sigma": np.array([2.0]),
                                                  "conv1.weight": np.zeros((1, 1, 3, 3))})
    assert normalization == ((0.5,), (2.0,)) and list(tensors) == ["conv1.weight"]


@pytest.mark.parametrize("name,pattern", [("w.ckpt", r"Expected a state dict file ending in"),
                                          ("missing.safetensors", r"State dict file not found")])
def test_bad_paths(tmp_path, name, pattern):
    with pytest.raises(ValueError, match=pattern + r".*Received: '.*" + name.replace(".", r"\.")):
        weight_files.read(str(tmp_path / name))


def test_non_tensor_values_are_refused():
    with pytest.raises(ValueError, match=r"every value of the state dict to be a tensor.*'arch'"):
        weight_files.unwrap({"fc.weight": np.zeros(2), "arch": "wrn"})
