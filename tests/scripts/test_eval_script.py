"""scripts/eval_robustness.py end to end on exported digits SavedModels: suites, resume, diagnostics,
analyses, TensorBoard."""

import json
import os

import keras
import pytest

from tests import testing
from tests.testing import run_script


@pytest.fixture(scope="module")
def savedmodels(tmp_path_factory):
    """A naturally trained digits CNN and a Madry-trained one, exported as tfadv SavedModels."""
    from tfadv import attacks, defenses
    from tfadv.export import export_savedmodel

    root = tmp_path_factory.mktemp("models")
    natural = str(root / "natural")
    export_savedmodel(testing.trained_digits_model(), natural, pixel_range="[0,1]",
                      metadata={"dataset": "digits", "architecture": "tiny_cnn"})
    x, y, _, _ = testing.digits_split()
    keras.utils.set_random_seed(0)
    net = testing.tiny_cnn(seed=0, name="madry")
    model = defenses.get("madry", net, attack=attacks.get("pgd", eps=0.1, step_size=0.04, num_steps=3),
                                  weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=64, epochs=4, verbose=0, shuffle=True)
    madry = str(root / "madry")
    export_savedmodel(net, madry, pixel_range="[0,1]", metadata={"dataset": "digits",
                                                                 "architecture": "tiny_cnn"})
    return natural, madry


def test_suite_and_attacks_together_is_a_usage_error(tmp_path):
    proc = run_script("eval_robustness.py", "--model_path=/nonexistent", "--suite=paper",
                      "--attacks=clean", check=False)
    assert proc.returncode != 0 and "not both" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_autoattack_suite_on_a_savedmodel_resumes(savedmodels, tmp_path):
    natural, _ = savedmodels
    args = [f"--model_path={natural}", "--eps=25.5", "--limit=60", "--batch_size=30", "--suite=autoattack",
            "--resume", "--tensorboard", f"--out_dir={tmp_path}"]
    proc = run_script("eval_robustness.py", *args)
    assert "| Acc.(%) | clean | AutoAttack | worst case |" in proc.stdout
    with open(tmp_path / "robustness.json") as f:
        card = json.load(f)
    assert card["dataset"] == "digits" and card["threat_model"] == "Linf"
    assert card["eps"] == pytest.approx(0.1) and card["architecture"] == "tiny_cnn"
    assert card["autoattack_acc"] is not None and card["autoattack_acc"] <= card["clean_acc"]
    assert card["robust_acc"] == card["autoattack_acc"]
    assert card["attacks"]["AutoAttack"]["points_attacked"] <= 60
    assert os.path.exists(tmp_path / "eval_state.npz") and os.listdir(tmp_path / "tensorboard")
    again = run_script("eval_robustness.py", *args)
    assert "Resuming from" in again.stderr
    with open(tmp_path / "robustness.json") as f:
        assert json.load(f)["accuracy"] == card["accuracy"]


@pytest.mark.slow
def test_diagnostics_and_analyses(savedmodels, tmp_path):
    natural, madry = savedmodels
    proc = run_script("eval_robustness.py", f"--model_path={madry}", "--eps=25.5", "--limit=100",
                      "--attacks=clean,pgd-5,apgd_ce(n_iter=10)", "--diagnostics", "--analyses",
                      "--diagnostics_limit=100", "--square_queries=200", f"--transfer_source={natural}",
                      f"--out_dir={tmp_path}")
    assert "| Acc.(%) | clean | PGD-5 | APGD-CE (n_iter 10) | worst case |" in proc.stdout
    for name in ("eps_sweep", "steps_sweep", "transfer", "square", "fgsm", "zero_gradients",
                 "determinism"):
        assert any(line.split(" ", 1)[0] in ("PASS", "WARN", "SKIP") and f" {name}:" in line
                   for line in proc.stdout.splitlines()), name
    with open(tmp_path / "diagnostics.json") as f:
        diag = json.load(f)
    assert diag["checks"]["transfer"]["status"] in ("PASS", "WARN")
    with open(tmp_path / "robustness.json") as f:
        assert set(json.load(f)["additional"]["diagnostics"]) == set(diag["checks"])
    assert "| correct |" in proc.stdout
    for name in ("analyses.json", "gradient_norms.png", "fosc.png", "accuracy_vs_steps.png",
                 "accuracy_vs_eps.png"):
        assert os.path.exists(tmp_path / "analyses" / name), name
