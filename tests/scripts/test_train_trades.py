"""scripts/train_trades.py: flag resolution against the TRADES presets; a digits run end to end."""

import json
import os

import pytest

from tests import testing

SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "train_trades.py")

FIELDS = ("model", "pixel_range", "eps", "step_size", "num_steps", "epochs", "batch_size",
          "optimizer", "lr", "lr_boundaries", "momentum", "weight_decay", "random_start", "eval_attacks", "eval_step_size")

DEFAULT_CASES = [
    (["--dataset=cifar10"],
     dict(preset="trades_cifar10", model="trades_wrn34_10", pixel_range="[0,1]", eps=8.0,
          step_size=1.785, num_steps=10, epochs=100, batch_size=128, optimizer="sgd", lr=0.1,
          lr_boundaries=[74, 89, 99], momentum=0.9, weight_decay=2e-4, beta=6.0,
          random_start="gaussian", loss="kl", attack_eps=8 / 255, attack_step=0.007,
          eval_step_size=0.765)),
    (["--dataset=cifar10", "--preset=trades_cifar10_beta1"], dict(beta=1.0, eps=8.0)),
    (["--dataset=mnist"],
     dict(preset="trades_mnist", model="trades_smallcnn", eps=76.5, step_size=2.55, num_steps=40,
          lr=0.01, lr_boundaries=[54, 74, 89], weight_decay=0.0, beta=6.0, attack_eps=0.3,
          attack_step=0.01)),
    (["--dataset=mnist", "--beta=2", "--random_start=uniform"],
     dict(beta=2.0, random_start="uniform")),
    (["--dataset=digits"],
     dict(preset="digits", model="digits_cnn", eps=25.5, step_size=6.375, num_steps=7, beta=6.0,
          random_start="gaussian", loss="kl", norm="linf")),
    (["--norm=l2", "--eps=127.5", "--num_steps=5"],
     dict(norm="l2", step_size=51.0, attack_eps=0.5, attack_step=0.2)),
    (["--norm=l2", "--eps=127.5", "--step_size=25.5"], dict(attack_step=0.1)),
    (["--dataset=cifar10", "--awp_gamma=0.005"],  # TRADES-AWP as released: 10 warm-up epochs
     dict(awp_gamma=0.005, awp_warmup_epochs=10, beta=6.0)),
    (["--awp_gamma=0.01", "--awp_warmup_epochs=0"], dict(awp_gamma=0.01, awp_warmup_epochs=0)),
]
ERROR_CASES = [
    (["--beta=-1"], "Received: -1"),
    (["--norm=l2"], "--eps"),
    (["--dataset=cifar10", "--eps=0.031"], "--eps=7.905"),
    (["--awp_warmup_epochs=3"], "needs --awp_gamma"),
    (["--awp_gamma=-0.5"], "Received: -0.5"),
]


NPZ_CASE = [f"--dataset=npz:{testing.SHARED_MNIST}"]


@pytest.fixture(scope="module")
def resolved():
    """Every case resolved in one subprocess (the last one: the shared MNIST npz, when present)."""
    cases = [args for args, _ in DEFAULT_CASES + ERROR_CASES]
    if os.path.exists(testing.SHARED_MNIST):
        cases.append(NPZ_CASE)
    return testing.resolve_script_flags("train_trades.py", "define_trades_flags", cases, FIELDS)


@pytest.mark.parametrize("index", range(len(DEFAULT_CASES)))
def test_script_defaults(resolved, index):
    out, expected = resolved[index], DEFAULT_CASES[index][1]
    assert "error" not in out, out
    attack = out["attack"]
    merged = {**out["cfg"], **out["kwargs"], "preset": out["preset"], "loss": attack["loss"],
              "norm": attack["norm"], "attack_eps": attack["eps"],
              "attack_step": attack["step_size"]}
    merged["random_start"] = attack["random_start"]
    assert out["cfg"]["random_start"] == attack["random_start"]  # recorded as used
    for key, value in expected.items():
        assert merged[key] == (pytest.approx(value) if isinstance(value, float) else value), key


@pytest.mark.parametrize("index", range(len(ERROR_CASES)))
def test_script_errors(resolved, index):
    out, message = resolved[len(DEFAULT_CASES) + index], ERROR_CASES[index][1]
    assert "error" in out and message in out["error"] and "Received" in out["error"], out


@pytest.mark.skipif(not os.path.exists(testing.SHARED_MNIST), reason="no shared MNIST subset")
def test_mnist_npz_takes_the_trades_mnist_preset(resolved):
    out = resolved[len(DEFAULT_CASES) + len(ERROR_CASES)]
    assert out["preset"] == "trades_mnist" and out["cfg"]["model"] == "trades_smallcnn", out
    assert out["kwargs"]["beta"] == 6.0


def test_script_trains_on_digits(tmp_path):
    logdir = str(tmp_path / "trades")
    proc = testing.run_python(script=SCRIPT, args=[
        "--epochs=1", "--train_limit=64", "--eval_limit=32", "--val_limit=0",
        "--num_steps=2", "--eval_attacks=clean,pgd-2", "--beta=3",
        f"--logdir={logdir}"])
    assert "natural_loss" in proc.stdout and "kl_loss" in proc.stdout, proc.stdout[-2000:]
    assert "| Acc.(%) | clean | PGD-2 |" in proc.stdout
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == "trades" and meta["flags"]["beta"] == 3.0
    assert meta["config"]["random_start"] == "gaussian" and meta["config"]["num_steps"] == 2
    for name in ("robustness.json", "savedmodel/saved_model.pb",
                 "checkpoints/ckpt-0001.weights.h5"):
        assert os.path.exists(os.path.join(logdir, name)), name
