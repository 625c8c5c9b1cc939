"""Flag resolution against presets, and the errors bad flags give (in process, fast)."""

import types

import pytest

from tfadv import experiment

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
    opt = experiment.make_optimizer(cfg, steps_per_epoch=10)
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
])
def test_bad_flags_raise_with_the_value(kw, expected):
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        experiment.config_from_flags(flags(**kw))


def test_unknown_model_raises_when_building(tmp_path):
    cfg = experiment.config_from_flags(flags(model="resnet9000", logdir=str(tmp_path), epochs=1))
    with pytest.raises(ValueError, match="Unknown model 'resnet9000'"):
        experiment.train(cfg, defense="madry")
