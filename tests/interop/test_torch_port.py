"""Tests for tfadv.interop.torch_port (Keras -> PyTorch). Skipped without the crosscheck extra."""

import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl.testing import parameterized  # noqa: E402

from tfadv import models  # noqa: E402
from tests.testing import TestCase, randomize_bn as _randomize_bn, tiny_cnn  # noqa: E402
from tfadv.interop import torch_port  # noqa: E402

ATOL = 1e-4


def _keras_grad(model, x, y):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    return logits.numpy(), tape.gradient(loss, x).numpy()


def _torch_grad(net, x, y):
    xt = torch.from_numpy(torch_port.nhwc_to_nchw(x)).requires_grad_(True)
    logits = net(xt)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).long(), reduction="sum")
    loss.backward()
    return logits.detach().numpy(), torch_port.nchw_to_nhwc(xt.grad.numpy())


CASES = [
    ("digits_cnn", "digits_cnn", (8, 8, 1), {}),
    ("madry_mnist_cnn", "madry_mnist_cnn", (28, 28, 1), {"capacity": 2}),
    ("madry_mnist_cnn_c1_odd", "madry_mnist_cnn", (13, 11, 1), {"capacity": 1}),
    ("madry_mnist_cnn_c4_rgb", "madry_mnist_cnn", (12, 12, 3), {"capacity": 4}),
    ("lenet5_same", "lenet5", (28, 28, 1), {}),
    ("lenet5_valid", "lenet5", (32, 32, 1), {"first_conv_padding": "valid"}),
    ("fosc_mnist_cnn_bn", "fosc_mnist_cnn", (28, 28, 1), {}),
]


class TorchPortTest(TestCase, parameterized.TestCase):

    def _check_same_function(self, model, shape, n=6, seed=0):
        x = self.random_images((n,) + tuple(shape), seed=seed)
        y = np.random.default_rng(seed).integers(0, model.output_shape[-1], n).astype("int32")
        net = torch_port.to_torch(model)
        k_logits, k_grad = _keras_grad(model, x, y)
        t_logits, t_grad = _torch_grad(net, x, y)
        np.testing.assert_allclose(t_logits, k_logits, atol=ATOL, rtol=0)
        self.assertGreater(np.abs(k_grad).max(), 0.0)
        np.testing.assert_allclose(t_grad, k_grad, atol=ATOL * max(1.0, np.abs(k_grad).max()), rtol=0)
        return net

    @parameterized.named_parameters(*CASES)
    def test_registered_models_same_logits_and_input_gradients(self, name, shape, kwargs):
        model = _randomize_bn(models.build(name, num_classes=10, input_shape=shape, **kwargs))
        self._check_same_function(model, shape)

    def test_strided_same_conv_asymmetric_padding_and_bn(self):
        # tiny_cnn: conv -> BN -> ReLU -> conv(stride 2, 'same' pads 0 before / 1 after on 8x8).
        model = _randomize_bn(tiny_cnn(with_bn=True, seed=3))
        net = self._check_same_function(model, (8, 8, 1))
        self.assertTrue(any(isinstance(m, torch.nn.ZeroPad2d) for m in net.modules()))

    def test_flatten_permutation_reaches_bn_and_dense_after_dropout(self):
        inputs = keras.Input((5, 6, 3))
        h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
        h = keras.layers.MaxPooling2D(3, 2, padding="same")(h)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dropout(0.5)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Activation("relu")(h)
        h = keras.layers.Dense(7)(h)
        h = keras.layers.ReLU()(h)
        outputs = keras.layers.Dense(3)(h)
        model = _randomize_bn(keras.Model(inputs, outputs))
        self._check_same_function(model, (5, 6, 3))

    def test_nested_sequential_and_global_pooling(self):
        features = keras.Sequential([keras.Input((9, 9, 2)),
                                     keras.layers.Conv2D(5, 3, activation="relu"),
                                     keras.layers.BatchNormalization()])
        inputs = keras.Input((9, 9, 2))
        h = features(inputs)
        h = keras.layers.GlobalAveragePooling2D()(h)
        outputs = keras.layers.Dense(4)(h)
        model = _randomize_bn(keras.Model(inputs, outputs))
        self._check_same_function(model, (9, 9, 2))

    def test_same_padding_matches_tf(self):
        for size, k, s in [(8, 3, 2), (7, 2, 2), (28, 5, 1), (14, 2, 2), (7, 2, 1), (1, 3, 1), (5, 1, 3)]:
            before, after = torch_port.same_padding(size, k, s)
            x = tf.random.normal([1, size, size, 1])
            ref = tf.nn.max_pool2d(x, k, s, "SAME")
            padded = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]],
                            constant_values=-np.inf)
            got = tf.nn.max_pool2d(padded, k, s, "VALID")
            np.testing.assert_array_equal(got.numpy(), ref.numpy())

    def test_unit_input_adapter_for_minus_one_one_models(self):
        model = models.build("digits_cnn", num_classes=10, input_shape=(8, 8, 1))
        net = torch_port.with_unit_input(torch_port.to_torch(model), "[-1,1]")
        x01 = self.random_images((3, 8, 8, 1))
        k = model(2.0 * x01 - 1.0, training=False).numpy()
        np.testing.assert_allclose(torch_port.torch_logits(net, x01), k, atol=ATOL, rtol=0)
        plain = torch_port.to_torch(model)
        self.assertIs(torch_port.with_unit_input(plain, "[0,1]"), plain)

    def test_converted_network_is_eval_mode_and_frozen(self):
        net = torch_port.to_torch(models.build("fosc_mnist_cnn", num_classes=10, input_shape=(28, 28, 1)))
        self.assertFalse(net.training)
        self.assertFalse(any(p.requires_grad for p in net.parameters()))
        self.assertEqual(tuple(net.input_shape_chw), (1, 28, 28))

    def test_residual_model_is_rejected(self):
        inputs = keras.Input((8, 8, 4))
        h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        h = keras.layers.Add()([h, inputs])
        outputs = keras.layers.Dense(2)(keras.layers.Flatten()(h))
        with self.assertRaisesRegex(torch_port.UnsupportedLayerError, "single-input"):
            torch_port.to_torch(keras.Model(inputs, outputs))

    def test_unsupported_layers_are_named(self):
        def chain(*layers):
            return keras.Sequential([keras.Input((8, 8, 1)), *layers])

        cases = [
            (chain(keras.layers.Conv2D(2, 3), keras.layers.LeakyReLU(), keras.layers.Flatten(),
                   keras.layers.Dense(2)), "LeakyReLU"),
            (chain(keras.layers.AveragePooling2D(2), keras.layers.Flatten(), keras.layers.Dense(2)),
             "AveragePooling2D"),
            (chain(keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")), "softmax"),
            (chain(keras.layers.Conv2D(2, 3, dilation_rate=2), keras.layers.Flatten(),
                   keras.layers.Dense(2)), "dilation"),
            (chain(keras.layers.Conv2D(2, 3), keras.layers.Dense(2)), "rank-4"),
            (chain(keras.layers.Conv2D(2, 3)), "flat logits"),
            (chain(keras.layers.ReLU(max_value=6.0), keras.layers.Flatten(), keras.layers.Dense(2)),
             "max_value"),
        ]
        for model, message in cases:
            with self.assertRaisesRegex(torch_port.UnsupportedLayerError, message):
                torch_port.to_torch(model)

    def test_rejects_non_keras_models(self):
        with self.assertRaisesRegex(TypeError, "keras.Model"):
            torch_port.to_torch(lambda x: x)


# ------------------------------------------------------------------------------------------------
# scripts/crosscheck_torchattacks.py end to end (tiny budgets; needs torchattacks too).


def _run_crosscheck(*args):
    from tests.testing import run_script

    return run_script("crosscheck_torchattacks.py", *args, check=False)


@pytest.fixture(scope="module")
def untrained_digits_run(tmp_path_factory):
    from tfadv import checkpoints as ckpt_lib
    from tfadv import export as export_lib

    logdir = str(tmp_path_factory.mktemp("runs") / "digits")
    keras.utils.set_random_seed(0)
    network = models.build("digits_cnn", num_classes=10, input_shape=(8, 8, 1))
    ckpt_lib.write_run_config(logdir, model="digits_cnn", num_classes=10, input_shape=(8, 8, 1),
                              pixel_range="[0,1]", dataset="digits")
    ckpt_lib.save(f"{logdir}/checkpoints", network, 1)
    bare = str(tmp_path_factory.mktemp("bare") / "sm")
    export_lib.export_savedmodel(network, bare, pixel_range="[0,1]",
                                 metadata={"architecture": "digits_cnn", "dataset": "digits"})
    return logdir, bare


def test_crosscheck_script_run_dir_table_json_and_resume(untrained_digits_run, tmp_path):
    pytest.importorskip("torchattacks")
    import json

    logdir, _ = untrained_digits_run
    args = [f"--model_path={logdir}", "--eps=25.5", "--num_examples=24", "--attacks=apgd_ce,square",
            "--n_iter=3", "--n_queries=10", f"--out_dir={tmp_path}"]
    proc = _run_crosscheck(*args)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "| attack | tfadv acc (%) | torchattacks acc (%) | diff (pp) | within tolerance |" in proc.stdout
    with open(tmp_path / "crosscheck.json") as f:
        report = json.load(f)
    assert [r["attack"] for r in report["rows"]] == ["clean", "apgd_ce", "square"]
    assert report["logits_max_abs_diff"] < 1e-4 and report["settings"]["num_examples"] == 24
    assert report["rows"][0]["diff_pp"] == 0.0
    for row in report["rows"][1:]:
        assert row["tfadv"]["max_linf"] <= 0.1 + 1e-5 and row["torchattacks"]["max_linf"] <= 0.1 + 1e-5
        assert row["torchattacks"]["params"]["eps"] == pytest.approx(0.1)
        assert (proc.returncode == 0) == all(r["within_tolerance"] for r in report["rows"])
    # Like with like: torchattacks' Square draws window corners as the authors' release does.
    assert report["rows"][2]["tfadv"]["params"]["window_positions"] == "release"
    assert (tmp_path / "crosscheck.md").read_text().count("\n| ") >= 3
    again = _run_crosscheck(*args)
    assert again.stdout.count("reused from") == 2, again.stdout


def test_crosscheck_script_bare_savedmodel_is_rebuilt(untrained_digits_run, tmp_path):
    pytest.importorskip("torchattacks")
    _, bare = untrained_digits_run
    proc = _run_crosscheck(f"--model_path={bare}", "--network=port", "--eps=25.5",
                           "--num_examples=16", "--attacks=apgd-ce", "--n_iter=2",
                           f"--out_dir={tmp_path}")
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Converted digits_cnn to PyTorch" in proc.stdout


@pytest.mark.parametrize("args,expected", [
    ([], "exactly one of --model_path and --train_digits"),
    (["--train_digits", "--model_path=x"], "exactly one of --model_path and --train_digits"),
    (["--train_digits", "--attacks=pgd"], "--attacks takes"),
    (["--model_path=/nonexistent/model", "--eps=8"], "does not exist"),
    (["--model_path=/nonexistent/model"], "--eps"),
    (["--train_digits", "--train_config=bogus=1"], "Unknown --train_config keys ['bogus']"),
])
def test_crosscheck_script_errors(args, expected):
    pytest.importorskip("torchattacks")
    proc = _run_crosscheck(*args)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
