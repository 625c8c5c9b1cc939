"""Robustness against training seconds (tfadv.evaluation.tracking; issue 20, time to robustness)."""

import json
import time

import keras
import numpy as np
import pytest

from tfadv import defenses
from tfadv.attacks import NoOpAttack
from tfadv.attacks.basic import fgsm
from tfadv.evaluation import tracking
from tests import testing

digits = testing.digits_fixture(192, 64)


def _model(seed=0):
    model = defenses.get("natural", testing.tiny_cnn(with_bn=True, seed=seed))
    model.compile(keras.optimizers.SGD(0.05))
    return model


def _specs():
    return {"clean": NoOpAttack(), "FGSM": fgsm(eps=0.1, pixel_range="[0,1]")}


def _accuracy(network, attack, x, y):
    x_adv = attack(lambda z: network(z, training=False), x, y)
    return 100.0 * float(np.mean(np.argmax(network(x_adv, training=False), -1) == y))


def test_time_to_reach_is_the_first_record_at_or_above_the_level():
    records = [{"train_seconds": 0.0, "accuracy": {"PGD-20": 3.0}},
               {"train_seconds": 5.5, "accuracy": {"PGD-20": 40.0}},
               {"train_seconds": 9.0, "accuracy": {"PGD-20": 35.0}},
               {"train_seconds": 12.0, "accuracy": {"PGD-20": 61.0}}]
    assert tracking.time_to_reach(records, "PGD-20", 40.0) == 5.5  # "at least": equal counts
    assert tracking.time_to_reach(records, "PGD-20", 50.0) == 12.0
    assert tracking.time_to_reach(records, "PGD-20", 3.0) == 0.0
    assert tracking.time_to_reach(records, "PGD-20", 61.5) is None


def test_tracker_records_every_k_steps_and_at_the_end_with_the_true_accuracies(digits, tmp_path):
    x, y, x_test, y_test = digits
    model = _model()
    path = tmp_path / "log.json"
    tracker = tracking.RobustnessTracker(x_test, y_test, _specs(), pixel_range="[0,1]", every=4,
                                         path=str(path), batch_size=24)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[tracker])  # 6 steps an epoch
    steps = [r["step"] for r in tracker.records]
    assert steps == [0, 4, 8, 12]  # the start, every 4 steps, the end (12 is also a multiple)
    assert [r["epoch"] for r in tracker.records] == [0, 0, 1, 1]
    seconds = [r["train_seconds"] for r in tracker.records]
    assert seconds == sorted(seconds) and seconds[0] < seconds[-1]
    # The last record is the final network's accuracy on the slice, computed here independently.
    network = model.network
    for label, attack in _specs().items():
        assert tracker.records[-1]["accuracy"][label] == pytest.approx(
            _accuracy(network, attack, x_test, y_test), abs=1e-6)
    written = json.loads(path.read_text())
    assert written == {"attacks": ["clean", "FGSM"], "num_examples": 64, "clock": "wall",
                       "records": json.loads(json.dumps(tracker.records))}
    # Every check reuses the attack object's one compiled function (not one per check).
    assert len(tracker.specs["FGSM"].compiled_functions()) == 1


def test_final_record_when_the_last_step_is_not_a_multiple(digits):
    x, y, x_test, y_test = digits
    model = _model()
    tracker = tracking.RobustnessTracker(x_test, y_test, {"clean": NoOpAttack()},
                                         pixel_range="[0,1]", every=5)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[tracker])
    assert [r["step"] for r in tracker.records] == [0, 5, 6]


def test_budget_stops_training_and_check_time_is_not_training_time(digits):
    x, y, x_test, y_test = digits

    class SlowNoOp(NoOpAttack):  # a check that takes 0.3 s of wall time
        def __call__(self, model_fn, x, y, **kwargs):
            time.sleep(0.3)
            return super().__call__(model_fn, x, y)

    model = _model()
    tracker = tracking.RobustnessTracker(x_test, y_test, {"clean": SlowNoOp()},
                                         pixel_range="[0,1]", every=1, budget_seconds=1e-3,
                                         batch_size=64)
    model.fit(x, y, batch_size=32, epochs=50, verbose=0, callbacks=[tracker])
    # The budget is over after the first step: training stops there (not after 300 steps).
    assert int(model.optimizer.iterations.numpy()) == 1
    assert [r["step"] for r in tracker.records] == [0, 1]
    # Two checks of >= 0.3 s each ran, but the clock counts training only.
    assert tracker.records[-1]["train_seconds"] < tracker.train_seconds() + 1e-9
    assert tracker._excluded >= 0.6


def test_clock_excludes_validation(digits):
    x, y, x_test, y_test = digits

    class SlowValidation(keras.callbacks.Callback):
        def on_test_end(self, logs=None):
            time.sleep(0.5)

    model = _model()
    clock = tracking.TrainingClock()
    model.fit(x, y, batch_size=64, epochs=2, verbose=0, validation_data=(x_test, y_test),
              callbacks=[SlowValidation(), clock])
    assert clock._excluded >= 1.0  # two validation passes of >= 0.5 s each, excluded


def test_resume_keeps_records_up_to_the_resumed_step_and_continues_the_clock(digits, tmp_path):
    x, y, x_test, y_test = digits
    path = tmp_path / "log.json"
    earlier = [{"step": 0, "epoch": 0, "train_seconds": 0.0, "accuracy": {"clean": 10.0}},
               {"step": 4, "epoch": 0, "train_seconds": 7.0, "accuracy": {"clean": 50.0}},
               {"step": 8, "epoch": 1, "train_seconds": 9.0, "accuracy": {"clean": 60.0}}]
    path.write_text(json.dumps({"attacks": ["clean"], "num_examples": 64, "records": earlier}))
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(6)  # as ResumeCheckpoint restores it: steps 7-8 again
    tracker = tracking.RobustnessTracker(x_test, y_test, {"clean": NoOpAttack()},
                                         pixel_range="[0,1]", every=4, path=str(path))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[tracker])
    assert [r["step"] for r in tracker.records] == [0, 4, 8, 12]  # the old step 8 is dropped
    assert tracker.records[1] == earlier[1]
    assert tracker.records[2]["train_seconds"] > 7.0  # continues the resumed clock


def test_a_log_of_other_attacks_is_refused_not_mixed(digits, tmp_path):
    x, y, x_test, y_test = digits
    path = tmp_path / "log.json"
    path.write_text(json.dumps({"attacks": ["clean", "PGD-20"], "num_examples": 64,
                                "records": [{"step": 0, "train_seconds": 0.0,
                                             "accuracy": {"clean": 1.0, "PGD-20": 0.0}}]}))
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(3)
    tracker = tracking.RobustnessTracker(x_test, y_test, {"clean": NoOpAttack()},
                                         pixel_range="[0,1]", every=4, path=str(path))
    with pytest.raises(ValueError, match="other attacks, another slice or another clock.*Received: "):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[tracker])


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 0}, "every must be a number of steps >= 1"),
    ({"every": 2, "budget_seconds": 0}, "budget_seconds must be a positive"),
])
def test_bad_arguments_are_refused(digits, kwargs, match):
    _, _, x_test, y_test = digits
    with pytest.raises(ValueError, match=match):
        tracking.RobustnessTracker(x_test, y_test, {"clean": NoOpAttack()}, pixel_range="[0,1]",
                                   **kwargs)
    with pytest.raises(ValueError, match="non-empty slice"):
        tracking.RobustnessTracker(x_test[:0], y_test[:0], {"clean": NoOpAttack()},
                                   pixel_range="[0,1]", every=1)


def test_cpu_clock_does_not_count_time_the_process_spends_waiting(digits):
    """``clock="cpu"`` counts this process's CPU seconds: a second of sleep inside training
    counts on the wall clock and not on the CPU clock."""
    x, y, _, _ = digits

    class Sleep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                time.sleep(1.0)

    clocks = {name: tracking.TrainingClock(clock=name) for name in ("wall", "cpu")}
    model = _model()
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0,
              callbacks=[Sleep(), *clocks.values()])
    assert clocks["wall"].train_seconds() - clocks["cpu"].train_seconds() > 0.5
    with pytest.raises(ValueError, match="Received: clock='gpu'"):
        tracking.TrainingClock(clock="gpu")


def test_a_step_of_several_iterations_checks_when_it_passes_a_multiple(digits):
    """Free AT advances the optimizer by m iterations a batch: a check comes each time the step
    passes a multiple of ``every``, not only when it lands on one."""
    x, y, x_test, y_test = digits

    class ThreeIterations(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.optimizer.iterations.assign_add(2)  # 1 + 2 per batch

    model = _model()
    tracker = tracking.RobustnessTracker(x_test, y_test, {"clean": NoOpAttack()},
                                         pixel_range="[0,1]", every=5)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[ThreeIterations(), tracker])
    # steps 3, 6, 9, 12, 15, 18: checks at 6 (passes 5), 12 (10), 15 (15), 18 (the end)
    assert [r["step"] for r in tracker.records] == [0, 6, 12, 15, 18]
