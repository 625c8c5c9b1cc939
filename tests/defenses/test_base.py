"""AdversarialModel features shared by every defense: eps warm-up, natural training path."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses
from tests import testing


def _digits(n=64):
    x, y, _, _ = testing.digits_split(num_train=n)
    return tf.constant(x), tf.constant(y)


def test_eps_warmup_scales_eps_and_step_linearly():
    x, y = _digits()
    net = testing.tiny_cnn(seed=1)
    eps = 0.2
    model = defenses.get("madry", net, eps=eps, step_size=eps / 2, num_steps=3, eps_warmup_steps=4,
                                  random_start="uniform")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    for done, expected_scale in [(0, 0.25), (1, 0.5), (3, 1.0), (10, 1.0)]:
        model.optimizer.iterations.assign(done)
        assert float(model.eps_scale()) == pytest.approx(expected_scale)
        delta = np.abs(model.make_adversarial(x, y).x_adv.numpy() - x.numpy()).max()
        assert delta <= eps * expected_scale + 1e-6
        assert delta >= 0.9 * eps * expected_scale  # the ball is actually used
    model.optimizer.iterations.assign(0)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["eps_scale"] == pytest.approx(0.25)


def test_eps_warmup_validation():
    with pytest.raises(ValueError, match="Received: -1"):
        defenses.get("madry", testing.tiny_cnn(), eps=0.1, step_size=2 / 255,
                     eps_warmup_steps=-1)


def test_natural_training_uses_clean_images_and_keeps_the_eval_attack():
    x, y = _digits(256)
    net = testing.tiny_cnn(seed=2)
    pgd = attacks.get("pgd", eps=0.1, num_steps=2)
    model = defenses.get("natural", net, attack=pgd)
    assert isinstance(model.attack, attacks.NoOpAttack)
    assert model.eval_attack is pgd
    np.testing.assert_array_equal(model.make_adversarial(x, y).x_adv.numpy(), x.numpy())
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert "clean_acc" not in history.history and history.history["adv_acc"][-1] > 0.5
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result["adv_acc"] < result["clean_acc"]  # validation is attacked with PGD


def test_images_outside_the_declared_range_stop_training():
    x, y = _digits()
    model = defenses.get("madry", testing.tiny_cnn(), eps=0.1, step_size=2 / 255, num_steps=1)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pixel range \[0,1\]"):
        model.train_on_batch(x * 255.0, y)


@pytest.mark.parametrize("kwargs, received", [
    (dict(loss="categorical_crossentropy"), "Received: loss='categorical_crossentropy'."),
    (dict(metrics=["accuracy"]), "Received: metrics=['accuracy']."),
    (dict(weighted_metrics=["accuracy"]), "Received: weighted_metrics=['accuracy']."),
    (dict(loss="mse", loss_weights=[2.0]), "Received: loss='mse', loss_weights=[2.0]."),
])
def test_compile_refuses_a_loss_or_metrics_the_defense_would_ignore(kwargs, received):
    model = defenses.get("trades", testing.tiny_cnn(), eps=0.1, step_size=0.007, num_steps=1)
    with pytest.raises(ValueError) as info:
        model.compile(optimizer=keras.optimizers.SGD(0.1), **kwargs)
    message = str(info.value)
    assert message.endswith(received)
    assert "TradesAdversarialTraining computes its own loss (mean CE(f(x), y) + beta" in message
    assert "adv_acc" in message and "kl_loss" in message  # its metrics, named
    assert not model.compiled  # nothing was compiled


def test_compile_refuses_a_positional_loss_and_names_the_default_loss():
    model = defenses.get("madry", testing.tiny_cnn(), eps=0.1, step_size=2 / 255, num_steps=1)
    with pytest.raises(ValueError, match=r"\(mean CE on the adversarial examples, plus weight "
                                         r"decay\).*Received: loss='mse'\.$"):
        model.compile(keras.optimizers.SGD(0.1), "mse")
    model.compile(keras.optimizers.SGD(0.1), run_eagerly=True)  # execution options still pass
    assert model.run_eagerly
