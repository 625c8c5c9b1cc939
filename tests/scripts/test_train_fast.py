"""scripts/train_fast.py: flag resolution against the Fast AT presets; a guarded digits run."""

import json
import os

import pytest

from tests import testing

SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "train_fast.py")
FIELDS = ("model", "eps", "step_size", "num_steps", "epochs", "batch_size", "optimizer", "lr",
          "lr_schedule", "lr_peak_fraction", "weight_decay", "random_start")
CASES = [["--dataset=cifar10"], ["--dataset=digits"], ["--dataset=digits", "--step_size=51"],
         ["--dataset=digits", "--early_stop", "--guard_drop=2"], ["--lr_peak_fraction=1"],
         ["--dataset=mnist"], ["--dataset=mnist", "--random_start=uniform"],
         ["--dataset=digits", "--random_start=gaussian"]]


@pytest.fixture(scope="module")
def resolved():
    return testing.resolve_script_flags("train_fast.py", "define_fast_flags", CASES, FIELDS)


def test_cifar10_takes_the_release_settings(resolved):
    out = resolved[0]
    assert out["preset"] == "fast_cifar10", out
    cfg, attack = out["cfg"], out["attack"]
    assert (cfg["model"], cfg["epochs"], cfg["optimizer"], cfg["lr"]) == (
        "preact_resnet18", 15, "sgd", 0.2)
    assert (cfg["lr_schedule"], cfg["lr_peak_fraction"], cfg["num_steps"]) == ("cyclic", 0.5, 1)
    assert attack["eps"] == pytest.approx(8 / 255)
    assert attack["step_size"] == pytest.approx(10 / 255)
    assert (attack["num_steps"], attack["random_start"]) == (1, "uniform")


def test_mnist_takes_the_release_network_and_unclipped_start(resolved):
    mnist, clipped, gaussian = resolved[5], resolved[6], resolved[7]
    assert mnist["preset"] == "fast_mnist" and mnist["cfg"]["model"] == "wong_mnist_cnn"
    assert mnist["attack"]["random_start"] == mnist["cfg"]["random_start"] == "uniform_unclipped"
    assert clipped["attack"]["random_start"] == "uniform"  # the flag overrides the release
    assert "Received: 'gaussian'" in gaussian["error"]


def test_alpha_defaults_to_one_and_a_quarter_eps_elsewhere(resolved):
    digits, given = resolved[1], resolved[2]
    assert digits["preset"] == "digits" and digits["cfg"]["step_size"] == pytest.approx(31.875)
    assert digits["attack"]["step_size"] == pytest.approx(0.125)
    assert given["attack"]["step_size"] == pytest.approx(0.2)  # --step_size=51: alpha = 2 eps
    assert "Received: 2" in resolved[3]["error"] and "Received" in resolved[4]["error"]


def test_script_trains_on_digits_with_the_guard(tmp_path):
    logdir = str(tmp_path / "fast")
    proc = testing.run_python(script=SCRIPT, args=[
        "--epochs=2", "--train_limit=64", "--eval_limit=32", "--val_limit=0", "--batch_size=32",
        "--eval_attacks=clean,pgd-2", "--early_stop", "--lr_schedule=cyclic", "--lr=0.01",
        f"--logdir={logdir}"])
    assert "guard_pgd_acc" in proc.stdout, proc.stdout[-2000:]
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == "fast" and meta["flags"]["early_stop"] is True
    assert meta["config"]["lr_schedule"] == "cyclic" and meta["config"]["num_steps"] == 1
    assert meta["defense_kwargs"]["guard_batch"] == {
        "class": "GuardBatch", "dataset": "digits", "examples": 32,
        "split": "train, first batch, unshuffled"}
    assert os.path.exists(os.path.join(logdir, "robustness.json"))
