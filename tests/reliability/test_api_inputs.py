"""Issue 16 section 4, attack/evaluation inputs: spec grammar integers and duplicate keys, images that
do not fit the model (shape, unbatched, integer dtype) in the Python API and the evaluation script,
softmax outputs, and ``import tfadv; tfadv.attacks.get``."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks, evaluation
from tfadv.evaluation import specs

PGD = dict(eps=0.1, step_size=0.05, num_steps=2)


@pytest.fixture(scope="module")
def model():
    return testing.tiny_cnn(input_shape=(8, 8, 1), seed=0)


def _labels(n):
    return np.zeros([n], np.int32)


# ------------------------------------------------------------------------------- spec grammar
def test_pgd_spec_refuses_non_integral_steps():
    with pytest.raises(ValueError, match=r"steps must be an integer\. Received: '2\.5'"):
        specs.parse("pgd(steps=2.5)", eps=8, pixel_range="[0,1]")


def test_pgd_spec_refuses_a_duplicate_key():
    with pytest.raises(ValueError, match=r"given twice\. Received: 'steps'"):
        specs.parse("pgd(steps=2,steps=3)", eps=8, pixel_range="[0,1]")


# ------------------------------------------------------------------- images against the model
@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 8, 8, 3)], ids=["height_width", "channels"])
def test_attack_names_the_model_and_received_image_shapes(model, shape):
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=r"takes images of shape \(8, 8, 1\).*Received: a batch of "
                                         rf"shape \({', '.join(map(str, shape))}\) float32"):
        attacks.get("pgd", **PGD)(model, x, _labels(2))


def test_attack_traced_in_a_tf_function_names_both_shapes(model):
    attack = attacks.get("pgd", **PGD)
    run = tf.function(lambda x, y: attack(model, x, y))
    with pytest.raises(ValueError, match=r"takes images of shape \(8, 8, 1\).*Received: a batch of "
                                         r"shape \(2, 28, 28, 1\)"):
        run(tf.zeros([2, 28, 28, 1]), tf.zeros([2], tf.int32))


def test_attack_on_an_unbatched_image_suggests_adding_the_batch_dimension(model):
    with pytest.raises(ValueError, match=r"x\[None\]\. Received: a single image of shape \(8, 8, 1\)"):
        attacks.get("pgd", **PGD)(model, np.zeros([8, 8, 1], np.float32), _labels(1))


def test_attack_on_uint8_images_asks_for_float32_in_the_pixel_range(model):
    x = tf.zeros([2, 8, 8, 1], tf.uint8)
    with pytest.raises(ValueError, match=r"float32 in the pixel range.*Received: a batch of shape "
                                         r"\(2, 8, 8, 1\) uint8"):
        attacks.get("pgd", **PGD)(model, x, _labels(2))


def test_evaluate_names_the_model_and_received_image_shapes(model):
    data = tf.data.Dataset.from_tensor_slices((np.zeros([4, 28, 28, 1], np.float32), _labels(4)))
    with pytest.raises(ValueError, match=r"Evaluation images do not fit the model: the model takes "
                                         r"images of shape \(8, 8, 1\).*Received: a batch of shape "
                                         r"\(None, 28, 28, 1\) float32"):
        evaluation.evaluate(model, data.batch(2), {"clean": attacks.get("noop")},
                            pixel_range="[0,1]", progress=None)


def test_evaluate_on_integer_images_asks_for_float32(model):
    batches = [(np.zeros([2, 8, 8, 1], np.uint8), _labels(2))]
    with pytest.raises(ValueError, match=r"Evaluation images must be float32 in the pixel range.*"
                                         r"Received: a batch of shape \(2, 8, 8, 1\) uint8"):
        evaluation.evaluate(model, batches, {"clean": attacks.get("noop")}, pixel_range="[0,1]",
                            progress=None)


def test_eval_script_names_the_savedmodel_and_dataset_image_shapes(model, tmp_path):
    from tfadv.export import export_savedmodel

    saved = export_savedmodel(model, str(tmp_path / "model"), pixel_range="[0,1]",
                              metadata={"dataset": "digits"})
    rng = np.random.default_rng(0)
    npz = str(tmp_path / "big.npz")
    np.savez(npz, **{f"x_{s}": rng.integers(0, 256, [6, 28, 28], dtype=np.uint8)
                     for s in ("train", "test")},
             **{f"y_{s}": rng.integers(0, 10, [6]) for s in ("train", "test")})
    proc = testing.run_python([f"--model_path={saved}", f"--dataset=npz:{npz}", "--attacks=clean",
                               "--eps=8", f"--out_dir={tmp_path / 'out'}"],
                              script=os.path.join("scripts", "eval_robustness.py"), check=False)
    assert proc.returncode != 0
    assert "takes images of shape (8, 8, 1)" in proc.stderr, proc.stderr[-3000:]
    assert "Received: a batch of shape (None, 28, 28, 1) float32" in proc.stderr
    assert not os.path.exists(tmp_path / "out" / "robustness.json")


# -------------------------------------------------------------------------- softmax outputs
@pytest.fixture(scope="module")
def softmax_model(model):
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, keras.layers.Softmax()(model(inputs)))


def test_evaluate_warns_when_the_model_outputs_probabilities(softmax_model):
    x = testing.images_in_range("[0,1]", batch=4)
    with pytest.warns(UserWarning, match=r"look like probabilities \(softmax\).*assume logits"):
        evaluation.evaluate(softmax_model, [(x, _labels(4))], {"clean": attacks.get("noop")},
                            pixel_range="[0,1]", progress=None)


def test_attack_warns_when_the_model_outputs_probabilities(softmax_model):
    x = testing.images_in_range("[0,1]", batch=4)
    with pytest.warns(UserWarning, match=r"look like probabilities \(softmax\).*assume logits"):
        attacks.get("pgd", **PGD)(softmax_model, x, _labels(4))


# -------------------------------------------------------------------------- the package root
def test_import_tfadv_reaches_the_subpackages_as_the_readme_writes():
    code = ("import tfadv\n"
            "attack = tfadv.attacks.get('pgd', eps=0.1)\n"
            "print(type(attack).__name__, tfadv.evaluation.evaluate.__name__)\n")
    proc = testing.run_python(code=code, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["IterativeAttack", "evaluate"]


# ---------------------------------------------------------------------------------- labels
def test_attack_refuses_fractional_float_labels_instead_of_truncating(model):
    x = testing.images_in_range("[0,1]", batch=2)
    with pytest.raises(ValueError, match=r"float labels are not truncated\. Received: \[1\.7"):
        attacks.get("pgd", pixel_range="[0,1]", **PGD)(model, x, np.array([1.7, 2.0], np.float32))
    whole = attacks.get("pgd", pixel_range="[0,1]", **PGD)(model, x, np.array([1.0, 2.0], np.float32))
    assert whole.shape == x.shape  # whole-number float labels are class ids


def test_evaluate_refuses_fractional_float_labels(model):
    x = testing.images_in_range("[0,1]", batch=4)
    ds = tf.data.Dataset.from_tensor_slices((x, np.array([0.0, 1.5, 2.0, 3.0], np.float32))).batch(4)
    specs_ = evaluation.parse_list("clean,fgsm", eps=8, pixel_range="[0,1]")
    with pytest.raises(ValueError, match=r"Evaluation labels must be integer class ids.*\[1\.5\]"):
        evaluation.evaluate(model, ds, specs_, pixel_range="[0,1]", num_examples=4)


def test_training_step_refuses_fractional_float_labels(model):
    from tfadv import defenses

    x = testing.images_in_range("[0,1]", batch=4)
    defense = defenses.get("madry", testing.tiny_cnn(seed=1), attack=attacks.get(
        "pgd", pixel_range="[0,1]", **PGD))
    defense.compile(optimizer=keras.optimizers.SGD(0.01))
    with pytest.raises(tf.errors.InvalidArgumentError, match="float labels are not truncated"):
        defense.fit(x, np.array([0.0, 1.5, 2.0, 3.0], np.float32), batch_size=4, epochs=1, verbose=0)
