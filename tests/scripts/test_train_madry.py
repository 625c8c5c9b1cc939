"""scripts/train_madry.py: --awp_gamma turns on AWP (the release's warm-up for PGD AT: none)."""

import json
import os

from tests import testing


def test_awp_gamma_reaches_the_defense_and_the_run_record(tmp_path):
    logdir = str(tmp_path / "madry_awp")
    testing.run_script("train_madry.py", "--awp_gamma=0.01", "--epochs=1", "--train_limit=64",
                       "--eval_limit=32", "--val_limit=0", "--batch_size=32", "--num_steps=2",
                       "--eval_attacks=clean,pgd-2", f"--logdir={logdir}")
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense_kwargs"] == {"awp_gamma": 0.01, "awp_warmup_epochs": 0}, meta
    proc = testing.run_script("train_madry.py", "--awp_warmup_epochs=2",
                              f"--logdir={tmp_path / 'refused'}", check=False)
    assert proc.returncode != 0 and "Received: awp_warmup_epochs=2" in proc.stderr
    assert not os.path.exists(tmp_path / "refused")
