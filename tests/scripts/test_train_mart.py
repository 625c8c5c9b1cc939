"""scripts/train_mart.py: flag resolution against the MART preset; a digits run end to end."""

import json
import os

import pytest

from tests import testing

SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "train_mart.py")
FIELDS = ("model", "eps", "step_size", "num_steps", "epochs", "lr", "lr_boundaries",
          "weight_decay", "random_start", "eval_step_size")
CASES = [["--dataset=cifar10"], ["--dataset=digits", "--beta=0", "--random_start=uniform"],
         ["--beta=-1"]]


@pytest.fixture(scope="module")
def resolved():
    return testing.resolve_script_flags("train_mart.py", "define_mart_flags", CASES, FIELDS)


def test_cifar10_takes_the_release_settings(resolved):
    out = resolved[0]
    assert out["preset"] == "mart_cifar10" and out["kwargs"]["beta"] == 6.0, out
    cfg, attack = out["cfg"], out["attack"]
    assert (cfg["model"], cfg["epochs"], cfg["lr_boundaries"]) == ("trades_wrn34_10", 90, [74, 89])
    assert cfg["weight_decay"] == pytest.approx(7e-4)
    assert cfg["eval_step_size"] == pytest.approx(0.8)
    assert (attack["loss"], attack["random_start"], attack["num_steps"]) == ("ce", "gaussian", 10)
    assert attack["eps"] == pytest.approx(8 / 255) and attack["step_size"] == pytest.approx(0.007)
    assert cfg["random_start"] == "gaussian"  # recorded as used


def test_other_datasets_take_their_preset_and_the_flags(resolved):
    out = resolved[1]
    assert out["preset"] == "digits" and out["kwargs"]["beta"] == 0.0, out
    assert out["attack"]["random_start"] == "uniform" and out["cfg"]["random_start"] == "uniform"
    assert "Received" in resolved[2]["error"], resolved[2]


def test_script_trains_on_digits(tmp_path):
    logdir = str(tmp_path / "mart")
    proc = testing.run_python(script=SCRIPT, args=[
        "--epochs=1", "--train_limit=64", "--eval_limit=32", "--val_limit=0", "--num_steps=2",
        "--eval_attacks=clean,pgd-2", "--beta=3", f"--logdir={logdir}"])
    assert "bce_loss" in proc.stdout and "kl_loss" in proc.stdout, proc.stdout[-2000:]
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == "mart" and meta["flags"]["beta"] == 3.0
    assert os.path.exists(os.path.join(logdir, "robustness.json"))
