"""tfadv.loading and tfadv.wrappers: the user's own models (.keras, .weights.h5 + architecture,
plain SavedModels, keras.applications) and the normalisation / softmax wrappers."""

import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks, identity, loading, wrappers
from tfadv.loading import LoadOptions, load_for_evaluation


def images(shape=(8, 8, 1), batch=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (batch, *shape)).astype(np.float32)


def softmax_model(seed=0):
    """tiny_cnn followed by a softmax: its outputs are probabilities."""
    net = testing.tiny_cnn(seed=seed)
    return keras.Model(net.inputs[0], keras.layers.Softmax()(net.outputs[0]), name="softmax_cnn")


def test_a_keras_file_round_trips_with_its_sha256(tmp_path):
    net = testing.tiny_cnn(seed=3)
    path = str(tmp_path / "net.keras")
    net.save(path)
    model, info = load_for_evaluation(path)
    x = images()
    np.testing.assert_allclose(model(x).numpy(), net(x).numpy(), atol=1e-6)
    assert info["model_id"] == identity.of_file(path) and info["model_id"].startswith("sha256:")
    assert info["num_classes"] == 10 and info["input_shape"] == (8, 8, 1)
    assert info["pixel_range"] == "[0,1]" and info["wrappers"] == []


def test_a_lambda_layer_is_refused_unless_unsafe_deserialization(tmp_path):
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="refused: loading a model must not execute") as e:
        load_for_evaluation(path)
    assert "--unsafe_deserialization" in str(e.value) and str(e.value).endswith(f"{path!r}.")
    model, info = load_for_evaluation(path, LoadOptions(unsafe_deserialization=True))
    assert info["num_classes"] == 3 and model(images()).shape == (6, 3)


def test_a_plain_savedmodel_by_signature(tmp_path):
    net = testing.tiny_cnn(seed=1)
    path = str(tmp_path / "plain")
    net.export(path, verbose=False)  # two signatures: serve and serving_default
    with pytest.raises(ValueError, match=r"several serving signatures \['serve', 'serving_default'\]"):
        load_for_evaluation(path)
    with pytest.raises(ValueError, match="no signature 'predict'"):
        load_for_evaluation(path, LoadOptions(signature="predict"))
    model, info = load_for_evaluation(path, LoadOptions(signature="serving_default"))
    x = images()
    np.testing.assert_allclose(model(x).numpy(), net(x).numpy(), atol=1e-5)
    assert info["model_id"] == identity.of_savedmodel(path)
    assert info["model_id"].startswith("savedmodel:") and info["input_shape"] == (8, 8, 1)
    single = str(tmp_path / "single")
    tf.saved_model.save(net, single)  # one signature: the default needs no --signature
    model, info = load_for_evaluation(single)
    np.testing.assert_allclose(model(x).numpy(), net(x).numpy(), atol=1e-5)
    assert info["num_classes"] == 10


def test_softmax_outputs_become_log_probabilities_with_a_warning(tmp_path):
    net = softmax_model()
    path = str(tmp_path / "softmax.keras")
    net.save(path)
    with pytest.warns(UserWarning, match="wrapped to return their logarithm"):
        model, info = load_for_evaluation(path)
    x = images()
    np.testing.assert_allclose(model(x).numpy(), np.log(net(x).numpy()), atol=1e-5)
    assert info["wrappers"] == ["log(softmax outputs)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # logits: no wrapper, no warning
        plain = str(tmp_path / "logits.keras")
        testing.tiny_cnn().save(plain)
        _, info = load_for_evaluation(plain)
    assert info["wrappers"] == []


def test_log_probabilities_are_finite_where_a_probability_underflows():
    p = tf.constant([[1.0, 0.0]])
    out = wrappers.log_probabilities(p).numpy()
    assert out[0, 0] == 0.0 and np.isfinite(out[0, 1]) and out[0, 1] < -87


def test_normalisation_happens_inside_and_adversarial_examples_stay_within_eps_in_pixels(tmp_path):
    net = testing.tiny_cnn(input_shape=(8, 8, 3), seed=2)
    path = str(tmp_path / "rgb.keras")
    net.save(path)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.5]
    model, info = load_for_evaluation(path, LoadOptions(normalize=(mean, std)))
    x = images((8, 8, 3))
    expected = net((x - np.array(mean, np.float32)) / np.array(std, np.float32)).numpy()
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-5)
    assert info["wrappers"] == [f"normalize(mean={mean}, std={std})"]
    eps = 8 / 255
    y = np.argmax(model(x).numpy(), axis=-1)
    x_adv = attacks.get("pgd", eps=eps, step_size=eps / 2, num_steps=5)(model, x, y).numpy()
    # Measured on the images the model is fed: pixel space, not normalised units (which would
    # allow up to eps/0.2 here).
    assert np.max(np.abs(x_adv - x)) <= eps + 1e-6 and np.max(np.abs(x_adv - x)) > eps / 2
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    with pytest.raises(ValueError, match="has 2 values but the model's images have 3 channels"):
        load_for_evaluation(path, LoadOptions(normalize=([0.5, 0.5], [0.2, 0.2])))


@pytest.mark.parametrize("value, expected", [
    ("0.5,0.25", ((0.5,), (0.25,))),
    ("[0.485,0.456,0.406],[0.229,0.224,0.225]", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
    ("0,[1,2,4]", ((0.0,), (1.0, 2.0, 4.0))),
])
def test_parse_normalize(value, expected):
    assert wrappers.parse_normalize(value) == expected


@pytest.mark.parametrize("value, message", [
    ("0.5", "must be MEAN,STD"), ("0.5,0", "std must be positive"), ("a,b", "must be MEAN,STD"),
    ("[1,2],[1,2,3]", "same length"), ("[1,true],[1,1]", "finite numbers"),
])
def test_parse_normalize_refuses(value, message):
    with pytest.raises(ValueError, match=message) as e:
        wrappers.parse_normalize(value)
    assert str(e.value).endswith(f"Received: {value!r}.")


def test_weights_file_with_an_architecture(tmp_path):
    from tfadv import models

    net = models.build("digits_cnn", num_classes=10, input_shape=(8, 8, 1))
    path = str(tmp_path / "w.weights.h5")
    net.save_weights(path)
    with pytest.raises(ValueError, match="needs --input_shape"):
        load_for_evaluation(path, LoadOptions(arch="digits_cnn", num_classes=10))
    model, info = load_for_evaluation(path, LoadOptions(arch="digits_cnn", num_classes=10,
                                                        input_shape=(8, 8, 1)))
    x = images()
    np.testing.assert_allclose(model(x).numpy(), net(x).numpy(), atol=1e-6)
    assert info["architecture"] == "digits_cnn" and info["model_id"] == identity.of_file(path)
    with pytest.raises(ValueError, match="Could not load the weights into 'digits_cnn' with 7"):
        load_for_evaluation(path, LoadOptions(arch="digits_cnn", num_classes=7,
                                              input_shape=(8, 8, 1)))


def test_a_keras_application_has_its_preprocessing_inside():
    model, info = load_for_evaluation("keras.applications:ResNet50",
                                      LoadOptions(num_classes=4, input_shape=(32, 32, 3)))
    assert info["architecture"] == "keras.applications.ResNet50" and info["num_classes"] == 4
    assert info["model_id"].startswith("weights:")
    x = images((32, 32, 3), batch=2)
    app = model.layers[-1]
    reference = app(keras.applications.resnet50.preprocess_input(x * 255.0)).numpy()
    np.testing.assert_allclose(model(x).numpy(), reference, rtol=1e-4, atol=1e-4)
    again, info_again = load_for_evaluation("keras.applications:ResNet50",
                                            LoadOptions(num_classes=4, input_shape=(32, 32, 3)))
    assert info_again["model_id"] == info["model_id"]  # seeded random weights: resumable


def test_keras_application_weights_are_never_downloaded():
    with pytest.raises(ValueError, match="never downloads"):
        load_for_evaluation("keras.applications:ResNet50", LoadOptions(app_weights="imagenet"))
    with pytest.raises(ValueError, match="No keras.applications classifier"):
        load_for_evaluation("keras.applications:NoSuchNet")


def test_a_recorded_pixel_range_cannot_be_contradicted(tmp_path):
    from tfadv.export import export_savedmodel

    path = str(tmp_path / "sm")
    export_savedmodel(testing.tiny_cnn(), path, pixel_range="[0,1]")
    with pytest.raises(ValueError, match=r"takes images in \[0,1\]"):
        load_for_evaluation(path, LoadOptions(pixel_range="[-1,1]"))


def test_a_run_directory_prefers_its_model_keras(tmp_path):
    from tfadv import checkpoints, export

    run = str(tmp_path / "run")
    os.makedirs(run)
    net = testing.tiny_cnn(seed=4)
    checkpoints.write_run_config(run, model="tiny_cnn_unregistered", num_classes=10,
                                 input_shape=(8, 8, 1), pixel_range="[0,1]", dataset="digits")
    assert loading.run_keras_file(run) is None
    export.save_keras(net, os.path.join(run, loading.KERAS_FILE))
    model, info = load_for_evaluation(run)  # the architecture name is not even registered
    x = images()
    np.testing.assert_allclose(model(x).numpy(), net(x).numpy(), atol=1e-6)
    assert info["dataset"] == "digits" and info["source"].endswith("model.keras")
    assert info["model_id"] == identity.of_file(os.path.join(run, "model.keras"))
    with pytest.raises(ValueError, match="must end in .keras"):
        export.save_keras(net, os.path.join(run, "model.h5"))
    # With checkpoints, model.keras is taken only when the record beside it names the latest one.
    keras_file = os.path.join(run, loading.KERAS_FILE)
    checkpoints.save(os.path.join(run, checkpoints.CHECKPOINT_DIR), net, 1)
    path, why = loading.keras_file_choice(run)
    assert path is None and "it records no checkpoint" in why and "ckpt-0001.weights.h5" in why
    assert loading.run_keras_file(run) is None
    source = checkpoints.checkpoint_identity(run)
    assert source["checkpoint"] == "ckpt-0001.weights.h5" and source["epoch"] == 1
    export.save_keras(net, keras_file, source=source)
    assert loading.run_keras_file(run) == keras_file


def test_model_keras_is_matched_to_its_checkpoint_by_record_not_by_file_times(tmp_path):
    """A run directory copied without its times (every mtime reset) loads what it recorded; a run
    trained further after model.keras was saved loads its newer checkpoint."""
    import shutil

    from tfadv import checkpoints, export

    run = str(tmp_path / "run")
    from tfadv import models

    first, second = (models.build("digits_cnn", num_classes=10, input_shape=(8, 8, 1))
                     for _ in range(2))  # two random initialisations
    checkpoints.write_run_config(run, model="digits_cnn", num_classes=10, input_shape=(8, 8, 1),
                                 pixel_range="[0,1]", dataset="digits")
    ckpt_dir = os.path.join(run, checkpoints.CHECKPOINT_DIR)
    checkpoints.save(ckpt_dir, first, 1)
    keras_file = os.path.join(run, loading.KERAS_FILE)
    export.save_keras(first, keras_file, source=checkpoints.checkpoint_identity(run))
    with open(export.keras_source_path(keras_file)) as f:
        assert json.load(f)["source"]["weights"] == identity.of_file(
            os.path.join(ckpt_dir, "ckpt-0001.weights.h5"))
    copy = str(tmp_path / "copy")
    shutil.copytree(run, copy, copy_function=shutil.copyfile)  # contents only, new times
    for root, _, files in os.walk(copy):
        for name in files:  # model.keras now older than its checkpoint
            stamp = 1e9 if name == loading.KERAS_FILE else 2e9
            os.utime(os.path.join(root, name), (stamp, stamp))
    assert loading.run_keras_file(copy) == os.path.join(copy, loading.KERAS_FILE)
    _, info = load_for_evaluation(copy)
    assert info["source"].endswith("model.keras")

    # Trained further: epoch 2 holds other weights; model.keras (newer on disk) is stale.
    checkpoints.save(ckpt_dir, second, 2)
    os.utime(keras_file, (3e9, 3e9))
    path, why = loading.keras_file_choice(run)
    assert path is None
    assert "saved from ckpt-0001.weights.h5 (epoch 1" in why and "ckpt-0002.weights.h5 (epoch 2" in why
    model, info = load_for_evaluation(run)
    assert info["source"].endswith("ckpt-0002.weights.h5")
    x = images()
    np.testing.assert_allclose(model(x).numpy(), second(x).numpy(), atol=1e-6)
    assert not np.allclose(first(x).numpy(), second(x).numpy(), atol=1e-3)
    # Re-saving model.keras from the final weights records the new checkpoint: taken again.
    export.save_keras(second, keras_file, source=checkpoints.checkpoint_identity(run))
    assert loading.run_keras_file(run) == keras_file
    with pytest.raises(ValueError, match=r"source must be a dict.*Received: source='x'\."):
        export.save_keras(second, keras_file, source="x")


def test_an_input_shape_flag_that_contradicts_the_model_is_refused(tmp_path):
    path = str(tmp_path / "net.keras")
    testing.tiny_cnn().save(path)
    with pytest.raises(ValueError, match=r"takes images of shape \(8, 8, 1\)") as e:
        load_for_evaluation(path, LoadOptions(input_shape=(8, 8, 3)))
    assert str(e.value).endswith("Received: --input_shape=(8, 8, 3).")


def test_a_plain_softmax_savedmodel_is_normalised_and_log_wrapped(tmp_path):
    net = softmax_model(seed=6)
    path = str(tmp_path / "plain_softmax")
    tf.saved_model.save(net, path)
    with pytest.warns(UserWarning, match="wrapped to return their logarithm"):
        model, info = load_for_evaluation(path, LoadOptions(normalize=((0.25,), (0.5,))))
    assert isinstance(model, wrappers.WrappedFn) and model.input_shape == (8, 8, 1)
    x = images()
    np.testing.assert_allclose(model(x).numpy(), np.log(net((x - 0.25) / 0.5).numpy()), atol=1e-5)
    assert info["wrappers"] == ["normalize(mean=[0.25], std=[0.5])", "log(softmax outputs)"]


def test_a_wrapped_keras_model_saves_and_loads_in_safe_mode(tmp_path):
    net = softmax_model(seed=7)
    wrapped = wrappers.wrap(net, input_shape=(8, 8, 1), normalize=((0.5,), (0.25,)),
                            log_outputs=True)
    path = str(tmp_path / "wrapped.keras")
    wrapped.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = images()
    np.testing.assert_allclose(loaded(x).numpy(), wrapped(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(loaded(x).numpy(), np.log(net((x - 0.5) / 0.25).numpy()), atol=1e-5)


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-1.0, 1.0)])
def test_application_preprocessing_scales_the_pixel_range_to_levels(low, high):
    layer = wrappers.ApplicationPreprocess("vgg16", low, high)
    x = np.array([[[[low, (low + high) / 2, high]]]], np.float32)
    expected = keras.applications.vgg16.preprocess_input(np.array([[[[0.0, 127.5, 255.0]]]]))
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-4)
    assert wrappers.application_module("MobileNetV3Small") == "mobilenet_v3"
    assert wrappers.application_module("VGG16") == "vgg16"


def test_low_precision_copy_computes_in_bf16_with_the_same_weights_and_float32_logits():
    """wrappers.low_precision_copy: the same layers and weights under the mixed policy (variables
    float32), logits float32 and within bf16's rounding of the fp32 model's; fp32 is the model
    itself; a subclassed model is refused."""
    model = testing.tiny_cnn(with_bn=True, seed=3)
    x = testing.images_in_range("[0,1]", batch=6)
    copy = wrappers.low_precision_copy(model, "bf16")
    assert wrappers.low_precision_copy(model, "fp32") is model
    policies = {layer.dtype_policy.name for layer in copy.layers
                if not isinstance(layer, keras.layers.InputLayer)}
    assert "mixed_bfloat16" in policies and policies <= {"mixed_bfloat16", "float32"}
    assert all(v.dtype == "float32" for v in copy.weights)
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    exact, low = model(x, training=False).numpy(), copy(x, training=False)
    assert low.dtype == tf.float32
    scale = np.abs(exact).max()
    assert 0 < np.abs(low.numpy() - exact).max() <= 0.05 * scale  # bf16 keeps ~3 digits

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional Keras model.*Received: Subclassed"):
        wrappers.low_precision_copy(Subclassed(), "bf16")
    with pytest.raises(ValueError, match="Received: precision='fp8'"):
        wrappers.low_precision_copy(model, "fp8")
