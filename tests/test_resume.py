"""Resumable runs: a killed run continues from LOGDIR/backup with the same epoch count, numbering,
optimizer state and LR schedule, losing no completed epoch."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks, checkpoints, defenses, experiment


class Crash(keras.callbacks.Callback):
    """Stands for a kill right after an epoch's end-of-epoch callbacks."""

    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            raise KeyboardInterrupt(f"killed after epoch {epoch + 1}")


class Seen(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.lrs, self.iterations = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        # The LR of the epoch's first update.
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_epoch_end(self, epoch, logs=None):
        self.iterations = int(self.model.optimizer.iterations.numpy())


def _cfg(logdir, **kw):
    base = dict(dataset="digits", model="digits_cnn", eps=25.5, step_size=25.5, num_steps=1,
                epochs=4, batch_size=16, optimizer="sgd", lr=0.1, lr_boundaries=(3,),
                train_limit=48, val_limit=0, eval_limit=16, eval_attacks="clean", verbose=0,
                logdir=str(logdir))
    base.update(kw)
    return experiment.TrainConfig(**base).validate()


def test_killed_run_resumes_with_the_same_epochs_lr_and_optimizer_state(tmp_path):
    cfg = _cfg(tmp_path / "run")
    first = Seen()
    with pytest.raises(KeyboardInterrupt):
        experiment.train(cfg, defense="madry", extra_callbacks=[first, Crash(after_epoch=1)])
    assert first.epochs == [0, 1]
    state = checkpoints.ResumeCheckpoint(cfg.logdir).state()
    assert state["epoch"] == 2  # the epoch that completed before the kill was not lost

    second = Seen()
    model, result = experiment.train(cfg, defense="madry", extra_callbacks=[second])
    assert second.epochs == [2, 3]  # numbering continues; 4 epochs in all
    # 48 images / 16 = 3 updates per epoch: the optimizer's step counter (hence the LR schedule)
    # was restored, and the drop at epoch 3 lands where an uninterrupted run has it.
    assert second.iterations == 4 * 3
    assert second.lrs == pytest.approx([0.1, 0.01])
    assert checkpoints.ResumeCheckpoint(cfg.logdir).state()["epoch"] == 4
    names = sorted(os.listdir(os.path.join(cfg.logdir, "checkpoints")))
    assert "ckpt-0004.weights.h5" in names and "ckpt-0005.weights.h5" not in names
    assert [n for n in os.listdir(os.path.join(cfg.logdir, "backup"))
            if n.endswith(".h5")] == ["state-0004.weights.h5"]
    assert result is not None

    # A finished run re-run with the same flags trains nothing more.
    third = Seen()
    experiment.train(cfg, defense="madry", extra_callbacks=[third])
    assert third.epochs == []


def _tiny_model(seed=0):
    net = testing.tiny_cnn(seed=seed, with_bn=True)
    model = defenses.get("madry", net, attack=attacks.get("fgsm", eps=0.1))
    model.k = tf.Variable(0, dtype=tf.int32, trainable=False)  # a schedule variable (curriculum k)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    return model


def test_backup_restores_weights_momentum_and_schedule_variables(tmp_path):
    x, y, _, _ = testing.digits_split(num_train=32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = _tiny_model()
    model.k.assign(5)
    model.fit(ds, epochs=1, verbose=0, callbacks=[checkpoints.ResumeCheckpoint(str(tmp_path))])
    restored = _tiny_model(seed=1)
    callback = checkpoints.ResumeCheckpoint(str(tmp_path))
    callback.set_model(restored)
    callback.on_train_begin()
    assert callback.resumed_epoch == 1 and int(restored.k.numpy()) == 5
    assert int(restored.optimizer.iterations.numpy()) == 2
    for a, b in zip(model.network.get_weights(), restored.network.get_weights()):
        np.testing.assert_array_equal(a, b)  # BN moving statistics included
    momenta = [v.numpy() for v in restored.optimizer.variables if "momentum" in v.path]
    assert momenta and all(np.abs(m).max() > 0 for m in momenta)
    np.testing.assert_array_equal(
        momenta[0], [v.numpy() for v in model.optimizer.variables if "momentum" in v.path][0])
    # --noresume: the backup is discarded and training starts at epoch 0.
    callback.discard()
    fresh = checkpoints.ResumeCheckpoint(str(tmp_path))
    fresh.set_model(_tiny_model())
    fresh.on_train_begin()
    assert fresh.state() is None and fresh.resumed_epoch == 0


def test_corrupt_state_is_reported_with_its_path(tmp_path):
    os.makedirs(tmp_path / "backup")
    (tmp_path / "backup" / "state.json").write_text("{\"epoch\": ")
    with pytest.raises(ValueError, match=r"--noresume.*Received: '.*state.json'"):
        checkpoints.ResumeCheckpoint(str(tmp_path)).state()
    (tmp_path / "backup" / "state.json").write_text(json.dumps({"epoch": 3,
                                                                 "weights": "state-0003.weights.h5"}))
    callback = checkpoints.ResumeCheckpoint(str(tmp_path))
    callback.set_model(_tiny_model())
    with pytest.raises(ValueError, match=r"Received: '.*state-0003.weights.h5'"):
        callback.on_train_begin()


@pytest.mark.slow
def test_sigkilled_script_resumes_where_it_stopped(tmp_path):
    logdir = str(tmp_path / "killed")
    args = [sys.executable, os.path.join(testing.REPO_ROOT, "scripts", "train_madry.py"),
            "--epochs=5", "--train_limit=64", "--batch_size=16", "--num_steps=1", "--val_limit=0",
            "--eval_limit=16", "--eval_attacks=clean", f"--logdir={logdir}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=testing.REPO_ROOT)
    proc = subprocess.Popen(args, cwd=testing.REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state_path = os.path.join(logdir, "backup", "state.json")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(state_path) and json.load(open(state_path))["epoch"] >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = json.load(open(state_path))["epoch"]
    assert 2 <= done < 5, done
    # The rerun waits for its end: the shared helper (only the killed run needs Popen).
    out = testing.run_python(args[2:], script=args[1], timeout=600)
    assert f"Epoch {done + 1}/5" in out.stdout and f"Epoch {done}/5" not in out.stdout
    assert f"resumed at epoch {done}" in out.stdout
    assert json.load(open(state_path))["epoch"] == 5
    assert os.path.exists(os.path.join(logdir, "checkpoints", "ckpt-0005.weights.h5"))
