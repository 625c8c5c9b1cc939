"""scripts/eval_robustness.py on the user's own models: a .keras file, a plain SavedModel, a model
that takes normalised inputs (--normalize), a softmax model, and images that do not fit the model."""

import json
import os

import keras
import pytest
import tensorflow as tf

from tests import testing
from tests.testing import run_script
from tfadv import identity

ATTACKS = ["--dataset=digits", "--eps=25.5", "--limit=60", "--batch_size=30",
           "--attacks=clean,fgsm,pgd-5"]


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):
    """A digits CNN trained on [0,1] images, saved in the formats users bring."""
    root = tmp_path_factory.mktemp("own")
    net = testing.trained_digits_model()
    paths = {"keras": str(root / "net.keras"), "savedmodel": str(root / "plain"),
             "softmax": str(root / "softmax.keras"), "normalised": str(root / "normalised.keras")}
    net.save(paths["keras"])
    tf.saved_model.save(net, paths["savedmodel"])  # one signature, no tfadv_metadata.json
    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, keras.layers.Softmax()(net(inputs)), name="softmax_cnn").save(
        paths["softmax"])
    # Takes z = (x - 0.5) / 0.25 and undoes it first: with --normalize=0.5,0.25 it is `net`.
    z = keras.Input((8, 8, 1))
    keras.Model(z, net(keras.layers.Rescaling(0.25, offset=0.5)(z)), name="normalised_cnn").save(
        paths["normalised"])
    return paths


def evaluate(model_path, out_dir, *extra):
    proc = run_script("eval_robustness.py", f"--model_path={model_path}", *ATTACKS, *extra,
                      f"--out_dir={out_dir}")
    with open(os.path.join(out_dir, "robustness.json")) as f:
        return proc, json.load(f)


def test_a_keras_file_and_a_plain_savedmodel_give_the_same_card(own_models, tmp_path):
    _, card = evaluate(own_models["keras"], tmp_path / "keras")
    assert card["additional"]["model_id"] == identity.of_file(own_models["keras"])
    assert card["clean_acc"] >= 80 and card["robust_acc"] <= card["clean_acc"]
    assert set(card["accuracy"]) == {"clean", "FGSM", "PGD-5", "worst case"}
    proc, saved = evaluate(own_models["savedmodel"], tmp_path / "sm")
    assert "SavedModel:serving_default" in proc.stdout
    assert saved["additional"]["model_id"] == identity.of_savedmodel(own_models["savedmodel"])
    assert saved["accuracy"]["clean"] == card["accuracy"]["clean"]
    assert abs(saved["accuracy"]["FGSM"] - card["accuracy"]["FGSM"]) <= 2.0


def test_normalisation_inside_the_model_and_softmax_outputs(own_models, tmp_path):
    _, reference = evaluate(own_models["keras"], tmp_path / "keras")
    _, normalised = evaluate(own_models["normalised"], tmp_path / "norm", "--normalize=0.5,0.25")
    assert normalised["additional"]["wrappers"] == ["normalize(mean=[0.5], std=[0.25])"]
    # eps is measured in pixels: the wrapped model is the reference network, so the same budget
    # gives the same accuracies (in normalised units it would be a 4x larger budget).
    assert normalised["accuracy"]["clean"] == reference["accuracy"]["clean"]
    for name in ("FGSM", "PGD-5"):
        assert abs(normalised["accuracy"][name] - reference["accuracy"][name]) <= 2.0, name
        # Every adversarial example within eps = 25.5/255 = 0.1 of its image in pixel space.
        assert 0.05 < normalised["attacks"][name]["max_linf"] <= 0.1 + 1e-6, name
    proc, softmax = evaluate(own_models["softmax"], tmp_path / "softmax")
    assert "wrapped to return their logarithm" in proc.stderr
    assert softmax["additional"]["wrappers"] == ["log(softmax outputs)"]
    assert softmax["accuracy"]["clean"] == reference["accuracy"]["clean"]
    assert abs(softmax["accuracy"]["FGSM"] - reference["accuracy"]["FGSM"]) <= 2.0


@pytest.mark.parametrize("shape", [(16, 16, 1), (8, 8, 3)])
def test_images_that_do_not_fit_the_model_are_refused_before_any_attack(shape, tmp_path):
    path = str(tmp_path / "other.keras")
    testing.tiny_cnn(input_shape=shape).save(path)
    proc = run_script("eval_robustness.py", f"--model_path={path}", *ATTACKS,
                      f"--out_dir={tmp_path / 'out'}", check=False)
    assert proc.returncode != 0
    assert (f"The digits images do not fit the model: the model takes images of shape {shape}"
            in proc.stderr), proc.stderr[-2000:]
    assert "Evaluating" not in proc.stdout and not os.path.exists(tmp_path / "out" / "robustness.json")


def test_a_lambda_layer_is_refused_by_the_script(tmp_path):
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Lambda(lambda t: t * 1.0)(inputs)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h))).save(path)
    proc = run_script("eval_robustness.py", f"--model_path={path}", *ATTACKS,
                      f"--out_dir={tmp_path / 'out'}", check=False)
    assert proc.returncode != 0 and "--unsafe_deserialization" in proc.stderr
    proc = run_script("eval_robustness.py", f"--model_path={path}", *ATTACKS,
                      "--unsafe_deserialization", f"--out_dir={tmp_path / 'out'}")
    assert os.path.exists(tmp_path / "out" / "robustness.json")


@pytest.mark.parametrize("args, expected", [
    (["--input_shape=8,8"], "--input_shape must be three positive integers H,W,C. Received: '8,8'."),
    (["--normalize=[0.5,0.5],0.1,2"], "--normalize must be MEAN,STD"),
    (["--num_classes=1"], "--num_classes must be at least 2. Received: 1."),
])
def test_model_flags_are_checked_before_anything_is_loaded(args, expected, tmp_path):
    proc = run_script("eval_robustness.py", "--model_path=/nonexistent/model.keras", *ATTACKS,
                      *args, f"--out_dir={tmp_path}", check=False)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr[-2000:]
    assert "Model path does not exist" not in proc.stderr
