"""Each defense's training script on the real CIFAR-10 subset (../shared/data/cifar10_subset.npz, 3,800
training / 860 test images, all from the official CIFAR-10 training batches): one epoch on a slice
of it with the small ResNet-20 of the scaled-down reproductions (docs/results.md), the recipe the
npz file's image shape selects, and the reports of the run. Slow; skipped without the shared file."""

import json
import os

import pytest

from tests import testing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(testing.SHARED_CIFAR), reason="no shared CIFAR-10 subset"),
]

# script, its extra flags, and the recipe it must have picked for a 32x32x3 npz file: pixel range
# and the training attack (eps, step in pixel levels, steps) of the paper's CIFAR-10 setting.
CASES = {
    "natural": ("train_natural.py", [], dict(pixel_range="[0,1]", eps=8.0, step_size=2.0)),
    "madry": ("train_madry.py", [],
              dict(pixel_range="[0,1]", eps=8.0, step_size=2.0, num_steps=7)),
    # BAT: the bat_cifar10 preset, [-1,1] inputs, one MC step of 8 levels from a random start.
    "bat": ("train_bat.py", ["--bat_model=R-MC-LA"],
            dict(pixel_range="[-1,1]", eps=8.0, step_size=8.0, num_steps=1)),
    # TRADES sec. 5.3: step 0.007 = 1.785 levels, K = 10.
    "trades": ("train_trades.py", ["--beta=6"],
               dict(pixel_range="[0,1]", eps=8.0, step_size=1.785, num_steps=10)),
    # FOSC sec. 5.1: 10 steps of eps/4.
    "dynamic": ("train_dynamic.py", ["--t_prime=1"],
                dict(pixel_range="[0,1]", eps=8.0, step_size=2.0, num_steps=10)),
}


@pytest.mark.parametrize("defense", sorted(CASES))
def test_one_epoch_on_the_cifar_subset_writes_the_reports(tmp_path, defense):
    script, extra, recipe = CASES[defense]
    logdir = str(tmp_path / defense)
    testing.run_script(script, f"--dataset=npz:{testing.SHARED_CIFAR}", "--model=resnet20_cifar",
                       "--epochs=1", "--train_limit=128", "--batch_size=64", "--val_limit=0",
                       "--eval_limit=64", "--eval_attacks=clean,fgsm,pgd-2", *extra,
                       f"--logdir={logdir}")
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == defense
    config = meta["config"]
    assert config["model"] == "resnet20_cifar" and config["train_limit"] == 128
    for key, value in recipe.items():
        assert config[key] == pytest.approx(value), (key, config[key])
    with open(os.path.join(logdir, "robustness.json")) as f:
        report = json.load(f)
    assert report["num_examples"] == 64 and report["architecture"] == "resnet20_cifar"
    assert set(report["accuracy"]) == {"clean", "FGSM", "PGD-2", "worst case"}
    for name, accuracy in report["accuracy"].items():
        assert 0.0 <= accuracy <= 100.0, (name, accuracy)
    # The worst case over the attacks can be no better than any one of them.
    assert report["accuracy"]["worst case"] <= min(report["accuracy"][k] for k in ("clean", "FGSM",
                                                                                    "PGD-2"))
    with open(os.path.join(logdir, "robustness.md")) as f:
        assert "| clean | FGSM | PGD-2 |" in f.read()
    assert os.path.exists(os.path.join(logdir, "savedmodel", "saved_model.pb"))
