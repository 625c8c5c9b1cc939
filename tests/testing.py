"""Shared helpers for tfadv's tests (in the spirit of keras-hub's TestCase)."""

import os

import numpy as np
import tensorflow as tf
import keras

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "mnist_subset.npz")
SHARED_CIFAR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "cifar10_subset.npz")


class TestCase(tf.test.TestCase):
    """tf.test.TestCase with a fixed seed per test."""

    # tf.test.TestCase's deprecated `test_session` context manager is not a test: hide it from pytest.
    test_session = None

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(1234)

    def random_images(self, shape, low=0.0, high=1.0, seed=0):
        rng = np.random.default_rng(seed)
        return rng.uniform(low, high, size=shape).astype("float32")


# ------------------------------------------------------------------------------------------------
# Shared tiny models and a quickly trained digits model (appended for tests/attacks, tests/defenses).

import functools as _functools


def tiny_cnn(input_shape=(8, 8, 1), num_classes=10, with_bn=True, seed=0, name="tiny_cnn"):
    """A 2-conv logits network (Conv-[BN]-ReLU-Conv(stride 2)-ReLU-Flatten-Dense), built.

    Variables are initialised deterministically from ``seed``.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    h = keras.layers.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    if with_bn:
        h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


class EagerBatchSizes(keras.Model):
    """Wraps a model (subclassed: it states no ``outputs``) and records the batch size of every
    eager call in ``sizes``; traced calls are not recorded."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.sizes = []

    def call(self, x, training=False):
        if tf.executing_eagerly():
            self.sizes.append(int(x.shape[0]))
        return self.inner(x, training=training)


class _RecordBatchSize(keras.layers.Layer):
    """Identity; calls ``record(batch size)`` whenever it runs (also inside a graph)."""

    def __init__(self, record, **kwargs):
        super().__init__(**kwargs)
        self._record = record

    def call(self, x):
        def record(size):
            self._record(int(size))
            return size

        size = tf.numpy_function(record, [tf.shape(x)[0]], tf.int32, stateful=True)
        with tf.control_dependencies([size]):
            return tf.identity(x)


def recording_batch_sizes(inner):
    """``(model, sizes)``: a functional model running ``inner`` (same weights) and a list to which
    it appends, whenever a call *runs* (eagerly or inside a traced ``tf.function``,
    ``tf.while_loop`` or ``tf.cond``), the batch size it got: a zero-size run shows up as a 0."""
    sizes = []
    inputs = keras.Input(inner.input_shape[1:])
    outputs = inner(_RecordBatchSize(sizes.append)(inputs))
    return keras.Model(inputs, outputs, name=f"recording_{inner.name}"), sizes


@_functools.lru_cache(maxsize=None)
def _digits_arrays(seed=0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int32")
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[perm], y[perm]


def digits_split(num_train=1400, num_test=None, seed=0):
    """scikit-learn digits in [0,1], shape (N, 8, 8, 1), shuffled with ``seed``.

    Returns ``(x_train, y_train, x_test, y_test)``; the test part is everything after ``num_train``
    (at most ``num_test`` of it). Copies, so callers may modify them.
    """
    x, y = _digits_arrays(seed)
    x_test, y_test = x[num_train:], y[num_train:]
    if num_test is not None:
        x_test, y_test = x_test[:num_test], y_test[:num_test]
    return x[:num_train].copy(), y[:num_train].copy(), x_test.copy(), y_test.copy()


def digits_fixture(num_train, num_test):
    """A module-scoped pytest fixture of :func:`digits_split` ``(num_train, num_test)``: a test
    module's data, declared as ``digits = testing.digits_fixture(128, 32)``."""
    import pytest

    @pytest.fixture(scope="module", name="digits")
    def _digits():
        return digits_split(num_train=num_train, num_test=num_test)

    return _digits


@_functools.lru_cache(maxsize=None)
def trained_digits_model(epochs=8, with_bn=True):
    """A tiny_cnn naturally trained on digits with Adam (a few seconds; ~90%+ test accuracy).

    Cached per process: callers must not train it or run training-mode attacks on it.
    """
    x_train, y_train, _, _ = digits_split()
    model = tiny_cnn(with_bn=with_bn, seed=0, name="digits_cnn")
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return model


def ce_input_gradient(model, x, y):
    """∇ₓ Σ CE(model(x), y) with the model in inference mode, taken with a plain tape (NumPy): the
    hand-computed reference the attacks' gradients are compared with."""
    from tfadv import losses

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(losses.ce(logits=model(x, training=False), labels=y))
    return tape.gradient(total, x).numpy()


def tiny_generator(**kwargs):
    """The L2L-DA U-Net generator for 10 classes of 8x8x1 images, 4 base filters unless given."""
    from tfadv.models.unet_generator import build_generator

    kwargs.setdefault("base_filters", 4)
    return build_generator(10, (8, 8, 1), **kwargs)


def bn_moving_stats(model):
    """Copies of every BatchNormalization moving mean/variance of ``model`` (NumPy arrays)."""
    stats = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            stats += [np.array(layer.moving_mean), np.array(layer.moving_variance)]
    return stats


# ------------------------------------------------------------------------------------------------
# Shared by the attack tests (appended when the attack suite grew).


def images_in_range(pixel_range, batch=12, seed=0):
    """Random 8x8x1 images of the range, some pixels exactly on its bounds (to exercise clipping)."""
    from tfadv import ranges

    r = ranges.get_range(pixel_range)
    rng = np.random.default_rng(seed)
    x = rng.uniform(r.low, r.high, size=(batch, 8, 8, 1)).astype("float32")
    mask = rng.uniform(size=x.shape)
    x[mask < 0.2] = r.low
    x[mask > 0.8] = r.high
    return x


def predicted(model, x):
    """Predicted classes of a Keras model in inference mode, int32."""
    return np.argmax(np.asarray(model(x, training=False)), axis=-1).astype("int32")


def linear_two_class_model(w, b):
    """Two-class linear model on flattened 8x8 images: logits (0, <w, x> + b)."""
    inputs = keras.Input((8, 8, 1))
    dense = keras.layers.Dense(2)
    outputs = dense(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((64, 2), "float32")
    kernel[:, 1] = w
    dense.set_weights([kernel, np.array([0.0, b], "float32")])
    return model


def assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range, tol=1e-6):
    """The evaluation issue's acceptance bound: ‖x_adv − x‖ ≤ eps + 1e-6 (Linf or L2, measured in
    float64) and every pixel inside the range; x_adv is a finite float32 array of x's shape."""
    from tfadv import ranges

    x_adv = np.asarray(x_adv)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv))
    delta = (x_adv.astype(np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    sizes = np.abs(delta).max(-1) if norm == "linf" else np.sqrt((delta ** 2).sum(-1))
    assert sizes.max() <= eps + tol, (norm, sizes.max(), eps)
    r = ranges.get_range(pixel_range)
    assert x_adv.min() >= r.low and x_adv.max() <= r.high, (x_adv.min(), x_adv.max())


def constant_attack(value):
    """An attack that returns a batch filled with ``value`` whatever the model: lets defense tests
    see what the loss is taken on and compute the update by hand."""
    from tfadv import attacks

    class ConstantAttack(attacks.Attack):
        name = "constant"

        def __call__(self, model_fn, x, y, **kwargs):
            return tf.fill(tf.shape(x), tf.constant(value, tf.float32))

        def model_calls_per_example(self):
            return 0

    return ConstantAttack()


def paper_kwargs(name):
    """The paper recipe's keyword arguments (sizes in input units) of the registered defense
    ``name``: what its factory built without sizes before the factories took input units only
    (Madry's CIFAR PGD, BAT's R-MC-LA at 8 levels of [-1,1], the FOSC paper's CIFAR PGD, TRADES'
    CIFAR KL attack, MART's CIFAR CE attack and beta, Fast AT's CIFAR FGSM-RS, Free AT's CIFAR
    eps, m and batch, L2L-DA's CIFAR eps and lambda); ``{}`` for ``natural``."""
    from tfadv import defenses
    from tfadv.recipes import bat, fast, fosc, free, l2lda, madry, mart, trades

    by_factory = {defenses.madry.madry: madry.defense_kwargs,
                  defenses.bat.bat: lambda: bat.defense_kwargs("R-MC-LA"),
                  defenses.dynamic.dynamic: fosc.defense_kwargs,
                  defenses.curriculum.curriculum: fosc.defense_kwargs,
                  defenses.trades.trades: trades.defense_kwargs,
                  defenses.mart.mart: mart.defense_kwargs,
                  defenses.fast.fast: fast.defense_kwargs,
                  defenses.free.free: free.defense_kwargs,
                  defenses.l2lda.l2lda: lambda: l2lda.defense_kwargs("cifar10"),
                  defenses.l2lda.l2l: lambda: l2lda.defense_kwargs("cifar10")}
    recipe = by_factory.get(defenses.DEFENSES.lookup(name))
    return recipe() if recipe is not None else {}


# ---------------------------------------------------------------------------------- scripts
def run_python(args=(), *, script=None, code=None, check=True, timeout=300, env=None, cwd=None):
    """Runs ``python SCRIPT ARGS`` (or ``python -c CODE ARGS``) in a fresh interpreter at the
    repository root or ``cwd`` (absl flags and TF devices are process-global); asserts success if
    ``check``.

    The one way the tests start a Python subprocess and wait for it. ``script`` is a path, relative
    paths from the repository root (``"scripts/train_madry.py"``); ``env`` holds extra environment
    variables. Returns the ``subprocess.CompletedProcess`` (text ``stdout``/``stderr``).
    """
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    head = ["-c", code] if code is not None else [os.path.join(REPO_ROOT, script)]
    proc = subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO_ROOT, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return proc


def run_script(name, *args, check=True, timeout=600):
    """``run_python`` of ``scripts/<name>`` with ``args``."""
    return run_python(args, script=os.path.join("scripts", name), check=check, timeout=timeout)


_RESOLVE = """
import importlib.util, json, sys
name, path, define, fields, cases = sys.argv[1:6]
spec = importlib.util.spec_from_file_location(name, path)
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from tfadv import flags as tf_flags
tf_flags.define_data_flags(); tf_flags.define_attack_flags(); tf_flags.define_training_flags()
getattr(mod, define)()
out = []
for args in json.loads(cases):
    mod.FLAGS.unparse_flags()
    mod.FLAGS([name + ".py"] + args)
    try:
        cfg, kwargs = mod.resolve(mod.FLAGS)
    except ValueError as e:
        out.append({"error": str(e)})
        continue
    attack = kwargs.pop("attack")
    out.append({"cfg": {k: getattr(cfg, k) for k in json.loads(fields)},
                "attack": attack.get_config(), "kwargs": kwargs, "preset": mod.FLAGS.preset})
print(json.dumps(out, default=str))
"""


def resolve_script_flags(script, define_flags, cases, fields):
    """How ``scripts/<script>`` resolves each argument list of ``cases``: a list of
    ``{"cfg": {field: value}, "attack": config, "kwargs": defense kwargs, "preset": name}`` or
    ``{"error": message}`` (a ValueError), computed in one fresh interpreter. ``define_flags`` names
    the script's own flag-defining function; values JSON cannot hold are given as ``str``."""
    import json

    path = os.path.join(REPO_ROOT, "scripts", script)
    proc = run_python([os.path.splitext(script)[0], path, define_flags, json.dumps(list(fields)),
                       json.dumps(cases)], code=_RESOLVE)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_ports(n):
    """``n`` TCP ports on localhost that were free a moment ago (for a test's TF_CONFIG)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def randomize_bn(model, seed=0):
    """Non-trivial BatchNormalization inference statistics (and scale/offset) in ``model``, so that
    errors in handling them show; returns ``model``."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            if layer.scale:
                layer.gamma.assign(rng.normal(1, 0.3, n).astype("float32"))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))
    return model
