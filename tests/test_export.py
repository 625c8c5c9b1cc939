"""SavedModel round trip: identical logits and input gradients; atomic export; clear load errors."""

import os

import tensorflow as tf

from tfadv import export
from tests.testing import TestCase, tiny_cnn


class ExportTest(TestCase):
    def test_round_trip_gives_identical_logits_and_input_gradients(self):
        net = tiny_cnn(with_bn=True)
        # Give BN non-trivial moving statistics so inference mode matters.
        net(self.random_images((32, 8, 8, 1)), training=True)
        for v in net.non_trainable_variables:
            v.assign(v + 0.3)
        path = os.path.join(self.get_temp_dir(), "sm")
        export.export_savedmodel(net, path, pixel_range="[-1,1]", metadata={"architecture": "tiny"})
        loaded = export.load_savedmodel(path)
        self.assertEqual(loaded.pixel_range.name, "[-1,1]")
        self.assertEqual(loaded.num_classes, 10)
        self.assertEqual(loaded.metadata["architecture"], "tiny")
        x = tf.constant(self.random_images((5, 8, 8, 1), -1, 1))
        self.assertAllClose(net(x, training=False), loaded(x), atol=1e-6, rtol=1e-6)

        def grad(fn):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.nn.log_softmax(fn(x))[:, 3])
            return tape.gradient(loss, x)

        g_net, g_loaded = grad(lambda t: net(t, training=False)), grad(loaded)
        self.assertGreater(float(tf.reduce_max(tf.abs(g_net))), 0.0)
        self.assertAllClose(g_net, g_loaded, atol=1e-6, rtol=1e-5)

    def test_export_replaces_atomically_and_leaves_no_temporaries(self):
        net = tiny_cnn(with_bn=False)
        parent = self.get_temp_dir()
        path = os.path.join(parent, "sm2")
        export.export_savedmodel(net, path, pixel_range="[0,1]")
        export.export_savedmodel(net, path, pixel_range="[0,1]")  # overwrite
        self.assertTrue(export.is_savedmodel(path))
        self.assertEqual([n for n in os.listdir(parent) if n.startswith(".")], [])

    def test_failed_export_leaves_nothing_behind(self):
        net = tiny_cnn(with_bn=False)
        parent = os.path.join(self.get_temp_dir(), "fail")
        with self.assertRaises(ValueError):
            export.export_savedmodel(net, os.path.join(parent, "sm"), pixel_range="[0,2]")
        self.assertFalse(os.path.exists(os.path.join(parent, "sm")))

    def test_load_errors_name_the_path(self):
        missing = os.path.join(self.get_temp_dir(), "nope")
        with self.assertRaisesRegex(ValueError, "Received: .*nope"):
            export.load_savedmodel(missing)
        empty = os.path.join(self.get_temp_dir(), "empty")
        os.makedirs(empty)
        with self.assertRaisesRegex(ValueError, "saved_model.pb"):
            export.load_savedmodel(empty)
        # Corrupt protobuf.
        net = tiny_cnn(with_bn=False)
        path = os.path.join(self.get_temp_dir(), "corrupt")
        export.export_savedmodel(net, path, pixel_range="[0,1]")
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"\x00garbage")
        with self.assertRaisesRegex(ValueError, "Could not read the SavedModel.*Received"):
            export.load_savedmodel(path)

    def test_missing_or_corrupt_metadata_names_the_file(self):
        path = os.path.join(self.get_temp_dir(), "meta")
        export.export_savedmodel(tiny_cnn(with_bn=False), path, pixel_range="[0,1]")
        with open(os.path.join(path, export.METADATA_FILE), "w") as f:
            f.write("[1,")
        with self.assertRaisesRegex(ValueError, r"^Corrupt tfadv_metadata\.json \(.+\)\. "
                                                r"Received: '.*meta/tfadv_metadata\.json'\.$"):
            export.load_savedmodel(path)
        os.remove(os.path.join(path, export.METADATA_FILE))
        with self.assertRaisesRegex(ValueError, r"lacks tfadv_metadata\.json.*Received: '.*meta'\.$"):
            export.load_savedmodel(path)
