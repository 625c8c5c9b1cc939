"""scripts/plot_l2lda_losses.py (L2L-DA Figure 2) on a tiny digits configuration."""

import json
import os

import pytest

from tests import testing
from tests.testing import run_script


@pytest.fixture(scope="module")
def figure_inputs(tmp_path_factory):
    """A digits classifier exported as a tfadv SavedModel, and small untrained L2L-DA and L2L
    generators saved as training runs save them (``RUN/generator/``)."""
    from tfadv.models.unet_generator import build_generator
    from tfadv.attacks.l2lda_generator import save_generator
    from tfadv.export import export_savedmodel

    root = tmp_path_factory.mktemp("figure2")
    model = str(root / "savedmodel")
    export_savedmodel(testing.trained_digits_model(), model, pixel_range="[0,1]",
                      metadata={"dataset": "digits", "architecture": "tiny_cnn"})
    save_generator(build_generator(10, (8, 8, 1), base_filters=4),
                   str(root / "l2lda" / "generator"))
    save_generator(build_generator(10, (8, 8, 1), base_filters=4, latent_dim=0,
                                   use_delta=False, class_conditional=False),
                   str(root / "l2l" / "generator"))
    return model, str(root / "l2lda"), str(root / "l2l")


def _read(out_dir):
    with open(os.path.join(out_dir, "l2lda_losses.json")) as f:
        result = json.load(f)
    with open(os.path.join(out_dir, "l2lda_losses.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return result


def _check_curve(curve, steps):
    assert curve["steps"] == list(range(1, steps + 1))
    assert len(curve["mean_max_loss"]) == len(curve["mean_std_loss"]) == steps
    assert all(v >= 0 for v in curve["mean_max_loss"] + curve["mean_std_loss"])


def test_pgd_and_l2l_curves_and_a_missing_generator_is_said(figure_inputs, tmp_path):
    model, _, l2l = figure_inputs
    proc = run_script("plot_l2lda_losses.py", f"--model_path={model}", f"--l2l_generator={l2l}",
                      "--eps=51", "--limit=12", "--batch_size=12", "--num_steps=3",
                      "--num_attacks=3", f"--out_dir={tmp_path}")
    assert "Omitting the L2L-DA curve: no --l2lda_generator given" in proc.stderr
    result = _read(tmp_path)
    assert sorted(result["curves"]) == ["L2L", "PGD"] and "L2L-DA" in result["omitted"]
    assert result["num_images"] == 12 and result["step_pixels"] == pytest.approx(51 / 4)
    for curve in result["curves"].values():
        _check_curve(curve, 3)
    pgd = result["curves"]["PGD"]["mean_max_loss"]
    assert pgd[-1] > pgd[0]  # three PGD steps of eps/4 raise the loss over one
    # L2L restarts differ by their random start, so their losses spread.
    assert max(result["curves"]["L2L"]["mean_std_loss"]) > 0


@pytest.mark.slow
def test_all_three_curves_with_fine_tuning(figure_inputs, tmp_path):
    model, l2lda, l2l = figure_inputs
    proc = run_script("plot_l2lda_losses.py", f"--model_path={model}", f"--l2lda_generator={l2lda}",
                      f"--l2l_generator={l2l}", "--eps=51", "--limit=20", "--batch_size=10",
                      "--num_steps=4", "--num_attacks=4", "--finetune_steps=5",
                      "--finetune_images=200", f"--out_dir={tmp_path}")
    assert "Fine-tuning the L2L-DA generator" in proc.stderr and "Omitting" not in proc.stderr
    result = _read(tmp_path)
    assert sorted(result["curves"]) == ["L2L", "L2L-DA", "PGD"] and not result["omitted"]
    for curve in result["curves"].values():
        _check_curve(curve, 4)


@pytest.mark.slow
def test_bad_flags_are_usage_errors(tmp_path):
    proc = run_script("plot_l2lda_losses.py", "--model_path=/nonexistent", "--num_attacks=0",
                      check=False)
    assert proc.returncode != 0 and "--num_attacks must be >= 1" in proc.stderr + proc.stdout
