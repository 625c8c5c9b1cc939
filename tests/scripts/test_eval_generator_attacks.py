"""scripts/eval_robustness.py with generator attacks: fitted on training images before they attack."""

import json

import pytest

from tests import testing
from tests.testing import run_script


@pytest.mark.slow
def test_generator_attacks_are_fitted_then_evaluated(tmp_path):
    from tfadv.models.unet_generator import build_generator
    from tfadv.attacks.l2lda_generator import save_generator
    from tfadv.export import export_savedmodel

    model = str(tmp_path / "savedmodel")
    export_savedmodel(testing.trained_digits_model(), model, pixel_range="[0,1]",
                      metadata={"dataset": "digits", "architecture": "tiny_cnn"})
    run = tmp_path / "l2lda_run"
    save_generator(build_generator(10, (8, 8, 1), base_filters=4), str(run / "generator"))
    attacks = ("clean,advgan(base_filters=4,num_res_blocks=1),gap(base_filters=8,num_res_blocks=1),"
               f"l2lda(generator_path={run},steps=3,num_samples=3)")
    out = tmp_path / "eval"
    proc = run_script("eval_robustness.py", f"--model_path={model}", "--eps=51", "--limit=40",
                      "--batch_size=20", f"--attacks={attacks}", "--finetune_steps=8",
                      "--finetune_images=200", "--finetune_batch_size=50", f"--out_dir={out}")
    assert proc.stderr.count("fitted in") == 3
    with open(out / "robustness.json") as f:
        card = json.load(f)
    results = card["attacks"]
    labels = [k for k in results if k != "clean"]
    assert len(labels) == 3
    for label in labels:
        assert results[label]["max_linf"] <= 51 / 255 + 1e-6
