"""Tests for Bilateral Adversarial Training (tfadv.defenses.bat, its recipes tfadv.recipes.bat,
scripts/train_bat.py)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, labels, losses
from tfadv.attacks import targets as targets_lib
from tests import testing
from tfadv.defenses import bat as bat_lib
from tfadv.recipes import bat as bat_recipe

EPS = 0.1  # digits, [0,1]: 25.5 pixel levels


digits = testing.digits_fixture(640, 200)


class Counter(keras.layers.Layer):
    """Identity layer counting its inference-mode and training-mode calls (eager runs)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = {True: 0, False: 0}

    def call(self, x, training=None):
        self.calls[bool(training)] += 1
        return x


def counting_net():
    counter = Counter()
    inputs = keras.Input((8, 8, 1))
    net = keras.Model(inputs, testing.tiny_cnn(seed=0)(counter(inputs)))
    counter.calls = {True: 0, False: 0}
    return net, counter


# ------------------------------------------------------------------------------ construction


def test_registry_and_recipe_r_mc_la():
    assert "bat" in defenses.names()
    model = defenses.get("bat", testing.tiny_cnn(seed=0), **bat_recipe.defense_kwargs("R-MC-LA"))
    assert isinstance(model, bat_lib.BilateralAdversarialTraining)
    assert isinstance(model, defenses.AdversarialModel)
    cfg = model.attack.get_config()
    # eps 8 = step 8 pixels in [-1,1] inputs = 16/255 input units; one MC step from a random start.
    assert cfg["eps"] == pytest.approx(16 / 255) and cfg["step_size"] == pytest.approx(16 / 255)
    assert cfg["num_steps"] == 1 and cfg["target"] == "mc" and cfg["random_start"] == "uniform"
    assert cfg["pixel_range"] == "[-1,1]" and cfg["training"] is False
    assert model.label_adversary == "la" and model.beta == 9 and model.gamma == 0.01
    assert model.variant == "main" and model.top_k is None
    assert model.weight_decay == pytest.approx(2e-4) and model.attack_training is False
    ev = model.eval_attack.get_config()  # the paper's one-step evaluation: FGSM without RS
    assert ev["target"] is None and ev["random_start"] == "none" and ev["num_steps"] == 1
    assert ev["eps"] == pytest.approx(16 / 255)


EXPECTED = {  # name: (target, random start, label adversary, steps, step in pixels, top_k, variant)
    "FGSM": (None, "none", "none", 1, 8, None, "main"),
    "R-FGSM": (None, "uniform", "none", 1, 8, None, "main"),
    "LL": ("ll", "none", "none", 1, 8, None, "main"),
    "R-LL": ("ll", "uniform", "none", 1, 8, None, "main"),
    "MC": ("mc", "none", "none", 1, 8, None, "main"),
    "R-MC": ("mc", "uniform", "none", 1, 8, None, "main"),
    "R-MC-LS": ("mc", "uniform", "ls", 1, 8, None, "main"),
    "R-MC-LA": ("mc", "uniform", "la", 1, 8, None, "main"),
    "R-MC-LA9": ("mc", "uniform", "la", 1, 8, 9, "sup"),
    "Madry-LA": (None, "uniform", "la", 7, 2, None, "main"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_configurations(name):
    target, start, adversary, steps, step, top_k, variant = EXPECTED[name]
    kwargs = bat_recipe.defense_kwargs(name, eps=8, pixel_range="[-1,1]")
    cfg = kwargs["image_attack"].get_config()
    assert cfg["target"] == target and cfg["random_start"] == start and cfg["num_steps"] == steps
    assert cfg["eps"] == pytest.approx(16 / 255) and cfg["step_size"] == pytest.approx(2 * step / 255)
    assert kwargs["label_adversary"] == adversary and kwargs["top_k"] == top_k
    assert kwargs["variant"] == variant and kwargs["beta"] == 9
    assert kwargs["eps_y"] == (0.5 if adversary == "ls" else None)
    model = defenses.get("bat", testing.tiny_cnn(num_classes=100 if top_k else 10, seed=0), **kwargs)
    assert model.label_adversary == adversary


def test_imagenet_configuration_and_overrides():
    kwargs = bat_recipe.defense_kwargs("r-mc-la-imagenet", pixel_range="[-1,1]")
    cfg = kwargs["image_attack"].get_config()
    assert cfg["num_steps"] == 2 and cfg["target"] == "mc"
    assert cfg["eps"] == pytest.approx(32 / 255) and cfg["step_size"] == pytest.approx(16 / 255)
    assert kwargs["beta"] == 100
    kwargs = bat_recipe.defense_kwargs("R-MC-LA9", eps=4, pixel_range="[0,1]", beta=11, num_steps=2,
                                step_size=2)
    cfg = kwargs["image_attack"].get_config()
    assert cfg["eps"] == pytest.approx(4 / 255) and cfg["step_size"] == pytest.approx(2 / 255)
    assert cfg["num_steps"] == 2 and kwargs["beta"] == 11


def test_named_models_are_the_papers():
    # Tables 3 and 5, appendix B and the ImageNet setting: no model more, none less (each one's
    # values are checked above).
    assert bat_recipe.model_names() == sorted([*EXPECTED, "R-MC-LA-ImageNet"])


@pytest.mark.parametrize("kwargs", [
    dict(label_adversary="adv"), dict(label_adversary="ls"), dict(label_adversary="la", eps_y=0.5),
    dict(label_adversary="ls", eps_y=0.5, top_k=3), dict(beta=0.0), dict(variant="x"),
    dict(top_k=10), dict(gamma=-1.0),
])
def test_bad_arguments(kwargs):
    attack = bat_recipe.defense_kwargs("R-MC")["image_attack"]  # so that kwargs are what is refused
    with pytest.raises(ValueError, match="Received"):
        defenses.get("bat", testing.tiny_cnn(seed=0), image_attack=attack, **kwargs)


def test_bad_names_and_two_attacks():
    with pytest.raises(ValueError, match="Received"):
        bat_recipe.defense_kwargs("R-MC-LA10")
    a = attacks.get("fgsm", eps=EPS)
    b = attacks.get("fgsm", eps=EPS)
    with pytest.raises(ValueError, match="Received"):
        defenses.get("bat", testing.tiny_cnn(seed=0), image_attack=a, attack=b)
    with pytest.raises(ValueError, match="Received"):
        bat_recipe.defense_kwargs("R-MC", eps=8, pixel_range="[0,1]", step_size=300)


# ------------------------------------------------------------------------------ image adversary


def test_mc_target_is_argmax_non_true_logit():
    logits = tf.constant([[5.0, 4.0, 1.0, 4.5], [0.0, 9.0, 3.0, -1.0], [2.0, 2.5, 7.0, 0.0]])
    y = tf.constant([0, 1, 2])
    np.testing.assert_array_equal(targets_lib.select("mc", logits=logits, labels=y).numpy(), [3, 2, 1])
    np.testing.assert_array_equal(targets_lib.select("ll", logits=logits, labels=y).numpy(), [2, 3, 3])
    # The BAT MC attack steps toward exactly those classes (random start off: deterministic).
    model = testing.trained_digits_model()
    x, y, _, _ = testing.digits_split(num_train=64)
    mc = bat_lib.bat_image_attack(eps=EPS, target="mc", random_start=False, pixel_range="[0,1]")
    given = bat_lib.bat_image_attack(eps=EPS, target=None, random_start=False, pixel_range="[0,1]")
    given.target = "given"
    z = model(x, training=False).numpy()
    z[np.arange(len(y)), y] = -np.inf
    np.testing.assert_array_equal(mc(model, x, y).numpy(),
                                  given(model, x, y, targets=np.argmax(z, axis=1)).numpy())


@pytest.mark.parametrize("target", ["mc", "ll", "random"])
def test_one_targeted_step_lowers_the_targets_ce(target):
    model = testing.trained_digits_model()
    x, y, _, _ = testing.digits_split(num_train=128)
    logits = model(x, training=False)
    t = targets_lib.select(target, logits=logits, labels=y, seed=3) if target != "random" else None
    attack = bat_lib.bat_image_attack(eps=0.05, target="given", random_start=False,
                                      pixel_range="[0,1]")
    if t is None:
        t = targets_lib.select("random", logits=logits, labels=y, seed=3)
    x_adv = attack(model, x, y, targets=t)
    before = losses.ce(logits=logits, labels=t).numpy()
    after = losses.ce(logits=model(x_adv, training=False), labels=t).numpy()
    assert np.mean(after < before) > 0.95 and after.mean() < before.mean()  # eq. (24): descend
    assert np.max(np.abs(x_adv.numpy() - x)) <= 0.05 + 1e-6


def test_untargeted_fgsm_raises_the_true_ce():
    model = testing.trained_digits_model()
    x, y, _, _ = testing.digits_split(num_train=128)
    attack = bat_recipe.defense_kwargs("FGSM", eps=12.75, pixel_range="[0,1]")["image_attack"]
    before = losses.ce(logits=model(x, training=False), labels=y).numpy()
    after = losses.ce(logits=model(attack(model, x, y), training=False), labels=y).numpy()
    assert np.mean(after > before) > 0.95


def test_random_start_off_is_deterministic_and_on_is_not():
    model = testing.trained_digits_model()
    x, y, _, _ = testing.digits_split(num_train=32)
    off = bat_recipe.defense_kwargs("MC", eps=25.5, pixel_range="[0,1]")["image_attack"]
    np.testing.assert_array_equal(off(model, x, y).numpy(), off(model, x, y).numpy())
    on = bat_recipe.defense_kwargs("R-MC", eps=25.5, pixel_range="[0,1]")["image_attack"]
    assert not np.array_equal(on(model, x, y).numpy(), on(model, x, y).numpy())


# ------------------------------------------------------------------------------ the defense


def test_one_clean_inference_forward_shared_by_target_and_labels():
    net, counter = counting_net()
    model = defenses.get("bat", net, **bat_recipe.defense_kwargs("R-MC-LA", eps=25.5, pixel_range="[0,1]"),
                                track_clean=False)
    model.compile(keras.optimizers.SGD(0.01), run_eagerly=True)
    x, y, _, _ = testing.digits_split(num_train=16)
    model.train_on_batch(x, y)
    # inference: the shared clean forward + the one attack step; training: the update forward only.
    assert counter.calls == {False: 2, True: 1}


def test_pair_uses_inference_mode_bn_and_labels_from_clean_logits():
    net = testing.tiny_cnn(seed=0)
    net(tf.zeros([1, 8, 8, 1]), training=True)
    model = defenses.get("bat", net, **bat_recipe.defense_kwargs("R-MC-LA", eps=25.5, pixel_range="[0,1]"))
    x, y, _, _ = testing.digits_split(num_train=32)
    before = testing.bn_moving_stats(net)
    x_adv, y_soft = model.adversarial_pair(x, y)
    for a, b in zip(before, testing.bn_moving_stats(net)):
        np.testing.assert_array_equal(a, b)
    expected = labels.adversarial_labels(net(x, training=False), y, beta=9)
    np.testing.assert_allclose(y_soft.numpy(), expected.numpy(), atol=1e-6)
    assert np.max(np.abs(x_adv.numpy() - x)) <= EPS + 1e-6


@pytest.mark.parametrize("adversary,extra", [("la", {}), ("ls", {"eps_y": 0.5}), ("none", {})])
def test_defense_loss_is_soft_ce_on_adversarial_pair_only(adversary, extra):
    net = testing.tiny_cnn(with_bn=False, seed=0)
    attack = bat_lib.bat_image_attack(eps=EPS, target="mc", random_start=False, pixel_range="[0,1]")
    model = defenses.get("bat", net, image_attack=attack, label_adversary=adversary, **extra)
    x, y, _, _ = testing.digits_split(num_train=32)
    examples = model.make_adversarial(x, y)
    x_adv = examples.x_adv
    loss, logits_adv = model.defense_loss(x, y, examples)
    clean = net(x, training=False)
    soft = {"la": labels.adversarial_labels(clean, y, beta=9),
            "ls": labels.label_smoothing(y, 10, 0.5), "none": tf.one_hot(y, 10)}[adversary]
    expected = tf.reduce_mean(losses.ce(logits=net(x_adv), labels=soft))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(logits_adv.numpy(), net(x_adv).numpy(), atol=1e-5)
    # The labels travel on make_adversarial's result (no state between the hooks): y' itself.
    np.testing.assert_allclose(examples.labels.numpy(), soft.numpy(), atol=1e-6)
    loss2, _ = model.defense_loss(x, y, examples)
    assert float(loss2) == pytest.approx(float(expected), rel=1e-5)


def test_short_training_run_on_digits_reports_label_metrics(digits):
    x_train, y_train, x_test, y_test = digits
    model = defenses.get("bat", testing.tiny_cnn(seed=0),
                                **bat_recipe.defense_kwargs("R-MC-LA", eps=25.5, pixel_range="[0,1]"))
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x_train, y_train, epochs=4, batch_size=64, verbose=0,
                        validation_data=(x_test, y_test)).history
    assert {"eps_y", "true_mass", "loss", "adv_acc", "clean_acc", "val_adv_acc"} <= set(history)
    assert "val_eps_y" not in history
    for eps_y, mass in zip(history["eps_y"], history["true_mass"]):
        assert 1 / 10 < eps_y <= 1 / (1 + 9 / 9) + 1e-6  # eq. (21) for beta=9, n=10
        assert eps_y + mass == pytest.approx(1.0, abs=1e-5)
    assert history["clean_acc"][-1] > 0.6 and history["clean_acc"][-1] > history["clean_acc"][0]
    assert history["val_adv_acc"][-1] > 0.3  # FGSM (eps 0.1, no random start) on held-out digits
    for weight in model.network.trainable_weights:
        assert np.all(np.isfinite(weight.numpy()))


def test_label_smoothing_model_logs_its_fixed_budget(digits):
    x_train, y_train, _, _ = digits
    model = defenses.get("bat", testing.tiny_cnn(seed=0),
                                **bat_recipe.defense_kwargs("R-MC-LS", eps=25.5, pixel_range="[0,1]"))
    model.compile(keras.optimizers.Adam(1e-2))
    logs = model.train_on_batch(x_train[:64], y_train[:64], return_dict=True)
    assert logs["eps_y"] == pytest.approx(0.5) and logs["true_mass"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------ the script

SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "train_bat.py")


FIELDS = ("model", "pixel_range", "eps", "step_size", "num_steps", "epochs", "batch_size",
          "optimizer", "lr", "lr_boundaries", "momentum", "weight_decay", "random_start")

DEFAULT_CASES = [
    (["--dataset=cifar10"], dict(model="madry_wrn28", pixel_range="[-1,1]", eps=8.0, step_size=8.0,
                                 num_steps=1, epochs=200, batch_size=128, optimizer="sgd", lr=0.1,
                                 lr_boundaries=[100, 150], momentum=0.9, weight_decay=2e-4,
                                 beta=9.0, target="mc", random_start="uniform")),
    (["--dataset=cifar100", "--bat_model=R-MC-LA9", "--schedule=short"],
     dict(epochs=100, lr_boundaries=[60, 90], beta=11.0, top_k=9, variant="sup")),
    (["--dataset=svhn", "--bat_model=FGSM"], dict(lr=0.01, target=None, random_start="none")),
    (["--dataset=cifar10", "--bat_model=Madry-LA"], dict(num_steps=7, step_size=2.0)),
    (["--dataset=digits", "--bat_model=R-MC-LS"],
     dict(model="digits_cnn", pixel_range="[0,1]", eps=25.5, step_size=25.5, num_steps=1,
          epochs=30, optimizer="adam", eps_y=0.5, label_adversary="ls")),
]
ERROR_CASES = [
    (["--dataset=imagenet", "--schedule=short"], "--schedule"),
    (["--random_start=none"], "--bat_model"),
    (["--schedule=short"], "--schedule"),
    (["--eps_y=0.3"], "eps_y"),
]


def write_npz(path, image_shape):
    """A 6-image Keras-layout npz file of ``image_shape`` (uint8 pixels, 2 classes)."""
    rng = np.random.default_rng(0)
    arrays = {f"x_{split}": rng.integers(0, 256, (6,) + image_shape, dtype=np.uint8)
              for split in ("train", "test")}
    arrays.update(y_train=np.array([0, 1] * 3, np.uint8), y_test=np.array([1, 0] * 3, np.uint8))
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    """Every case resolved in one subprocess; the last two: a 32x32x3 npz file (CIFAR's shape) and a
    28x28x1 one with --schedule (MNIST's shape: no BAT preset)."""
    folder = tmp_path_factory.mktemp("bat_npz")
    cases = [args for args, _ in DEFAULT_CASES + ERROR_CASES]
    cases.append([f"--dataset=npz:{write_npz(folder / 'cifar.npz', (32, 32, 3))}"])
    cases.append([f"--dataset=npz:{write_npz(folder / 'mnist.npz', (28, 28, 1))}",
                  "--schedule=short"])
    return testing.resolve_script_flags("train_bat.py", "define_bat_flags", cases, FIELDS)


@pytest.mark.parametrize("index", range(len(DEFAULT_CASES)))
def test_script_defaults(resolved, index):
    out, expected = resolved[index], DEFAULT_CASES[index][1]
    assert "error" not in out, out
    merged = {**out["cfg"], **out["kwargs"], "target": out["attack"]["target"],
              "random_start": out["attack"]["random_start"]}
    for key, value in expected.items():
        assert merged[key] == (pytest.approx(value) if isinstance(value, float) else value), key


@pytest.mark.parametrize("index", range(len(ERROR_CASES)))
def test_script_errors(resolved, index):
    out, message = resolved[len(DEFAULT_CASES) + index], ERROR_CASES[index][1]
    assert "error" in out and message in out["error"] and "Received" in out["error"], out


def test_a_cifar_shaped_npz_takes_the_bat_cifar10_preset(resolved):
    out = resolved[len(DEFAULT_CASES) + len(ERROR_CASES)]
    assert "error" not in out, out
    assert out["preset"] == "bat_cifar10", out
    cfg, kwargs, attack = out["cfg"], out["kwargs"], out["attack"]
    assert (cfg["model"], cfg["pixel_range"], cfg["epochs"], cfg["lr_boundaries"]) == (
        "madry_wrn28", "[-1,1]", 200, [100, 150])
    # R-MC-LA: one MC-targeted step of 8 pixel levels = 16/255 in [-1,1], from a random start.
    assert (cfg["num_steps"], cfg["step_size"], attack["target"]) == (1, 8.0, "mc")
    assert attack["eps"] == pytest.approx(16 / 255) and attack["random_start"] == "uniform"
    assert kwargs["beta"] == 9.0 and kwargs["label_adversary"] == "la"


def test_an_mnist_shaped_npz_has_no_bat_schedule(resolved):
    out = resolved[len(DEFAULT_CASES) + len(ERROR_CASES) + 1]
    assert "error" in out and "--schedule" in out["error"] and "Received" in out["error"], out


def test_paper_dataset_by_name_and_npz_shape(tmp_path):
    assert bat_recipe.paper_dataset("CIFAR100") == "cifar100"
    assert bat_recipe.paper_dataset("digits") is None
    assert bat_recipe.paper_dataset(f"npz:{write_npz(tmp_path / 'c.npz', (32, 32, 3))}") == "cifar10"
    assert bat_recipe.paper_dataset(f"npz:{write_npz(tmp_path / 'm.npz', (28, 28, 1))}") is None
    assert bat_recipe.paper_dataset(f"npz:{write_npz(tmp_path / 'o.npz', (5, 5, 1))}") is None


def test_script_trains_on_digits(tmp_path):
    logdir = str(tmp_path / "bat")
    proc = testing.run_python(["--epochs=2", "--train_limit=128", "--eval_limit=64",
                               "--val_limit=64", "--eval_attacks=clean,fgsm", f"--logdir={logdir}"],
                              script=SCRIPT)
    assert "eps_y" in proc.stdout and "true_mass" in proc.stdout
    assert "| Acc.(%) | clean | FGSM |" in proc.stdout
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["defense"] == "bat" and meta["flags"]["bat_model"] == "R-MC-LA"
    assert meta["config"]["num_steps"] == 1 and meta["config"]["step_size"] == pytest.approx(25.5)


def test_config_rejects_label_options_of_other_adversaries():
    with pytest.raises(ValueError, match="Received: eps_y"):
        bat_recipe.defense_kwargs("R-MC-LA", eps_y=0.3)
    with pytest.raises(ValueError, match="Received: top_k"):
        bat_recipe.defense_kwargs("R-MC-LS", top_k=3)
    assert bat_recipe.spec_name("r-mc-la9") == "R-MC-LA9"
