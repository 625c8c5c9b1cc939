"""Attack specs, the evaluation runner (pointwise worst case) and the reports."""

import json
import os

import numpy as np
import tensorflow as tf

from tfadv import attacks, evaluation
from tfadv.evaluation import specs as specs_lib
from tests.testing import TestCase, digits_split, trained_digits_model


class SpecTest(TestCase):
    def test_parse_shortcuts_in_pixel_units(self):
        s = specs_lib.parse("pgd-40", eps=76.5, pixel_range="[0,1]", step_size=2.55)
        self.assertEqual(s.label, "PGD-40")
        self.assertAlmostEqual(s.attack.eps, 0.3, places=6)
        self.assertAlmostEqual(s.attack.step_size, 0.01, places=6)
        self.assertEqual(s.attack.num_steps, 40)
        s = specs_lib.parse("cw-20", eps=8, pixel_range="[-1,1]")
        self.assertEqual(s.attack.loss, "cw")
        self.assertAlmostEqual(s.attack.eps, 16 / 255, places=6)
        self.assertAlmostEqual(s.attack.step_size, 2.5 * 16 / 255 / 20, places=6)
        s = specs_lib.parse("fgsm", eps=8, pixel_range="[0,1]")
        self.assertEqual((s.attack.num_steps, s.attack.random_start), (1, "none"))
        self.assertAlmostEqual(s.attack.step_size, 8 / 255, places=6)

    def test_parse_call_form(self):
        s = specs_lib.parse("pgd(steps=5,step=1,loss=cw,restarts=3,start=none,target=mc,eps=4)",
                            eps=8, pixel_range="[0,1]")
        a = s.attack
        self.assertEqual((a.num_steps, a.loss, a.restarts, a.random_start, a.target), (5, "cw", 3, "none", "mc"))
        self.assertAlmostEqual(a.eps, 4 / 255, places=6)
        self.assertAlmostEqual(a.step_size, 1 / 255, places=6)
        self.assertIn("3 restarts", s.label)

    def test_split_and_errors(self):
        self.assertEqual(specs_lib.split_specs("clean,pgd(steps=2,loss=cw),fgsm"),
                         ["clean", "pgd(steps=2,loss=cw)", "fgsm"])
        for bad in ["bim-10", "pgd(steps=2", "pgd(foo=1)", "pgd(steps=x)", "pgd(eps=0.3)"]:
            with self.assertRaisesRegex(ValueError, "Received"):
                specs_lib.parse_list(bad, eps=8, pixel_range="[0,1]")
        with self.assertRaisesRegex(ValueError, "twice"):
            specs_lib.parse_list("pgd-10,pgd10", eps=8, pixel_range="[0,1]")


class RunnerTest(TestCase):
    def test_worst_case_is_pointwise_and_report_files(self):
        model = trained_digits_model()
        _, _, x, y = digits_split(num_test=200)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
        specs = evaluation.parse_list("clean,fgsm,pgd-10,cw-10", eps=25.5, pixel_range="[0,1]")
        result = evaluation.evaluate(model, ds, specs, pixel_range="[0,1]", progress=None)
        self.assertEqual(result.num_examples, 200)
        acc = result.accuracies()
        clean = acc["clean"]
        self.assertAlmostEqual(clean, float(np.mean(np.argmax(model(x), -1) == y)), places=6)
        self.assertLess(acc["PGD-10"], clean)
        worst = np.logical_and.reduce([r.correct for r in result.results.values()])
        self.assertAlmostEqual(acc["worst case"], worst.mean())
        self.assertLessEqual(acc["worst case"], min(v for k, v in acc.items() if k != "worst case"))
        for r in result.results.values():
            self.assertLessEqual(r.max_linf, 0.1 + 1e-6)
            self.assertEqual((r.nan_count, r.out_of_range), (0, 0))
        self.assertEqual(result.results["PGD-10"].forward_passes, 200 * 11)
        out = self.get_temp_dir()
        obj = evaluation.write(result, out, metadata={"dataset": "digits"}, row="tiny")
        with open(os.path.join(out, "robustness.json")) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(obj)))
        with open(os.path.join(out, "robustness.md")) as f:
            text = f.read()
        self.assertIn("| Acc.(%) | clean | FGSM | PGD-10 | CW-10 | worst case |", text)

    def test_rejects_images_outside_range_and_bad_labels(self):
        model = trained_digits_model()
        _, _, x, y = digits_split(num_test=16)
        specs = {"clean": attacks.get("noop")}
        with self.assertRaisesRegex(ValueError, "pixel range.*Received"):
            evaluation.evaluate(model, [(x * 255, y)], specs, pixel_range="[0,1]", progress=None)
        with self.assertRaisesRegex(ValueError, r"labels.*Received.*max=12"):
            evaluation.evaluate(model, [(x, y * 0 + 12)], specs, pixel_range="[0,1]", progress=None)
