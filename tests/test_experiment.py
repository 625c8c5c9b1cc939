"""Flag resolution against the recipes' presets (tfadv.config), the optimizer and LR schedule
(tfadv.optimizers), and the errors bad flags give (in process, fast)."""

import io
import os
import types

import keras
import pytest

from tfadv import experiment, optimizers

DEFAULTS = dict(dataset="digits", data_dir=None, preset=None, pixel_range=None, model=None, model_kwargs=[], init_checkpoint=None, eps=None,
                step_size=None, num_steps=None, random_start="uniform", norm="linf",
                attack_training=False, eps_warmup_epochs=0.0, epochs=None, batch_size=None, optimizer=None, lr=None,
                lr_boundaries=None, lr_decay=None, momentum=None, weight_decay=None, logdir="/tmp/x",
                seed=0, num_gpus=0, train_limit=None, eval_limit=None, val_limit=None,
                checkpoint_every=1, eval_attacks=None, eval_step_size=None, verbose=0)


def flags(**kw):
    return types.SimpleNamespace(**{**DEFAULTS, **kw})


def test_unset_flags_come_from_the_preset():
    cfg = experiment.config_from_flags(flags())
    assert (cfg.model, cfg.eps, cfg.num_steps, cfg.optimizer) == ("digits_cnn", 25.5, 7, "adam")
    cfg = experiment.config_from_flags(flags(eps=10.0, lr_boundaries=["3", "5"], model="lenet5"))
    assert (cfg.eps, cfg.lr_boundaries, cfg.model) == (10.0, (3, 5), "lenet5")


def test_npz_preset_by_image_shape(tmp_path):
    import numpy as np

    path = tmp_path / "m.npz"
    x = np.zeros((4, 28, 28), np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(4), x_test=x, y_test=np.arange(4))
    cfg = experiment.config_from_flags(flags(dataset=f"npz:{path}"))
    assert (cfg.model, cfg.eps, cfg.step_size, cfg.num_steps) == ("madry_mnist_cnn", 76.5, 2.55, 40)


def test_piecewise_lr_in_epochs():
    cfg = experiment.config_from_flags(flags(optimizer="sgd", lr=0.1, lr_boundaries=["2", "4"]))
    opt = optimizers.make_optimizer(cfg, steps_per_epoch=10)
    sched = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    values = [float(sched(s)) for s in (0, 19, 20, 39, 40, 100)]
    assert values == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("kw,expected", [
    (dict(dataset="imagenette"), "Unknown dataset"),
    (dict(dataset="cifar10", data_dir="/nonexistent_tfds"), "--data_dir"),
    (dict(eps=0.3), "--eps=76.5"),
    (dict(eps=300.0), "Received: 300"),
    (dict(step_size=-1.0), "Received: -1"),
    (dict(epochs=0), "Received: 0"),
    (dict(lr_boundaries=["5", "2"]), "Received"),
    (dict(lr_boundaries=["x"]), "Received"),
    (dict(pixel_range="[0,255]"), "Received"),
    (dict(preset="imagenet"), "Unknown preset"),
    (dict(precision="fp8"), "Received: 'fp8'"),
    (dict(strategy="ps"), "Received: 'ps'"),
    (dict(lr_scaling="cosine"), "Received: 'cosine'"),
    (dict(lr_warmup_epochs=-1.0), "Received: -1"),
    (dict(logical_cpus=-2), "Received: -2"),
    (dict(verbose=3), "--verbose must be 0 .*Received: 3."),
    (dict(time_budget=0.0), "--time_budget must be a positive .*Received: 0.0."),
    (dict(time_clock="gpu"), "--time_clock must be 'wall' or 'cpu'. Received: 'gpu'."),
    (dict(track_every=-1), "--track_every must be an integer >= 0. Received: -1."),
    (dict(track_every=5, track_examples=0), "--track_examples must be an integer >= 1. Received: 0."),
    (dict(track_every=5, track_attacks="clean,pgd-x"), "Received"),
    (dict(augment="crop-flip"), "Expected one of: crop, crop_flip, flip. Received: 'crop-flip'."),
])
def test_bad_flags_raise_with_the_value(kw, expected):
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        experiment.config_from_flags(flags(**kw))


def test_unknown_model_raises_when_building(tmp_path):
    cfg = experiment.config_from_flags(flags(model="resnet9000", logdir=str(tmp_path), epochs=1))
    with pytest.raises(ValueError, match="Unknown model 'resnet9000'"):
        experiment.train(cfg, defense="madry")


def _lr_values(cfg, steps_per_epoch, steps):
    opt = optimizers.make_optimizer(cfg, steps_per_epoch=steps_per_epoch)
    sched = opt._learning_rate
    return [float(sched(s)) if callable(sched) else float(sched) for s in steps]


def test_linear_lr_scaling_warms_up_then_keeps_the_epoch_drops():
    # Global batch 1024 = 4 x 256: LR 0.1 x 4 = 0.4, reached linearly from 0.1 over 5 epochs of
    # 10 steps (the tensorpack code's warm-up), then x0.1 at epochs 30 and 60.
    cfg = experiment.config_from_flags(flags(optimizer="sgd", lr=0.1, batch_size=1024,
                                             lr_scaling="linear", lr_boundaries=["30", "60"]))
    assert optimizers.base_lr(cfg) == pytest.approx(0.4) and cfg.lr_warmup_epochs == 5.0
    values = _lr_values(cfg, 10, (0, 25, 49, 50, 299, 300, 599, 600))
    assert values == pytest.approx([0.1, 0.25, 0.4 - 0.3 / 50, 0.4, 0.4, 0.04, 0.04, 0.004])


@pytest.mark.parametrize("batch,expected", [(256, 0.1), (128, 0.05)])
def test_no_warm_up_at_or_below_256(batch, expected):
    cfg = experiment.config_from_flags(flags(optimizer="sgd", lr=0.1, batch_size=batch,
                                             lr_scaling="linear", lr_boundaries=["2"]))
    assert _lr_values(cfg, 10, (0, 19, 20)) == pytest.approx([expected, expected, expected / 10])


def test_lr_scaling_comes_from_the_preset_and_old_flag_namespaces_still_resolve(monkeypatch):
    import dataclasses

    from tfadv import recipes

    digits = recipes.get("digits")
    monkeypatch.setattr(recipes, "get", lambda name: dataclasses.replace(
        digits, lr_scaling="linear", lr_warmup_epochs=2.0))
    cfg = experiment.config_from_flags(flags(batch_size=512))
    assert (cfg.lr_scaling, cfg.lr_warmup_epochs, optimizers.base_lr(cfg)) == \
        ("linear", 2.0, pytest.approx(digits.lr * 2))
    # DEFAULTS has no strategy/precision/xla/resume attributes (older scripts' namespaces).
    assert (cfg.strategy, cfg.precision, cfg.xla, cfg.resume) == ("auto", "fp32", False, True)


def test_warmup_schedule_serialises():
    sched = optimizers.WarmupPiecewiseConstant([9], [0.4, 0.04], warmup_steps=5, warmup_from=0.1)
    again = optimizers.WarmupPiecewiseConstant(**sched.get_config())
    assert [float(again(s)) for s in (0, 5, 10)] == pytest.approx([0.1, 0.4, 0.04])
    with pytest.raises(ValueError, match="Received: boundaries"):
        optimizers.WarmupPiecewiseConstant([1, 2], [0.1])


def test_verbose_2_adds_progress_lines_within_an_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "PROGRESS_SECONDS", 1e-9)  # a line after every step
    cfg = experiment.TrainConfig(
        dataset="digits", model="digits_cnn", eps=25.5, step_size=25.5, num_steps=1, epochs=1,
        batch_size=16, train_limit=32, val_limit=0, eval_limit=16, eval_attacks="clean",
        verbose=2, logdir=str(tmp_path / "run")).validate()
    out = io.StringIO()
    experiment.train(cfg, defense="madry", stream=out)
    assert "Epoch 1/1: step 1/2, " in out.getvalue()  # the first of the epoch's two steps
    # The run also saves its network as .keras, which Keras' own loader reads (safe mode).
    network = keras.models.load_model(os.path.join(cfg.logdir, "model.keras"))
    assert network.name == "digits_cnn" and network.output_shape == (None, 10)


def test_time_budget_and_tracking_write_the_robustness_log(tmp_path):
    """--track_every/--time_budget: LOGDIR/robustness_over_time.json against training seconds,
    its first record at step 0, its last at the step training stopped at (issue 20)."""
    import json

    cfg = experiment.TrainConfig(
        dataset="digits", model="digits_cnn", eps=25.5, step_size=25.5, num_steps=1, epochs=3,
        batch_size=16, train_limit=64, val_limit=0, eval_limit=16, eval_attacks="clean",
        verbose=0, track_every=3, track_examples=20, track_attacks="clean,fgsm",
        logdir=str(tmp_path / "run")).validate()
    experiment.train(cfg, defense="madry", stream=io.StringIO())
    with open(os.path.join(cfg.logdir, experiment.TRACKING_LOG)) as f:
        log = json.load(f)
    assert log["attacks"] == ["clean", "FGSM"] and log["num_examples"] == 20
    assert log["clock"] == "wall"
    assert [r["step"] for r in log["records"]] == [0, 3, 6, 9, 12]  # 3 epochs of 4 steps
    for record in log["records"]:
        assert set(record["accuracy"]) == {"clean", "FGSM"}
        assert all(0.0 <= v <= 100.0 and (v * 20 / 100) == pytest.approx(round(v * 20 / 100))
                   for v in record["accuracy"].values())  # whole images of 20


@pytest.mark.parametrize("augment,changed", [(None, False), ("none", False), ("crop_flip", True)])
def test_augment_flag_reaches_the_training_pipeline(tmp_path, augment, changed):
    """--augment: an npz dataset is not augmented by default; --augment=crop_flip crops (black
    borders come in) and flips the training images."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, size=(16, 32, 32, 3), dtype=np.uint8)  # no black pixel anywhere
    y = np.arange(16) % 10
    path = tmp_path / "c.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    cfg = experiment.config_from_flags(flags(dataset=f"npz:{path}", batch_size=16, augment=augment,
                                             logdir=str(tmp_path / "run")))
    assert cfg.augment == augment
    xb, _ = next(iter(experiment.train_input(cfg, tf.distribute.get_strategy()).dataset))
    xb = np.asarray(xb)
    originals = x.astype(np.float32) / 255.0
    unchanged = [bool(np.any(np.all(np.abs(img - originals) < 1e-6, axis=(1, 2, 3)))) for img in xb]
    black_pixels = [bool((img == 0).all(axis=-1).any()) for img in xb]
    if changed:
        assert not all(unchanged) and any(black_pixels)
    else:
        assert all(unchanged) and not any(black_pixels)
