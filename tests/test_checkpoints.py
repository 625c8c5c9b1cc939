"""Checkpoints: atomic, rebuildable from run_config.json, corrupt files rejected clearly."""

import json
import os

import numpy as np

from tfadv import models
from tfadv import checkpoints
from tests.testing import TestCase


class CheckpointTest(TestCase):
    def _run_dir(self):
        logdir = os.path.join(self.get_temp_dir(), "run")
        net = models.build("digits_cnn", num_classes=10, input_shape=(8, 8, 1))
        checkpoints.write_run_config(logdir, model="digits_cnn", num_classes=10, input_shape=(8, 8, 1),
                                     pixel_range="[0,1]", dataset="digits")
        return logdir, net

    def test_save_restore_round_trip_and_keep(self):
        logdir, net = self._run_dir()
        cb = checkpoints.AtomicCheckpoint(logdir, net, keep=2)
        for epoch in range(4):
            cb.on_epoch_end(epoch)
        files = checkpoints.list_checkpoints(os.path.join(logdir, "checkpoints"))
        self.assertEqual([os.path.basename(f) for f in files], ["ckpt-0003.weights.h5", "ckpt-0004.weights.h5"])
        with open(os.path.join(logdir, "checkpoints", "checkpoint.json")) as f:
            self.assertEqual(json.load(f)["epoch"], 4)
        restored, config, weights = checkpoints.restore_network(logdir)
        self.assertTrue(weights.endswith("ckpt-0004.weights.h5"))
        self.assertEqual(config["dataset"], "digits")
        x = self.random_images((3, 8, 8, 1))
        np.testing.assert_allclose(net(x), restored(x), atol=1e-6)
        self.assertEqual([n for n in os.listdir(os.path.join(logdir, "checkpoints")) if n.startswith(".")], [])

    def test_corrupt_checkpoint_is_reported_with_its_path(self):
        logdir, net = self._run_dir()
        path = checkpoints.save(os.path.join(logdir, "checkpoints"), net, 1)
        with open(path, "r+b") as f:
            f.truncate(100)
        with self.assertRaisesRegex(ValueError, r"Could not load the checkpoint.*Received: .*ckpt-0001"):
            checkpoints.restore_network(path)

    def test_missing_checkpoint_and_config(self):
        with self.assertRaisesRegex(ValueError, "No checkpoint found.*Received"):
            checkpoints.restore_network(os.path.join(self.get_temp_dir(), "missing"))
        logdir, net = self._run_dir()
        checkpoints.save(os.path.join(logdir, "checkpoints"), net, 1)
        os.remove(os.path.join(logdir, checkpoints.RUN_CONFIG))
        with self.assertRaisesRegex(ValueError, "run_config.json.*Received"):
            checkpoints.restore_network(logdir)

    def test_corrupt_run_config_names_the_file(self):
        logdir, _ = self._run_dir()
        with open(os.path.join(logdir, checkpoints.RUN_CONFIG), "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(ValueError, r"^Corrupt run_config\.json \(.+\)\. "
                                                r"Received: '.*run_config\.json'\.$"):
            checkpoints.read_run_config(logdir)
