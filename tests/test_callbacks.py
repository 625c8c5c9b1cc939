"""tfadv/callbacks.py: the FOSC recorder's ring buffer (read by FoscLogger at the end of an epoch)
and L2L-DA's GeneratorCheckpoint."""

import os

import numpy as np
import pytest
import tensorflow as tf

from models.unet_generator import build_generator
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
