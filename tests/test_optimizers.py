"""tfadv.optimizers' cyclic LR (Fast AT): one triangular cycle 0 -> max -> 0 over the run."""

import dataclasses

import keras
import pytest

from tfadv import optimizers
from tfadv.config import TrainConfig


def test_the_cycle_at_its_start_peak_and_end():
    sched = optimizers.CyclicLR(0.2, total_steps=100, peak_step=50)
    values = [float(sched(s)) for s in (0, 25, 50, 75, 99, 100, 130)]
    assert values == pytest.approx([0.0, 0.1, 0.2, 0.1, 0.004, 0.0, 0.0])
    again = optimizers.CyclicLR(**sched.get_config())  # serialisable with the optimizer
    assert float(again(40)) == pytest.approx(0.16)


def test_an_asymmetric_cycle_peaks_where_asked():
    # Fast AT's MNIST release: 0 -> lr_max at 2/5 of training -> 0.
    sched = optimizers.CyclicLR(5e-3, total_steps=50, peak_step=20)
    assert [float(sched(s)) for s in (0, 10, 20, 35, 50)] == pytest.approx(
        [0.0, 2.5e-3, 5e-3, 2.5e-3, 0.0])


@pytest.mark.parametrize("kwargs", [dict(max_lr=0.0, total_steps=10, peak_step=5),
                                    dict(max_lr=0.1, total_steps=10, peak_step=0),
                                    dict(max_lr=0.1, total_steps=10, peak_step=10)])
def test_bad_cycles_say_what_was_received(kwargs):
    with pytest.raises(ValueError, match="Received"):
        optimizers.CyclicLR(**kwargs)


def test_make_optimizer_runs_one_cycle_over_the_epochs_and_ignores_boundaries():
    cfg = TrainConfig(optimizer="sgd", lr=0.2, epochs=15, lr_schedule="cyclic",
                      lr_boundaries=(5,)).validate()
    opt = optimizers.make_optimizer(cfg, steps_per_epoch=10)  # 150 updates, peak at 75
    assert isinstance(opt, keras.optimizers.SGD)
    sched = opt._learning_rate
    assert isinstance(sched, optimizers.CyclicLR)
    assert (sched.total_steps, sched.peak_step) == (150, 75)
    assert [float(sched(s)) for s in (0, 75, 150)] == pytest.approx([0.0, 0.2, 0.0])
    adam = optimizers.make_optimizer(dataclasses.replace(cfg, optimizer="adam",
                                                         lr_peak_fraction=0.4), steps_per_epoch=5)
    assert adam._learning_rate.peak_step == 30


@pytest.mark.parametrize("fields", [dict(lr_schedule="cosine"), dict(lr_peak_fraction=1.0),
                                    dict(lr_peak_fraction=0.0)])
def test_the_configuration_refuses_bad_schedules(fields):
    with pytest.raises(ValueError, match="Received"):
        TrainConfig(**fields).validate()
