"""Tests for the transfer attack (crafted on a source model, evaluated on the target)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, export
from tfadv.attacks.transfer import TransferAttack
from tests import testing
from tests.attacks.test_core import EPS, RANGES, assert_in_ball_and_range, batch_in_range


@pytest.fixture(scope="module")
def source_model():
    return testing.tiny_cnn(seed=0, name="source")


@pytest.fixture(scope="module")
def target_model():
    return testing.tiny_cnn(seed=1, name="target")


class CountingModel:
    """A logits callable that counts the examples it is evaluated on."""

    def __init__(self, model):
        self.model, self.examples = model, 0

    def __call__(self, x):
        self.examples += int(x.shape[0])
        return self.model(x, training=False)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_equals_the_inner_attack_on_the_source(source_model, target_model, norm):
    x, y = batch_in_range("[0,1]", seed=1)
    eps = EPS[(norm, "[0,1]")]
    params = dict(eps=eps, norm=norm, num_steps=3, random_start="none")
    direct = attacks.get("pgd", **params)(source_model, x, y).numpy()
    target = CountingModel(target_model)
    transfer = attacks.get("transfer", source=source_model, inner="pgd", **params)
    x_adv = transfer(target, x, y).numpy()
    np.testing.assert_array_equal(x_adv, direct)
    assert target.examples == 0  # the target is never queried
    # Not the white-box attack on the target.
    white_box = attacks.get("pgd", **params)(target_model, x, y).numpy()
    assert np.abs(white_box - x_adv).max() > 1e-3
    # inner_params and an Attack instance give the same images.
    by_dict = attacks.get("transfer", source=source_model, inner_params=params)
    np.testing.assert_array_equal(by_dict(target_model, x, y).numpy(), direct)
    by_instance = attacks.get("transfer", source=source_model, inner=attacks.get("pgd", **params))
    np.testing.assert_array_equal(by_instance(target_model, x, y).numpy(), direct)


@pytest.mark.parametrize("pixel_range", RANGES)
@pytest.mark.parametrize("inner,norm", [("pgd", "linf"), ("mifgsm", "l2"), ("deepfool", "linf")])
def test_stays_in_ball_and_range(source_model, target_model, inner, norm, pixel_range):
    x, y = batch_in_range(pixel_range, seed=2)
    eps = EPS[(norm, pixel_range)]
    params = dict(eps=eps, norm=norm, pixel_range=pixel_range)
    if inner == "deepfool":
        params["max_iter"] = 3
    else:
        params["num_steps"] = 3
    attack = attacks.get("transfer", source=source_model, inner=inner, **params)
    assert attack.pixel_range.name == pixel_range
    x_adv = attack(target_model, x, y)
    assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)


def test_graph_mode(source_model, target_model):
    x, y = batch_in_range("[-1,1]", seed=3)
    attack = attacks.get("transfer", source=source_model, inner="fgsm", eps=0.2,
                         pixel_range="[-1,1]")
    assert attack.graph_safe
    eager = attack(target_model, x, y).numpy()
    graph = tf.function(lambda a, b: attack(target_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(graph.numpy(), eager, atol=1e-6)


def test_eager_inner_runs_inside_tf_function(source_model, target_model):
    """An inner attack with host-side control flow (graph_safe False) still traces."""
    x, y = batch_in_range("[0,1]", seed=4)
    inner = attacks.get("autoattack", eps=0.1, attacks=["fgsm"])
    assert not inner.graph_safe
    attack = attacks.get("transfer", source=source_model, inner=inner)
    assert not attack.graph_safe
    eager = attack(target_model, x, y).numpy()
    graph = tf.function(lambda a, b: attack(target_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(graph.numpy(), eager, atol=1e-6)


def test_savedmodel_source(tmp_path, source_model, target_model):
    path = os.path.join(str(tmp_path), "source_savedmodel")
    export.export_savedmodel(source_model, path, pixel_range="[-1,1]")
    x, y = batch_in_range("[-1,1]", seed=5)
    # The range comes from the SavedModel's metadata.
    attack = attacks.get("transfer", source=path, inner="fgsm", eps=0.2)
    assert isinstance(attack, TransferAttack) and attack.pixel_range.name == "[-1,1]"
    x_adv = attack(target_model, x, y).numpy()
    direct = attacks.get("fgsm", eps=0.2, pixel_range="[-1,1]")(source_model, x, y).numpy()
    np.testing.assert_allclose(x_adv, direct, atol=1e-6)
    assert attack.get_config()["source"] == path
    with pytest.raises(ValueError, match="Received"):
        attacks.get("transfer", source=path, inner="fgsm", eps=0.1, pixel_range="[0,1]")


@pytest.mark.parametrize("params", [
    dict(source=None), dict(source="/nonexistent/model/dir"), dict(inner="transfer"),
    dict(inner="no_such_attack"), dict(inner=3), dict(inner_params={"eps": 0.1}, eps=0.2),
    dict(pixel_range="[0,1]", inner_params={"eps": 0.1, "pixel_range": "[-1,1]"}),
])
def test_errors(source_model, params):
    kwargs = dict(source=source_model, eps=0.1)
    kwargs.update(params)
    if "inner_params" in params and "eps" not in params:
        kwargs.pop("eps")
    with pytest.raises(ValueError, match="Received"):
        attacks.get("transfer", **kwargs)


def test_instance_with_params_raises(source_model):
    with pytest.raises(ValueError, match="Received"):
        TransferAttack(source=source_model, inner=attacks.get("fgsm", eps=0.1),
                       inner_params={"eps": 0.2})
