"""scripts/train_free.py: flag resolution against the Free AT presets; a digits run whose epochs
count replays."""

import json
import os

import pytest

from tests import testing

SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "train_free.py")
FIELDS = ("model", "eps", "step_size", "num_steps", "epochs", "batch_size", "lr", "lr_boundaries",
          "weight_decay", "random_start")
CASES = {"cifar10": ["--dataset=cifar10"], "digits": ["--dataset=digits"],
         "given": ["--dataset=digits", "--replays=2", "--step_size=10.2"],
         "eps4": ["--dataset=cifar10", "--eps=4"], "m0": ["--replays=0"], "l2": ["--norm=l2"],
         "mnist": ["--dataset=mnist"], "mnist_clip": ["--dataset=mnist", "--delta_range=clip"]}


@pytest.fixture(scope="module")
def resolved():
    """name of CASES -> how the script resolves it (one subprocess for all)."""
    outs = testing.resolve_script_flags("train_free.py", "define_free_flags",
                                        list(CASES.values()), FIELDS)
    return dict(zip(CASES, outs))


def test_cifar10_takes_the_release_settings(resolved):
    out = resolved["cifar10"]
    assert out["preset"] == "free_cifar10", out
    cfg, kwargs = out["cfg"], out["kwargs"]
    assert (cfg["model"], cfg["epochs"], cfg["batch_size"], cfg["lr"]) == (
        "madry_wrn34", 205, 128, 0.1)
    assert (cfg["lr_boundaries"], cfg["weight_decay"], cfg["num_steps"]) == ([102, 154], 2e-4, 1)
    assert (kwargs["replays"], kwargs["batch_size"]) == (8, 128)
    assert kwargs["eps"] == pytest.approx(8 / 255) and kwargs["step_size"] == pytest.approx(8 / 255)
    assert out["attack"]["name"] == "noop"
    assert kwargs["delta_range"] == "clip"  # the Shafahi et al. releases: x + delta clipped


def test_mnist_projects_delta_unless_told_to_clip(resolved):
    """free_mnist projects delta (Wong et al.'s Free release); --delta_range overrides it."""
    mnist, clip = resolved["mnist"], resolved["mnist_clip"]
    assert mnist["preset"] == clip["preset"] == "free_mnist", mnist
    assert mnist["kwargs"]["delta_range"] == "project" and mnist["kwargs"]["replays"] == 4
    assert clip["kwargs"]["delta_range"] == "clip"


def test_the_step_defaults_to_eps_and_m_to_the_presets(resolved):
    digits, given, eps4 = resolved["digits"], resolved["given"], resolved["eps4"]
    assert digits["preset"] == "digits" and digits["kwargs"]["replays"] == 8
    assert digits["cfg"]["step_size"] == 25.5 and digits["kwargs"]["step_size"] == pytest.approx(0.1)
    assert given["kwargs"]["replays"] == 2 and given["kwargs"]["step_size"] == pytest.approx(0.04)
    assert eps4["kwargs"]["step_size"] == pytest.approx(4 / 255)  # follows --eps on a preset
    assert "Received: 0" in resolved["m0"]["error"]
    assert "Received: norm='l2'" in resolved["l2"]["error"]


def test_script_trains_on_digits_replaying_every_batch(tmp_path):
    """--epochs=3 with m = 2: ceil(3 / 2) = 2 epochs of the data, 4 passes counting replays."""
    logdir = str(tmp_path / "free")
    proc = testing.run_python(script=SCRIPT, args=[
        "--epochs=3", "--replays=2", "--train_limit=64", "--eval_limit=32", "--val_limit=0",
        "--batch_size=32", "--eval_attacks=clean,pgd-2", f"--logdir={logdir}"])
    assert "Every batch replayed 2 times: 2 epochs of the data = 4 passes" in proc.stdout, \
        proc.stdout[-2000:]
    assert "Epoch 2/2" in proc.stdout
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == "free" and meta["defense_kwargs"]["replays"] == 2
    assert os.path.exists(os.path.join(logdir, "robustness.json"))
