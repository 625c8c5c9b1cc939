"""The defense hooks (tfadv.defenses.base): make_adversarial's result object carries what
defense_loss needs, every log is a metric of the model, fit() adds a defense's required callbacks,
and no defense overrides the training/evaluation steps."""

import dataclasses
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, labels, losses
from tfadv.attacks import fosc as fosc_lib
from tfadv.defenses import AdversarialExamples, AdversarialModel
from tfadv.recipes import bat as bat_recipe
from tests import testing


digits = testing.digits_fixture(64, 32)


class WeightedCE(AdversarialModel):
    """Test-only defense: make_adversarial attaches per-example weights (label + 1) that
    defense_loss uses; nothing else connects the two hooks."""

    @dataclasses.dataclass(frozen=True)
    class Examples(AdversarialExamples):
        weights: Any = None

    def make_adversarial(self, x, y):
        examples = super().make_adversarial(x, y)
        return self.Examples(examples.x_adv, weights=tf.cast(y, tf.float32) + 1.0)

    def defense_loss(self, x, y, examples):
        logits = self.network(examples.x_adv, training=True)
        ce = losses.ce(logits=logits, labels=y)
        return tf.reduce_sum(examples.weights * ce) / tf.reduce_sum(examples.weights), logits


def weighted_model():
    return WeightedCE(testing.tiny_cnn(with_bn=False, seed=0), attack=attacks.get("noop"),
                      eval_attack=attacks.get("noop"), track_clean=False)


def test_a_field_of_the_result_reaches_defense_loss_inside_the_compiled_step(digits):
    x, y = digits[0][:32], digits[1][:32]
    model = weighted_model()
    net = model.network
    logits = net(x, training=True)
    ce = losses.ce(logits=logits, labels=y).numpy()
    weights = y.astype("float32") + 1.0
    want = float((weights * ce).sum() / weights.sum())
    assert want != pytest.approx(float(ce.mean()), rel=1e-3)  # the weights matter
    model.compile(keras.optimizers.SGD(0.0))  # the loss of the one step, weights unchanged
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    assert history["loss"][0] == pytest.approx(want, rel=1e-5)
    # The result is a tf.nest structure: a tf.function returns it whole.
    out = tf.function(model.make_adversarial)(tf.constant(x), tf.constant(y))
    assert isinstance(out, WeightedCE.Examples)
    np.testing.assert_array_equal(out.weights.numpy(), weights)
    np.testing.assert_array_equal(out.x_adv.numpy(), x)


def test_a_make_adversarial_returning_a_tensor_is_refused_with_the_value(digits):
    class Old(AdversarialModel):
        def make_adversarial(self, x, y):
            return x

    model = Old(testing.tiny_cnn(with_bn=False), attack=attacks.get("noop"))
    model.compile(keras.optimizers.SGD(0.0))
    with pytest.raises(ValueError, match="must return an AdversarialExamples.*Received: "):
        model.fit(digits[0][:8], digits[1][:8], batch_size=8, epochs=1, verbose=0)


def make_defense(name):
    """The registered defense ``name`` around a tiny network (tiny generators for L2L-DA)."""
    extra = {"l2lda": lambda: {"generator": testing.tiny_generator(), "eps": 0.1},
             "l2l": lambda: {"generator": testing.tiny_generator(
                 latent_dim=0, use_delta=False, class_conditional=False), "eps": 0.1}}
    kwargs = {**testing.paper_kwargs(name), **(extra[name]() if name in extra else {})}
    return defenses.get(name, testing.tiny_cnn(seed=0), **kwargs)


def test_no_defense_overrides_the_steps_or_keras_internals():
    for name in defenses.names():
        model = make_defense(name)
        for cls in type(model).__mro__:
            if cls is AdversarialModel:
                break
            overridden = {"train_step", "test_step", "metrics", "get_metrics_result", "fit",
                          "evaluate", "make_train_function", "make_test_function"} & set(vars(cls))
            assert not overridden, (name, cls.__name__, overridden)
    private = {n for n in vars(AdversarialModel) if n.startswith("_")
               and not n.startswith("__") and hasattr(keras.Model, n)}
    # The one Keras-private method overridden: Keras' symbolic build peeks a batch under a
    # strategy (see its docstring); no public route skips it.
    assert private == {"_maybe_symbolic_build"}, private


@pytest.mark.parametrize("name", ["bat", "dynamic"])
def test_no_state_is_left_between_the_hooks_after_a_train_step(name, digits):
    model = make_defense(name)
    model.compile(keras.optimizers.SGD(0.01))
    model.fit(digits[0][:16], digits[1][:16], batch_size=16, epochs=1, verbose=0)
    assert not [k for k in vars(model) if "pending" in k]


def test_bat_logs_the_label_budget_of_its_adversarial_labels(digits):
    x, y = digits[0][:32], digits[1][:32]
    net = testing.tiny_cnn(with_bn=False, seed=0)
    model = defenses.get("bat", net, **bat_recipe.defense_kwargs("R-MC-LA", eps=25.5,
                                                               pixel_range="[0,1]"))
    soft = labels.adversarial_labels(net(x, training=False), y, beta=9)
    mass = float(np.mean(labels.true_class_mass(soft, y)))
    model.compile(keras.optimizers.SGD(0.0))
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                        validation_data=(x, y)).history
    assert history["true_mass"][0] == pytest.approx(mass, rel=1e-5)
    assert history["eps_y"][0] == pytest.approx(1 - mass, rel=1e-5)
    # Validation logs are the evaluation metrics only.
    assert {k for k in history if k.startswith("val_")} == {
        "val_" + m.name for m in model.evaluation_metrics}


def test_dynamic_logs_c_t_and_the_mean_fosc_of_its_examples(digits):
    x, y = digits[0][:32], digits[1][:32]
    pgd = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=3, random_start="none")
    model = defenses.get("dynamic", testing.tiny_cnn(with_bn=False, seed=0), attack=pgd,
                         c_max=0.3, t_prime=4, weight_decay=0.0)
    x_adv = model.make_adversarial(tf.constant(x), tf.constant(y)).x_adv
    fosc, _, _ = fosc_lib.fosc_and_loss(model.model_fn(False), x_adv, x, y, 0.1)
    model.compile(keras.optimizers.SGD(0.0))
    # callbacks passed positionally (x, y, batch_size, epochs, verbose, callbacks): fit() still
    # adds the c_t schedule
    history = model.fit(x, y, 32, 2, 0, []).history
    np.testing.assert_allclose(history["c_t"], [0.3, 0.225], atol=1e-7)
    assert history["fosc"][0] == pytest.approx(float(tf.reduce_mean(fosc)), rel=1e-4)


def test_curriculum_logs_k_and_eps_warmup_logs_the_last_steps_scale(digits):
    x, y = digits[0][:64], digits[1][:64]
    model = defenses.get("curriculum", testing.tiny_cnn(seed=0), eps=0.1, num_steps=3,
                         initial_k=2, eps_warmup_steps=4)
    model.compile(keras.optimizers.SGD(0.01))
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                        validation_data=(x[:32], y[:32])).history
    assert history["k"] == [2, 2]  # the variable as of each epoch's last step
    np.testing.assert_allclose(history["eps_scale"], [0.5, 1.0])  # steps 2 and 4 of 4


def test_trades_and_l2lda_logs_compose_their_objectives(digits):
    x, y = digits[0][:32], digits[1][:32]
    trades = defenses.get("trades", testing.tiny_cnn(seed=0), beta=3.0, eps=0.1, step_size=0.007,
                          num_steps=2, weight_decay=0.0)
    trades.compile(keras.optimizers.SGD(0.0))
    logs = trades.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    assert logs["loss"][0] == pytest.approx(logs["natural_loss"][0] + 3.0 * logs["kl_loss"][0],
                                            rel=1e-5)
    l2lda = defenses.get("l2lda", testing.tiny_cnn(seed=0), generator=testing.tiny_generator(),
                         eps=0.1, num_steps=2, lam=0.5)
    l2lda.compile(keras.optimizers.SGD(0.01))
    logs = l2lda.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert logs["gen_objective"][0] == pytest.approx(
        logs["gen_cls_loss"][0] + 0.5 * logs["gen_div"][0], rel=1e-5)
    assert logs["gen_grad_norm"][0] > 0
