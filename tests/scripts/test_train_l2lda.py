"""scripts/train_l2lda.py: flag resolution against the L2L-DA presets; a digits run end to end."""

import json
import os

import pytest

from tests import testing

SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "train_l2lda.py")

FIELDS = ("model", "pixel_range", "eps", "step_size", "num_steps", "epochs", "batch_size",
          "optimizer", "lr", "lr_boundaries", "momentum", "weight_decay", "random_start",
          "eval_attacks", "eval_step_size")

DEFAULT_CASES = [
    (["--dataset=mnist"],
     dict(preset="l2lda_mnist", model="lenet5", pixel_range="[0,1]", eps=76.5, step_size=19.125,
          num_steps=10, epochs=167, batch_size=100, optimizer="sgd", lr=0.01, lr_boundaries=[83],
          momentum=0.9, weight_decay=1e-5, lam=0.02, random_start="none", recursive=True,
          diversity=True, latent_dim=8, use_delta=True, class_conditional=True,
          normalize_grad=True, k_eps=0.3, k_step=0.075, k_num_steps=10, val_steps=10,
          val_step=0.075, eval_step_size=19.125)),
    (["--dataset=cifar10"],
     dict(preset="l2lda_cifar10", model="resnet20_cifar", eps=8.0, step_size=2.0, num_steps=10,
          epochs=200, lr_boundaries=[100], batch_size=100, lam=0.5, k_eps=8 / 255,
          k_step=2 / 255, val_step=2 / 255)),
    (["--dataset=digits"],
     dict(preset="l2lda_digits", model="digits_cnn", eps=25.5, step_size=6.375, num_steps=10,
          weight_decay=1e-5, lam=0.02, k_eps=0.1)),
    (["--dataset=mnist", "--norecursive"],
     dict(num_steps=1, step_size=76.5, recursive=False, k_step=0.3, k_num_steps=1, val_steps=10)),
    (["--dataset=mnist", "--norecursive", "--num_steps=3", "--step_size=10"],
     dict(num_steps=3, step_size=10.0)),
    (["--dataset=mnist", "--nodiversity", "--nouse_delta", "--noclass_conditional", "--lam=1"],
     dict(diversity=False, use_delta=False, class_conditional=False, lam=1.0)),
    (["--norecursive", "--nodiversity", "--latent_dim=0", "--nouse_delta",
      "--noclass_conditional", "--nonormalize_grad", "--step_reduction=sum"],
     dict(latent_dim=0, normalize_grad=False, recursive=False, step_reduction="sum")),
]
ERROR_CASES = [
    (["--lam=-1"], "Received: -1"),
    (["--norm=l2", "--eps=127.5"], "--norm=l2"),
    (["--num_steps=0"], "Received: 0"),
]
NPZ_CASE = [f"--dataset=npz:{testing.SHARED_MNIST}"]


@pytest.fixture(scope="module")
def resolved():
    """Every case resolved in one subprocess (the last one: the shared MNIST npz, when present)."""
    cases = [args for args, _ in DEFAULT_CASES + ERROR_CASES]
    if os.path.exists(testing.SHARED_MNIST):
        cases.append(NPZ_CASE)
    return testing.resolve_script_flags("train_l2lda.py", "define_l2lda_flags", cases, FIELDS)


@pytest.mark.parametrize("index", range(len(DEFAULT_CASES)))
def test_script_defaults(resolved, index):
    out, expected = resolved[index], DEFAULT_CASES[index][1]
    assert "error" not in out, out
    kw = out["kwargs"]
    merged = {**out["cfg"], **kw, "preset": out["preset"], "k_eps": kw["eps"],
              "k_step": kw["step_size"], "k_num_steps": kw["num_steps"],
              "val_steps": out["attack"]["num_steps"], "val_step": out["attack"]["step_size"]}
    merged["eps"], merged["step_size"] = out["cfg"]["eps"], out["cfg"]["step_size"]
    merged["num_steps"] = out["cfg"]["num_steps"]
    assert out["attack"]["random_start"] == "uniform" and out["attack"]["loss"] == "ce"
    for key, value in expected.items():
        assert merged[key] == (pytest.approx(value) if isinstance(value, float) else value), key


@pytest.mark.parametrize("index", range(len(ERROR_CASES)))
def test_script_errors(resolved, index):
    out, message = resolved[len(DEFAULT_CASES) + index], ERROR_CASES[index][1]
    assert "error" in out and message in out["error"] and "Received" in out["error"], out


@pytest.mark.skipif(not os.path.exists(testing.SHARED_MNIST), reason="no shared MNIST subset")
def test_mnist_npz_takes_the_l2lda_mnist_preset(resolved):
    out = resolved[len(DEFAULT_CASES) + len(ERROR_CASES)]
    assert out["preset"] == "l2lda_mnist" and out["cfg"]["model"] == "lenet5", out
    assert out["kwargs"]["lam"] == 0.02


@pytest.mark.slow
def test_script_trains_on_digits_and_saves_the_generator(tmp_path):
    logdir = str(tmp_path / "l2lda")
    proc = testing.run_python(script=SCRIPT, args=[
        "--epochs=1", "--train_limit=64", "--eval_limit=32", "--val_limit=0",
        "--num_steps=2", "--base_filters=4", "--eval_attacks=clean,pgd-2",
        "--lam=0.3", f"--logdir={logdir}"])
    assert "gen_objective" in proc.stdout and "gen_div" in proc.stdout, proc.stdout[-2000:]
    assert "| Acc.(%) | clean | PGD-2 |" in proc.stdout
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == "l2lda" and meta["flags"]["lam"] == 0.3
    assert meta["config"]["num_steps"] == 2 and meta["config"]["random_start"] == "none"
    for name in ("robustness.json", "savedmodel/saved_model.pb",
                 "checkpoints/ckpt-0001.weights.h5", "generator/config.json",
                 "generator/generator.weights.h5"):
        assert os.path.exists(os.path.join(logdir, name)), name
    load = ("import sys; from tfadv.attacks.l2lda_generator import load_generator; "
            "g = load_generator(sys.argv[1]); print(g.l2lda_config['base_filters'])")
    assert testing.run_python([logdir], code=load).stdout.strip().splitlines()[-1] == "4"
