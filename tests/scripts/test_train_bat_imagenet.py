"""scripts/train_bat.py --dataset=imagenet: the ICCV paper's preset (Table 9) and a tiny end-to-end run
on 8 logical CPU devices (MirroredStrategy) through the tensorpack pipeline.
"""

import json
import os

import pytest

from tests import testing
from tests.data.imagenet_testing import write_tiny_ilsvrc12

SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "train_bat.py")
FIELDS = ("model", "pixel_range", "eps", "step_size", "num_steps", "epochs", "batch_size", "lr",
          "lr_boundaries", "momentum", "weight_decay", "lr_scaling", "lr_warmup_epochs",
          "data_options", "eval_attacks")


def test_imagenet_preset_is_table_9(tmp_path):
    cases = [["--dataset=imagenet", "--data_dir=/nonexistent"],
             ["--dataset=imagenet", "--model=resnet152_imagenet", "--image_size=64",
              "--data_workers=3"],
             ["--dataset=imagenet", "--schedule=short"],
             ["--dataset=digits", "--image_size=64"]]
    out = testing.resolve_script_flags("train_bat.py", "define_bat_flags", cases, FIELDS)
    paper, custom, schedule, not_imagenet = out
    cfg = paper["cfg"]
    assert cfg["model"] == "resnet50_imagenet" and cfg["pixel_range"] == "[-1,1]"
    assert (cfg["eps"], cfg["step_size"], cfg["num_steps"]) == (16.0, 8.0, 2)
    assert cfg["epochs"] == 100 and cfg["lr_boundaries"] == [30, 60, 90] and cfg["lr"] == 0.1
    assert cfg["batch_size"] == 256 and cfg["lr_scaling"] == "linear"
    assert cfg["weight_decay"] == pytest.approx(1e-4) and cfg["lr_warmup_epochs"] == 5.0
    assert cfg["data_options"] == {"image_size": 224, "lmdb": False}
    assert "target=random" in cfg["eval_attacks"] and "steps=100,step=1," in cfg["eval_attacks"]
    assert paper["kwargs"]["beta"] == 100.0 and paper["kwargs"]["label_adversary"] == "la"
    assert paper["attack"]["target"] == "mc" and paper["attack"]["random_start"] == "uniform"
    assert custom["cfg"]["model"] == "resnet152_imagenet"
    assert custom["cfg"]["data_options"] == {"image_size": 64, "lmdb": False, "num_workers": 3}
    assert "--schedule" in schedule["error"] and "Received" in schedule["error"]
    assert "--image_size" in not_imagenet["error"] and "Received" in not_imagenet["error"]


@pytest.mark.slow
def test_train_bat_imagenet_on_8_logical_cpus(tmp_path):
    root = tmp_path / "ilsvrc12"
    write_tiny_ilsvrc12(root, num_classes=3, images_per_class=8)
    logdir = str(tmp_path / "run")
    proc = testing.run_python(script=SCRIPT, timeout=600, args=[
        "--dataset=imagenet", f"--data_dir={root}", "--num_gpus=8", "--logical_cpus=8",
        "--image_size=32", "--model=resnet_imagenet", "--model_kwargs=depth=18,width=8",
        "--epochs=1", "--batch_size=16", "--val_limit=8", "--val_split=test", "--eval_limit=6", "--data_workers=2",
        "--eval_attacks=clean,pgd(steps=2,step=8,eps=16,target=random)", f"--logdir={logdir}"])
    assert "Training bat on imagenet (24 images, (32, 32, 3), 3 classes)" in proc.stdout, proc.stdout
    assert "PGD-2" in proc.stdout and "true_mass" in proc.stdout
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["config"]["num_gpus"] == 8 and meta["config"]["data_options"]["image_size"] == 32
    assert meta["config"]["eps"] == 16.0 and meta["config"]["num_steps"] == 2
    for name in ("robustness.json", "savedmodel/saved_model.pb",
                 "checkpoints/ckpt-0001.weights.h5"):
        assert os.path.exists(os.path.join(logdir, name)), name
