"""Tests for L2L-DA and L2L (tfadv.defenses.l2lda): the losses of eq. (6)-(8), the generator update
through the unrolled loop, the classifier update, the generator saved with the run. The recursion
and the generator's files: tests/attacks/test_l2lda_generator.py."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv.models.unet_generator import build_generator
from tfadv import defenses, losses
from tfadv.attacks import l2lda_generator
from tfadv.defenses import AdversarialExamples, AdversarialModel
from tests import testing
from tfadv.defenses import l2lda as l2lda_lib
from tfadv.recipes import l2lda as l2lda_recipe
from tfadv.recipes import madry as madry_recipe

EPS = 0.1  # digits, [0,1]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


digits = testing.digits_fixture(128, 32)


def make_model(net=None, **kwargs):
    kwargs.setdefault("generator", testing.tiny_generator(latent_dim=kwargs.pop("latent_dim", 8)))
    kwargs.setdefault("eps", EPS)
    kwargs.setdefault("num_steps", 2)
    return defenses.get("l2lda", net if net is not None else testing.tiny_cnn(seed=0), **kwargs)


# ------------------------------------------------------------------------------ pure losses


def test_diversity_and_objective_match_hand_values():
    x1 = np.array([[0.0, 0.2, 0.4, 0.6]], "float32").reshape(1, 2, 2, 1)
    x2 = np.array([[0.1, 0.2, 0.2, 0.6]], "float32").reshape(1, 2, 2, 1)
    z1, z2 = np.array([[1.0, -1.0]], "float32"), np.array([[0.0, 1.0]], "float32")
    div = losses.l2lda_diversity(x_adv_1=x1, x_adv_2=x2, z_1=z1, z_2=z2).numpy()
    # mean|Δx| = (0.1 + 0 + 0.2 + 0) / 4 = 0.075; mean|Δz| = (1 + 2) / 2 = 1.5
    np.testing.assert_allclose(div, [0.075 / (1.5 + 1e-8)], rtol=1e-6)
    assert losses.l2lda_diversity(x_adv_1=x1, x_adv_2=x1, z_1=z1, z_2=z2).numpy()[0] == 0.0

    ce_1 = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")  # (T=2, B=2)
    ce_2 = np.array([[2.0, 2.0], [1.0, 0.0]], "float32")
    d = np.array([[0.5, 1.0], [1.5, 3.0]], "float32")
    mean = losses.l2lda_generator_objective(ce_1=ce_1, ce_2=ce_2, diversity=d, lam=0.5).numpy()
    summed = losses.l2lda_generator_objective(ce_1=ce_1, ce_2=ce_2, diversity=d, lam=0.5,
                                              step_reduction="sum").numpy()
    # pair 0: L_cls = mean(1.5, 2) = 1.75, L_div = 1 -> 2.25; pair 1: 2 + 0.5 * 2 = 3
    np.testing.assert_allclose(mean, [2.25, 3.0], rtol=1e-6)
    np.testing.assert_allclose(summed, 2 * mean, rtol=1e-6)
    with pytest.raises(ValueError, match="step_reduction='max'"):
        losses.l2lda_generator_objective(ce_1=ce_1, ce_2=ce_2, diversity=d, lam=0.5,
                                         step_reduction="max")
    with pytest.raises(ValueError, match="Received: z_1 of shape"):
        losses.l2lda_diversity(x_adv_1=x1, x_adv_2=x2, z_1=np.zeros((1, 0), "float32"),
                               z_2=np.zeros((1, 0), "float32"))


def test_l2l_defense_is_the_one_shot_deterministic_generator(digits):
    x, y = digits[0][:8], digits[1][:8]
    net = testing.tiny_cnn(seed=2, with_bn=False)
    model = defenses.get("l2l", net, eps=EPS, base_filters=4)
    assert isinstance(model, l2lda_lib.L2LDA) and isinstance(model, AdversarialModel)
    assert (model.recursive, model.diversity, model.normalize_grad) == (False, False, False)
    assert model.num_steps == 1 and model.step_size == pytest.approx(EPS)
    cfg = model.generator.l2lda_config
    assert (cfg["latent_dim"], cfg["use_delta"], cfg["class_conditional"]) == (0, False, False)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    # Eq. (4) with the raw gradient, from the generator before its update (train-mode BN; the
    # doubled batch of identical halves has the single batch's moments).
    out = model.generator([x, testing.ce_input_gradient(net, x, y), np.zeros_like(x), np.zeros((8, 0), "float32"),
                           y], training=True).numpy()
    want = np.clip(x + EPS * out, 0, 1)
    x_adv = model.make_adversarial(tf.constant(x), tf.constant(y)).x_adv.numpy()
    assert x_adv.shape == (16, 8, 8, 1)
    np.testing.assert_allclose(x_adv[:8], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x_adv[8:], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Received: {'recursive': True}"):
        defenses.get("l2l", net, recursive=True)


# ------------------------------------------------------------------------------ generator objective


def test_diversity_is_zero_when_z_is_ignored_and_positive_otherwise(digits):
    x, y = tf.constant(digits[0][:16]), tf.constant(digits[1][:16])
    model = make_model(testing.trained_digits_model(), num_steps=3)
    z = model.sample_z(32)
    assert z.shape == (32, 8) and np.unique(np.round(z.numpy(), 5), axis=0).shape[0] == 32
    _, l_cls, l_div, _ = model.generator_objective(x, y, z)
    assert float(l_div) > 1e-4 and float(l_cls) > 0
    fc2 = model.generator.get_layer("z_fc2")  # z code ≡ relu(0) = 0: the generator ignores z
    fc2.set_weights([np.zeros_like(w) for w in fc2.get_weights()])
    objective, l_cls, l_div, x_adv = model.generator_objective(x, y, z)
    assert abs(float(l_div)) < 1e-8
    np.testing.assert_allclose(x_adv[:16].numpy(), x_adv[16:].numpy(), atol=1e-6)
    assert float(objective) == pytest.approx(float(l_cls), rel=1e-6)


def test_objective_reductions_and_lambda(digits):
    x, y = tf.constant(digits[0][:16]), tf.constant(digits[1][:16])
    net = testing.trained_digits_model()
    gen = testing.tiny_generator()
    z = tf.random.normal((32, 8), seed=3)
    mean = make_model(net, generator=gen, num_steps=3, lam=2.0)
    obj, l_cls, l_div, _ = mean.generator_objective(x, y, z)
    assert float(obj) == pytest.approx(float(l_cls) + 2.0 * float(l_div), rel=1e-5)
    summed = make_model(net, generator=gen, num_steps=3, lam=2.0, step_reduction="sum")
    obj_sum, cls_sum, _, _ = summed.generator_objective(x, y, z)
    assert float(obj_sum) == pytest.approx(3 * float(obj), rel=1e-4)
    assert float(cls_sum) == pytest.approx(3 * float(l_cls), rel=1e-4)
    no_div = make_model(net, generator=gen, num_steps=3, lam=2.0, diversity=False)
    obj_nd, cls_nd, div_nd, _ = no_div.generator_objective(x, y, z)
    assert float(obj_nd) == pytest.approx(float(cls_nd), rel=1e-6) and float(div_nd) > 0


def test_gradients_reach_every_generator_variable_through_the_unroll(digits):
    x, y = tf.constant(digits[0][:16]), tf.constant(digits[1][:16])
    model = make_model(testing.trained_digits_model(), num_steps=3)
    z = model.sample_z(32)
    variables = model.generator.trainable_variables
    with tf.GradientTape() as tape:
        objective, _, _, _ = model.generator_objective(x, y, z)
    grads = tape.gradient(objective, variables)
    assert len(variables) == 22  # z MLP 4, 6 conv kernels, 3 CBN x 4 tables
    for v, g in zip(variables, grads):
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, v.path


def test_generator_updates_increase_its_objective_against_a_fixed_classifier(digits):
    x, y = tf.constant(digits[0][:32]), tf.constant(digits[1][:32])
    net = testing.trained_digits_model()
    weights = [np.array(v) for v in net.trainable_variables]
    model = make_model(net, num_steps=3, diversity=False,
                       generator=testing.tiny_generator(base_filters=8),
                       generator_optimizer=keras.optimizers.Adam(3e-2))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    z = model.sample_z(64)
    before = float(model.generator_objective(x, y, z)[0])
    for _ in range(6):
        model.make_adversarial(x, y)
    after = float(model.generator_objective(x, y, z)[0])
    assert after > 1.5 * before, (before, after)  # L_cls (eq. 6) ascended
    for w, v in zip(weights, net.trainable_variables):  # the classifier was only attacked
        np.testing.assert_array_equal(w, np.array(v))


def test_generation_runs_the_classifier_in_inference_mode(digits):
    net = testing.tiny_cnn(seed=4, with_bn=True)
    net(testing.images_in_range("[0,1]", batch=32), training=True)
    model = make_model(net)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    stats = testing.bn_moving_stats(net)
    gen_stats = testing.bn_moving_stats(model.generator) + [
        np.array(v) for v in model.generator.non_trainable_variables]
    gen_weights = [np.array(v) for v in model.generator.trainable_variables]
    x_adv = model.make_adversarial(tf.constant(digits[0][:8]), tf.constant(digits[1][:8])).x_adv
    assert x_adv.shape == (16, 8, 8, 1)
    for before, after in zip(stats, testing.bn_moving_stats(net)):
        np.testing.assert_array_equal(before, after)
    moved = [np.abs(b - np.array(a)).max() for b, a in
             zip(gen_stats[-len(model.generator.non_trainable_variables):],
                 model.generator.non_trainable_variables)]
    assert max(moved) > 0  # the generator's CBN ran in training mode
    assert max(np.abs(b - np.array(a)).max()
               for b, a in zip(gen_weights, model.generator.trainable_variables)) > 0


# ------------------------------------------------------------------------------ classifier update


def test_defense_loss_is_one_mean_ce_over_clean_and_both_adversarial_halves():
    net = testing.tiny_cnn(seed=5, with_bn=False)
    model = make_model(net)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 8, 8, 1)).astype("float32")
    x_adv = rng.uniform(size=(8, 8, 8, 1)).astype("float32")
    y = np.array([1, 2, 3, 4], "int32")
    loss, logits_adv = model.defense_loss(tf.constant(x), tf.constant(y),
                                          AdversarialExamples(tf.constant(x_adv)))
    ce = lambda images, labels: losses.ce(logits=net(images, training=True), labels=labels).numpy()
    want = np.concatenate([ce(x, y), ce(x_adv[:4], y), ce(x_adv[4:], y)]).mean()
    assert float(loss) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(logits_adv, net(x_adv[:4], training=True), rtol=1e-5, atol=1e-6)
    assert {v.path for v in model.decay_variables()} == {v.path for v in net.trainable_variables}


def test_compile_sets_clipping_and_copies_the_optimizer():
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    assert model.optimizer.global_clipnorm == 1.0
    gen_opt = model.generator_optimizer
    assert isinstance(gen_opt, keras.optimizers.SGD) and gen_opt is not model.optimizer
    assert gen_opt.momentum == 0.9 and float(gen_opt.learning_rate) == pytest.approx(0.01)
    assert gen_opt.global_clipnorm is None  # clipped by hand, before the weight decay
    kept = make_model(clip_norm=0.0)
    kept.compile(optimizer=keras.optimizers.SGD(0.01, clipnorm=5.0))
    assert kept.optimizer.global_clipnorm is None and kept.optimizer.clipnorm == 5.0


def test_fit_logs_updates_both_networks_and_saves_the_generator(digits, tmp_path):
    x, y, x_test, y_test = digits
    net = testing.tiny_cnn(seed=0)
    model = make_model(net, num_steps=2)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), run_eagerly=True)
    net_before = [np.array(v) for v in net.trainable_variables]
    gen_before = [np.array(v) for v in model.generator.trainable_variables]
    logdir = str(tmp_path / "run")
    history = model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0,
                        callbacks=model.training_callbacks(logdir))
    keys = {"loss", "adv_loss", "adv_acc", "clean_acc", "gen_cls_loss", "gen_div",
            "gen_objective", "gen_grad_norm"}
    assert keys <= set(history.history)
    for key in keys:
        assert np.isfinite(history.history[key][0]), key
    assert history.history["gen_div"][0] > 0 and history.history["gen_grad_norm"][0] > 0
    for before, v in zip(net_before, net.trainable_variables):
        assert np.abs(before - np.array(v)).max() > 0, v.path
    assert max(np.abs(b - np.array(v)).max()
               for b, v in zip(gen_before, model.generator.trainable_variables)) > 0
    res = model.evaluate(x_test, y_test, batch_size=32, verbose=0, return_dict=True)
    assert 0.0 <= res["adv_acc"] <= res["clean_acc"] + 1e-6
    # The callback wrote LOGDIR/generator/ atomically; load_generator rebuilds it from the run.
    assert sorted(os.listdir(logdir)) == ["generator"]
    with open(os.path.join(logdir, "generator", "config.json")) as f:
        saved = json.load(f)
    assert saved["epoch"] == 1 and saved["kwargs"]["base_filters"] == 4
    loaded = l2lda_generator.load_generator(logdir)
    feed = [x[:4], x[:4], np.zeros_like(x[:4]), np.ones((4, 8), "float32"), y[:4]]
    np.testing.assert_allclose(loaded(feed, training=False), model.generator(feed, training=False),
                               rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ construction


def test_registry_and_paper_recipe():
    assert {"l2lda", "l2l"} <= set(defenses.names())
    model = defenses.get("l2lda", testing.tiny_cnn(seed=0), base_filters=4,
                         **l2lda_recipe.defense_kwargs("cifar10"))
    assert model.eps == pytest.approx(8 / 255) and model.step_size == pytest.approx(2 / 255)
    assert model.num_steps == 10 and model.lam == 0.5
    assert (model.recursive, model.diversity, model.normalize_grad) == (True, True, True)
    assert model.weight_decay == 1e-5 and model.generator_weight_decay == 1e-5
    assert model.clip_norm == 1.0 and model.step_reduction == "mean"
    cfg = model.generator.l2lda_config
    assert (cfg["latent_dim"], cfg["use_delta"], cfg["class_conditional"]) == (8, True, True)
    ev = model.eval_attack.get_config()
    assert ev["num_steps"] == 10 and ev["step_size"] == pytest.approx(2 / 255)
    assert ev["random_start"] == "uniform" and ev["loss"] == "ce"
    one_shot = defenses.get("l2lda", testing.tiny_cnn(seed=0), base_filters=4, recursive=False,
                                     eps=EPS)
    assert one_shot.num_steps == 1 and one_shot.step_size == pytest.approx(EPS)
    assert l2lda_lib.LAMBDA == {"mnist": 0.02, "cifar10": 0.5}


@pytest.mark.parametrize("kwargs,match", [
    (dict(recursive=False, num_steps=10), "num_steps=10, recursive=False"),
    (dict(latent_dim=0), "diversity=True, latent_dim=0"),
    (dict(lam=-1.0), "lam=-1.0"),
    (dict(eps=8.0), "eps=8.0"),
    (dict(num_steps=0), "num_steps=0"),
    (dict(step_reduction="max"), "step_reduction='max'"),
    (dict(recursive="yes"), "recursive='yes'"),
    (dict(clip_norm=float("nan")), "clip_norm=nan"),
    (dict(pixel_range="[-1,1]", attack=testing.constant_attack(0.0)), None),
])
def test_bad_arguments(kwargs, match):
    kwargs = dict(kwargs)
    if match is None:  # an attack without a pixel range
        with pytest.raises(ValueError, match="Received: attack="):
            make_model(**kwargs)
        return
    kwargs.setdefault("base_filters", 4)
    kwargs.setdefault("eps", 8 / 255)  # the size, so that the argument under test is what is refused
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        defenses.get("l2lda", testing.tiny_cnn(seed=0), **kwargs)


def test_generator_must_match_the_network():
    net = testing.tiny_cnn(seed=0)
    with pytest.raises(ValueError, match="Received: generator num_classes=7"):
        make_model(net, generator=build_generator(7, (8, 8, 1), base_filters=4))
    with pytest.raises(ValueError, match=r"Received: input_shape=\(12, 12, 1\)"):
        make_model(net, generator=build_generator(10, (12, 12, 1), base_filters=4))
    with pytest.raises(TypeError, match="Received"):
        make_model(net, generator=testing.tiny_cnn(seed=1))
    with pytest.raises(ValueError, match="pixel range"):
        make_model(net, pixel_range="[-1,1]",
                   attack=madry_recipe.defense_kwargs()["attack"])  # a [0,1] PGD


@pytest.mark.slow
def test_graph_mode_fit(digits):
    x, y, _, _ = digits
    model = make_model(testing.tiny_cnn(seed=0), num_steps=2)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    history = model.fit(x[:64], y[:64], batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["gen_objective"]))
    assert np.all(np.isfinite(history.history["loss"]))
