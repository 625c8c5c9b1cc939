"""scripts/train_dynamic.py and scripts/train_curriculum.py end to end on digits (offline, tiny)."""

import json
import os

import numpy as np
import pytest

from tests.testing import run_script

TINY = ["--train_limit=192", "--eval_limit=64", "--val_limit=64", "--eval_attacks=clean,pgd-3",
        "--batch_size=64"]


def read_report(logdir):
    with open(os.path.join(logdir, "robustness.json")) as f:
        return json.load(f)


def test_train_dynamic_logs_c_t_and_fosc_distributions(tmp_path):
    logdir = str(tmp_path / "dynamic")
    proc = run_script("train_dynamic.py", "--epochs=2", "--t_prime=1", "--c_max=0.3",
                      f"--logdir={logdir}", *TINY)
    assert "c_t: 0.3000" in proc.stdout and "c_t: 0.0000e+00" in proc.stdout, proc.stdout
    assert "| Acc.(%) | clean | PGD-3 | worst case |" in proc.stdout
    assert read_report(logdir)["num_examples"] == 64
    for name in ("fosc.png", "fosc/epoch_0000.npy", "fosc/epoch_0001.npy", "savedmodel/saved_model.pb",
                 "checkpoints/ckpt-0002.weights.h5"):
        assert os.path.exists(os.path.join(logdir, name)), name
    assert np.load(os.path.join(logdir, "fosc", "epoch_0001.npy")).shape == (192,)
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == "dynamic" and meta["flags"]["c_max"] == 0.3
    assert meta["flags"]["t_prime"] == 1.0


def test_train_curriculum_logs_k(tmp_path):
    logdir = str(tmp_path / "curriculum")
    proc = run_script("train_curriculum.py", "--epochs=2", "--patience=1", "--num_steps=2",
                      "--record_fosc=false", f"--logdir={logdir}", *TINY)
    assert " k: " in proc.stdout, proc.stdout
    assert "| Acc.(%) | clean | PGD-3 | worst case |" in proc.stdout
    assert read_report(logdir)["num_examples"] == 64
    assert not os.path.exists(os.path.join(logdir, "fosc.png"))


@pytest.mark.parametrize("script,args,expected", [
    ("train_curriculum.py", ["--val_limit=0"], "Received: --val_limit=0"),
    ("train_dynamic.py", ["--t_prime=0"], "Received: t_prime=0.0"),
])
def test_bad_flags_stop_with_a_clear_message(script, args, expected, tmp_path):
    proc = run_script(script, *args, "--epochs=1", "--train_limit=64", f"--logdir={tmp_path}/run",
                      check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr + proc.stdout, proc.stderr[-3000:]
