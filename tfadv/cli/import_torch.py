"""Converts a PyTorch state dict (a RobustBench checkpoint) into a Keras model file (.keras).

    python scripts/import_torch.py --arch=dm_wrn_70_16 \
        --state_dict=Gowal2020Uncovering_70_16.pt --out=gowal2020_70_16.keras
    python scripts/import_torch.py --arch=rb_wrn_28_10 --state_dict=Carmon2019Unlabeled.safetensors \
        --out=carmon2019.keras

Architectures (--arch; the PyTorch definitions they mirror, and the state dict keys they take):
rb_wrn_28_10, rb_wrn_34_10 (RobustBench/TRADES WideResNet: conv1, block1.layer.N.bn1/conv1/...,
bn1, fc); dm_wrn_28_10, dm_wrn_70_16 (DeepMind's DMWideResNet: init_conv, layer.N.block.M...,
batchnorm, logits; Swish by default, --model_kwargs=activation=relu for the ReLU variants);
preact_resnet18 (RobustBench's PreActResNet18: conv1, layerN.M.bn1/conv1/bn2/conv2/shortcut.0, and
with --model_kwargs=bn_before_fc=true the final bn); tv_resnet50 (torchvision's resnet50, ImageNet,
224x224); and the generic rb_wrn, dm_wrn (depth=..., width=...) and tv_resnet.

State dicts load without running code: .safetensors with the safetensors package (no PyTorch;
pip install 'tfadv[weights]'), .pt/.pth with torch.load(weights_only=True) (pip install
'tfadv[crosscheck]'; a pickle holding anything but tensors is refused), .npz with
allow_pickle=False. A checkpoint dict's "state_dict", the "module." prefix of DataParallel and
RobustBench's normalize_model wrapper ("normalize.mean/std" + "model.") are unwrapped.

The number of classes comes from the classifier's weight. --normalize puts (x - mean) / std inside
the network so that it takes pixels in [0, 1] and eps stays in pixel units: "auto" (default) uses
the file's own normalisation buffers if it has them, else the architecture's (CIFAR-10's for
dm_wrn_*, ImageNet's for tv_resnet*, none for rb_wrn_* and preact_resnet18); "none"; or
"MEAN/STD" with comma-separated per-channel values (e.g. 0.5071,0.4865,0.4409/0.2673,0.2564,0.2762).

--out must end in .keras and be new; an existing file is replaced (atomically) only with
--overwrite. The file loads with keras.models.load_model after `import tfadv.models` (which
registers its layers), in safe mode, and evaluates with
`tfadv-eval --model_path=OUT --pixel_range="[0,1]" ...`.
"""

import os

from absl import app, flags, logging

from tfadv import atomic
from tfadv.cli import program
from tfadv.config import parse_model_kwargs
from tfadv.interop import state_dict as state_dict_lib
from tfadv.interop import weight_files

flags.DEFINE_string("arch", None, "Architecture: " + ", ".join(sorted(state_dict_lib.ARCHITECTURES)))
flags.DEFINE_string("state_dict", None, "State dict file: .safetensors, .pt/.pth/.bin or .npz.")
flags.DEFINE_string("out", None, "Output Keras model file (.keras).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")
flags.DEFINE_string("normalize", "auto", "auto, none, or MEAN/STD (comma-separated per channel): "
                    "(x - mean) / std inside the network.")
flags.DEFINE_list("input_shape", None, "H,W,C of the inputs (default: 32,32,3; 224,224,3 for "
                  "tv_resnet*).")
flags.DEFINE_list("model_kwargs", [], "Options of the architecture as key=value (e.g. "
                  "activation=relu, bn_before_fc=true, depth=16,width=2 for dm_wrn).")
FLAGS = flags.FLAGS


def parse_normalize(value):
    """``"auto"`` -> ``"auto"``, ``"none"`` -> None, ``"M1,M2/S1,S2"`` -> ``((M1, M2), (S1, S2))``."""
    text = str(value).strip().lower()
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    parts = text.split("/")
    try:
        mean, std = (tuple(float(v) for v in part.split(",")) for part in parts)
    except ValueError:
        mean = std = ()
    if not mean or len(mean) != len(std) or min(std) <= 0:
        raise ValueError("--normalize takes auto, none or MEAN/STD (as many comma-separated "
                         f"values each, std > 0). Received: {value!r}.")
    return mean, std


def check_out(path, overwrite):
    """Validates --out before anything is read or written."""
    if not path or not str(path).endswith(".keras"):
        raise ValueError(f"--out must be a file name ending in .keras. Received: {path!r}.")
    if os.path.isdir(path):
        raise ValueError(f"--out is a directory. Received: {path!r}.")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"--out exists; pass --overwrite to replace it. Received: {path!r}.")


def convert(arch, path, out, *, normalize="auto", input_shape=None, model_kwargs=None,
            overwrite=False):
    """Reads ``path``, builds ``arch`` with its weights and writes ``out`` atomically; returns the
    network. Every argument is checked before anything is written."""
    check_out(out, overwrite)
    state_dict_lib.get_architecture(arch)
    normalization = parse_normalize(normalize)
    kwargs = dict(model_kwargs or {})
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
    tensors, own = weight_files.unwrap(weight_files.read(path))
    if normalization == "auto":
        normalization = own
    elif normalization is None:
        kwargs.update(mean=None, std=None)
    network = state_dict_lib.build(arch, tensors, input_shape=input_shape,
                                   normalization=normalization, model_kwargs=kwargs)
    with atomic.atomic_path(out) as tmp:
        network.save(tmp)
    return network


def run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    try:
        input_shape = [int(d) for d in FLAGS.input_shape] if FLAGS.input_shape else None
        if input_shape is not None and len(input_shape) != 3:
            raise ValueError(f"--input_shape takes H,W,C. Received: {FLAGS.input_shape!r}.")
        network = convert(FLAGS.arch, FLAGS.state_dict, FLAGS.out, normalize=FLAGS.normalize,
                          input_shape=input_shape, model_kwargs=parse_model_kwargs(FLAGS.model_kwargs),
                          overwrite=FLAGS.overwrite)
    except (ValueError, ImportError) as e:
        raise app.UsageError(str(e)) from None
    standardize = [layer for layer in network.layers if layer.name == "standardize"]
    note = (f"(x - {list(standardize[0].mean)}) / {list(standardize[0].std)} inside"
            if standardize else "no normalisation inside")
    print(f"Wrote {FLAGS.out}: {FLAGS.arch}, input {network.input_shape[1:]}, "
          f"{network.output_shape[-1]} classes, {network.count_params():,} parameters, {note}.")


def main():
    """Runs ``tfadv-import-torch`` (``python scripts/import_torch.py``): parses the flags, converts."""
    program.as_main(__name__, __doc__)
    flags.mark_flags_as_required(["arch", "state_dict", "out"])
    app.run(run)
