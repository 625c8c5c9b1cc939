"""tfadv/callbacks.py: the FOSC recorder's ring buffer (read by FoscLogger at the end of an epoch),
L2L-DA's GeneratorCheckpoint and the ProgressLogger's lines within an epoch."""

import io
import itertools
import os

import keras

import numpy as np
import pytest
import tensorflow as tf

from tfadv.models.unet_generator import build_generator
from tests import testing
from tfadv import callbacks as callbacks_lib
from tfadv.attacks import l2lda_generator


def test_recorder_ring_buffer_in_graph_mode():
    rec = callbacks_lib.FoscRecorder(capacity=5)
    record = tf.function(rec.record)
    record(tf.constant([1.0, 2.0]))
    record(tf.constant([3.0]))
    np.testing.assert_array_equal(rec.read(), [1.0, 2.0, 3.0])
    record(tf.constant([4.0, 5.0, 6.0, 7.0]))  # 7 values: the buffer keeps the last five
    assert sorted(rec.read().tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    rec.reset()
    assert rec.read().size == 0
    with pytest.raises(ValueError, match="Received"):
        callbacks_lib.FoscRecorder(capacity=0)


def test_generator_checkpoint_saves_every_nth_epoch_with_its_epoch(tmp_path):
    gen = build_generator(10, (8, 8, 1), base_filters=4)
    directory = str(tmp_path / l2lda_generator.GENERATOR_DIR)
    checkpoint = callbacks_lib.GeneratorCheckpoint(directory, gen, every=2)
    checkpoint.on_epoch_end(0)
    assert not os.path.exists(directory)
    checkpoint.on_epoch_end(1)
    with open(os.path.join(directory, l2lda_generator.GENERATOR_CONFIG), encoding="utf-8") as f:
        assert '"epoch": 2' in f.read()
    loaded = l2lda_generator.load_generator(str(tmp_path))  # found from the run directory
    assert loaded.l2lda_config == gen.l2lda_config


class _EpochEnd(keras.callbacks.Callback):
    """Marks the end of every epoch in the stream the progress lines go to."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        self.stream.write(f"END {epoch + 1}\n")


def test_progress_lines_appear_within_the_epoch_and_its_validation():
    x, y, xv, yv = testing.digits_split(num_train=64, num_test=24)
    net = testing.tiny_cnn(seed=3)
    net.compile(optimizer=keras.optimizers.SGD(0.01), metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    out = io.StringIO()
    clock = itertools.count(1.0).__next__  # a fake clock: one second per reading
    logger = callbacks_lib.ProgressLogger(out, every=2.5, clock=clock)
    net.fit(x, y, batch_size=8, epochs=2, validation_data=(xv, yv), validation_batch_size=8,
            callbacks=[logger, _EpochEnd(out)], verbose=0)
    lines = out.getvalue().splitlines()
    # Epoch 1 starts at t=1; its 8 steps end at t=2..9: a line at t=4 (3 steps) and t=7 (6 steps);
    # validation starts at t=10, its 3 steps end at t=11..13: a line at t=13. All before the end.
    expected = ["Epoch 1/2: step 3/8, 1s/step, elapsed 3s, eta 5s",
                "Epoch 1/2: step 6/8, 1s/step, elapsed 6s, eta 2s",
                "Epoch 1/2: validation step 3, 1s/step, elapsed 3s",
                "END 1",
                "Epoch 2/2: step 3/8, 1s/step, elapsed 3s, eta 5s"]
    assert [line.split(" - ")[0] for line in lines[:5]] == expected
    assert lines[0].split(" - ")[1:] and all(
        part.split(": ")[0] in ("loss", "accuracy") for part in lines[0].split(" - ")[1:])
    assert lines[-1] == "END 2"
    out.seek(0)
    out.truncate()
    net.evaluate(xv, yv, batch_size=8, callbacks=[logger], verbose=0)  # outside fit: a total
    assert out.getvalue().startswith("step 3/3, 1s/step, elapsed 3s, eta 0s - ")


@pytest.mark.parametrize("every", [0, -1.0, True, "30"])
def test_progress_interval_must_be_positive_seconds(every):
    with pytest.raises(ValueError, match=f"Received: {every!r}."):
        callbacks_lib.ProgressLogger(every=every)
