"""Analyses: gradient-magnitude statistics (BAT Table 2), FOSC of attack outputs, PNG plots."""

import json
import os

import numpy as np
import pytest

from tfadv import attacks
from tfadv.evaluation import analyses, plots
from tests import testing
from tests.evaluation.test_diagnostics import masked_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup():
    _, _, x, y = testing.digits_split(num_test=150)
    return testing.trained_digits_model(), x, y


def test_gradient_statistics_split_by_correctness(setup):
    model, x, y = setup
    sq, ok = analyses.gradient_norms(model, x, y, batch_size=64)
    assert sq.shape == (150,) and ok.shape == (150,)
    np.testing.assert_array_equal(ok, np.argmax(model(x), -1) == y)
    # per-example squared norm equals the gradient of that example's own loss
    import tensorflow as tf

    xi = tf.convert_to_tensor(x[:1])
    with tf.GradientTape() as tape:
        tape.watch(xi)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y[:1], logits=model(xi))
    g = tape.gradient(loss, xi).numpy()
    assert sq[0] == pytest.approx(float(np.sum(g ** 2)), rel=1e-4)
    stats = analyses.gradient_statistics(sq, ok)
    assert stats["all"]["count"] == 150 == stats["correct"]["count"] + stats["wrong"]["count"]
    for group in ("all", "correct"):
        s = stats[group]
        assert 0 < s["min"] <= s["mean"] <= s["max"]
    # misclassified images have larger gradients than correctly classified ones (BAT Table 2)
    if stats["wrong"]["count"]:
        assert stats["wrong"]["mean"] > stats["correct"]["mean"]
    assert stats["zero_gradient_share"] == 0.0
    masked_sq, _ = analyses.gradient_norms(masked_model(model), x, y)
    assert analyses.gradient_statistics(masked_sq, ok)["zero_gradient_share"] == 1.0
    assert "| correct |" in analyses.gradient_table(stats)


def test_fosc_of_pgd_outputs_decreases_with_steps(setup):
    """FOSC paper Figure 1b: more PGD steps, smaller FOSC on average (and never negative).

    The paper's ball ignores the pixel-range box, so pixels pinned at 0 or 1 (most of a digit's
    background) keep a positive FOSC however long PGD runs; the images are therefore moved into the
    interior of the range (0.3 + 0.4·x) so that the ball lies inside the box, as in the paper's setting.
    """
    model, x, y = setup
    x = 0.3 + 0.4 * x
    eps = 0.1
    means = []
    for k in (1, 5, 20):
        pgd = attacks.get("pgd", eps=eps, num_steps=k, step_size=eps / 4, seed=0)
        values = analyses.fosc_values(model, pgd, x, y, eps=eps)
        assert values.shape == (150,) and np.all(values >= -1e-5)
        means.append(float(values.mean()))
    assert means[0] > means[1] > means[2], means


def test_run_analyses_writes_json_and_pngs(setup, tmp_path):
    model, x, y = setup
    obj = analyses.run_analyses(model, (x[:64], y[:64]), eps=0.1, pixel_range="[0,1]", out_dir=str(tmp_path),
                                steps=(1, 4), eps_multipliers=(1, 4), sweep_steps=3, batch_size=32)
    with open(tmp_path / "analyses.json") as f:
        assert json.load(f) == json.loads(json.dumps(obj))
    assert set(obj["fosc"]) == {"PGD-1", "PGD-4"}
    assert set(obj["accuracy_vs_steps"]) == {"1", "4"} and set(obj["accuracy_vs_eps"]) == {"0.1", "0.4"}
    assert obj["gradient_norm_sq"]["all"]["count"] == 64
    for name in ("gradient_norms.png", "fosc.png", "accuracy_vs_steps.png", "accuracy_vs_eps.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == PNG, name
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".")) == []


def test_plots_handle_empty_and_zero_values(tmp_path):
    path = plots.histogram({"zero": np.zeros(5), "empty": []}, str(tmp_path / "h.png"), title="t",
                           xlabel="v", log10=True)
    with open(path, "rb") as f:
        assert f.read(8) == PNG
    path = plots.lines([1, 2], {"a": [0.5, 0.25]}, str(tmp_path / "l.png"), title="t", xlabel="k",
                       log_x=True, reference={"clean": 0.9})
    assert os.path.getsize(path) > 0
