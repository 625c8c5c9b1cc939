"""Distributed evaluation (``evaluate(distribute=...)``): the same per-example results as one device.

Logical CPU devices must be configured before TensorFlow initialises, so the comparisons run this
file as a script in a fresh process (``python tests/evaluation/test_distributed_eval.py compare N``):
it evaluates a trained digits CNN (BatchNorm in inference mode) on one device and on a
MirroredStrategy over N logical CPUs and prints, as JSON, whether the per-example masks and the
adversarial examples are equal. 29 examples in batches of 7 end with a batch of one example, fewer
than the replicas: the other replicas' slices are empty and never reach the model.
"""

import json
import os
import signal
import sys

import pytest

if __name__ != "__main__":
    from tests.testing import run_python
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

NUM_EXAMPLES, BATCH = 29, 7
# A small-budget AutoAttack: every member runs (APGD-CE, APGD-T, FAB-T, Square) in seconds.
AA_BUDGETS = {"apgd_ce": {"n_iter": 8}, "apgd_t": {"n_iter": 8, "n_target_classes": 3},
              "fab_t": {"n_iter": 8, "n_target_classes": 3}, "square": {"n_queries": 40}}


def _setup(replicas):
    import tensorflow as tf

    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    from tests import testing

    model = testing.trained_digits_model()
    _, _, x, y = testing.digits_split()
    x, y = x[:NUM_EXAMPLES], y[:NUM_EXAMPLES].astype("int32")
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, NUM_EXAMPLES, BATCH)]
    strategy = None
    if replicas > 1:
        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")[:replicas]])
    return model, x, y, batches, strategy


def _specs():
    from tfadv import attacks
    from tfadv.evaluation import specs as specs_lib

    specs = specs_lib.parse_list("clean,pgd-10,cw-5", eps=25.5, pixel_range="[0,1]", seed=0)
    specs["AutoAttack"] = attacks.get("autoattack", eps=0.1, seed=0, attack_params=AA_BUDGETS)
    return specs


def _compare(replicas):
    """1 device vs ``replicas`` mirrored logical CPUs: masks, attacked points, AutoAttack's
    per-member counts, and the adversarial examples of PGD and AutoAttack called directly."""
    import numpy as np
    import tensorflow as tf

    from tfadv import evaluation
    from tfadv.evaluation import sharding

    model, x, y, batches, strategy = _setup(replicas)
    out = {"replicas": strategy.num_replicas_in_sync, "evaluations": {}}
    for only_robust in (False, True):
        one, many = (evaluation.evaluate(model, batches, _specs(), pixel_range="[0,1]",
                                         progress=None, only_robust=only_robust,
                                         distribute=d) for d in (None, strategy))
        out["evaluations"][str(only_robust)] = {
            label: {"mask_equal": bool(np.array_equal(r.correct, many.results[label].correct)),
                    "robust": int(r.correct.sum()), "examples": int(r.correct.size),
                    "attacked_equal": r.points_attacked == many.results[label].points_attacked,
                    "components_equal": [(c["attack"], c["attacked"], c["fooled"]) for c in
                                         r.components] == [(c["attack"], c["attacked"], c["fooled"])
                                                           for c in many.results[label].components],
                    "max_linf": r.max_linf, "max_linf_equal": r.max_linf == many.results[
                        label].max_linf}
            for label, r in one.results.items()}
    sharded = sharding.shard(model, strategy)
    specs = _specs()
    xs, ys = tf.constant(x[:BATCH + 2]), tf.constant(y[:BATCH + 2])
    for label in ("PGD-10", "AutoAttack"):
        attack = specs[label].attack if label != "AutoAttack" else specs[label]
        run = (tf.function(lambda fn, a, b, attack=attack: attack(fn, a, b))
               if attack.graph_safe else attack)
        single = run(lambda images: model(images, training=False), xs, ys).numpy()
        multi = run(sharded, xs, ys).numpy()
        out[label] = {"max_diff": float(np.abs(single - multi).max()),
                      "moved": float(np.abs(single - x[:BATCH + 2]).max())}
    print("RESULT " + json.dumps(out))


def _diagnose(replicas, out_dir):
    """The diagnostics checklist and the analyses on one device and on ``replicas`` logical CPUs:
    their records, sweeps, gradient statistics and FOSC summaries."""
    from tfadv.evaluation import analyses, diagnostics

    model, x, y, _, strategy = _setup(replicas)
    source = _setup_source()
    out = {}
    for name, distribute in (("one", None), ("many", strategy)):
        report = diagnostics.run_diagnostics(
            model, (x, y), eps=0.1, pixel_range="[0,1]", eps_multipliers=(1, 4), steps=(1, 5),
            sweep_steps=5, transfer_source=source, square_params={"n_queries": 30},
            batch_size=BATCH, distribute=distribute)
        obj = analyses.run_analyses(model, (x, y), eps=0.1, pixel_range="[0,1]", steps=(1, 5),
                                    eps_multipliers=(1, 4), sweep_steps=5, batch_size=BATCH,
                                    out_dir=os.path.join(out_dir, name), distribute=distribute)
        out[name] = {"records": {r.name: [r.status, r.numbers] for r in report.records},
                     "sweeps": report.sweeps, "gradients": obj["gradient_norm_sq"],
                     "fosc": obj["fosc"], "plot_sweeps": [obj["accuracy_vs_steps"],
                                                          obj["accuracy_vs_eps"]]}
    print("RESULT " + json.dumps(out, default=str))


def _setup_source():
    from tests import testing

    return testing.tiny_cnn(with_bn=False, seed=7, name="source")


class _KillingBatches:
    """The batches of an evaluation; the process kills itself (SIGKILL: no cleanup, no final save)
    when the ``kill_at``-th batch over all passes is requested."""

    def __init__(self, batches, kill_at):
        self.batches, self.kill_at, self.served = batches, kill_at, 0

    def __iter__(self):
        for batch in self.batches:
            self.served += 1
            if self.kill_at and self.served == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def _resume(replicas, state_path, kill_at):
    """A resumable distributed evaluation, killed at batch ``kill_at`` (0: run to the end)."""
    import numpy as np

    from tfadv import evaluation

    model, _, _, batches, strategy = _setup(replicas)
    result = evaluation.evaluate(model, _KillingBatches(batches, kill_at), _specs(),
                                 pixel_range="[0,1]", progress=None, only_robust=True,
                                 state_path=state_path, distribute=strategy,
                                 identity={"model": "digits_cnn"})
    print("RESULT " + json.dumps({label: np.asarray(r.correct, int).tolist()
                                  for label, r in result.results.items()}))


def _result(proc):
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _check_equal(out, replicas):
    assert out["replicas"] == replicas
    for only_robust, results in out["evaluations"].items():
        assert set(results) == {"clean", "PGD-10", "CW-5", "AutoAttack"}
        for label, r in results.items():
            assert r["examples"] == NUM_EXAMPLES, (only_robust, label)
            assert r["mask_equal"] and r["attacked_equal"] and r["max_linf_equal"], \
                (only_robust, label, r)
            assert r["components_equal"], (only_robust, label)
        # Not a vacuous comparison: the model is mostly right on clean images and attacks fool it.
        assert results["clean"]["robust"] >= NUM_EXAMPLES * 3 // 4
        assert results["AutoAttack"]["robust"] < results["clean"]["robust"]
        assert results["AutoAttack"]["max_linf"] <= 0.1 + 1e-6
    for label in ("PGD-10", "AutoAttack"):
        assert out[label]["moved"] > 0.05, label
    # PGD's steps are signs of the gradient: bitwise equal. APGD-CE's and FAB's floating-point
    # steps may differ in the last bit (graph rewrites and kernels differ between the compiled
    # one-device and sharded graphs, and FAB's Jacobians are taken over other batch sizes); the
    # masks above are exact.
    assert out["PGD-10"]["max_diff"] == 0.0, out["PGD-10"]
    assert out["AutoAttack"]["max_diff"] <= 1e-6, out["AutoAttack"]


def test_two_logical_cpus_give_the_one_device_masks_and_adversarial_examples():
    _check_equal(_result(run_python(["compare", "2"], script=os.path.abspath(__file__),
                                    timeout=600)), 2)


@pytest.mark.slow
def test_eight_logical_cpus_give_the_one_device_masks_and_adversarial_examples():
    _check_equal(_result(run_python(["compare", "8"], script=os.path.abspath(__file__),
                                    timeout=900)), 8)


def test_diagnostics_and_analyses_on_two_logical_cpus_give_the_one_device_numbers(tmp_path):
    import numpy as np

    out = _result(run_python(["diagnose", "2", str(tmp_path)], script=os.path.abspath(__file__),
                             timeout=600))
    one, many = out["one"], out["many"]
    assert sorted(one["records"]) == ["determinism", "eps_sweep", "fgsm", "square",
                                      "steps_sweep", "transfer", "zero_gradients"]
    # Accuracies and counts come from per-example masks: exactly equal.
    assert one["records"] == many["records"] and one["sweeps"] == many["sweeps"]
    assert one["plot_sweeps"] == many["plot_sweeps"]
    assert one["sweeps"]["steps"]["5"] < one["sweeps"]["clean_accuracy"]  # the attacks bite
    # Gradient norms and FOSC are sums of floats taken over other slices: equal to rounding.
    for key in ("gradients", "fosc"):
        for label, stats in one[key].items():
            if isinstance(stats, dict):
                for name, value in stats.items():
                    np.testing.assert_allclose(many[key][label][name], value, rtol=1e-5,
                                               atol=1e-7, err_msg=f"{key} {label} {name}")
            else:
                assert many[key][label] == stats, (key, label)


def test_a_killed_distributed_evaluation_resumes_to_the_same_result(tmp_path):
    script = os.path.abspath(__file__)
    reference = _result(run_python(["resume", "2", str(tmp_path / "reference.npz"), "0"],
                                   script=script, timeout=600))
    state = str(tmp_path / "state.npz")
    # 5 batches per pass: killed while AutoAttack (the fourth pass) is at its third batch.
    killed = run_python(["resume", "2", state, str(3 * 5 + 3)], script=script, check=False,
                        timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert os.path.exists(state)
    import numpy as np

    with np.load(state, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
    progress = {entry["label"]: (entry["done"], entry["batches"]) for entry in header["attacks"]}
    assert progress == {"clean": (True, 5), "PGD-10": (True, 5), "CW-5": (True, 5),
                        "AutoAttack": (False, 2)}
    resumed = _result(run_python(["resume", "2", state, "0"], script=script, timeout=600))
    assert resumed == reference
    # The state does not depend on the device layout: one device finishes a 2-replica run's file.
    assert _result(run_python(["resume", "1", state, "0"], script=script, timeout=600)) == reference


def test_the_script_on_two_logical_cpus_saves_the_one_device_per_example_results(tmp_path):
    import numpy as np

    from tests import testing
    from tests.testing import run_script

    path = str(tmp_path / "net.keras")
    testing.trained_digits_model().save(path)
    saved = {}
    for name, extra in (("one", []), ("two", ["--num_gpus=2", "--logical_cpus=2"])):
        out_dir = tmp_path / name
        proc = run_script("eval_robustness.py", f"--model_path={path}", "--dataset=digits",
                          "--eps=25.5", f"--limit={NUM_EXAMPLES}", f"--batch_size={BATCH}",
                          "--attacks=clean,pgd-5,apgd_ce-5", "--resume", f"--out_dir={out_dir}",
                          *extra)
        assert ("split over 2 replica(s) (MirroredStrategy)" in proc.stdout) == bool(extra)
        with np.load(out_dir / "eval_state.npz", allow_pickle=False) as data:
            saved[name] = {k: data[k] for k in data.files if k.endswith("_correct")}
        with open(out_dir / "robustness.json") as f:
            saved[name]["accuracy"] = json.load(f)["accuracy"]
    assert sorted(saved["one"]) == ["a0_correct", "a1_correct", "a2_correct", "accuracy"]
    for key, value in saved["one"].items():
        if key != "accuracy":
            assert value.shape == (NUM_EXAMPLES,)
            np.testing.assert_array_equal(value, saved["two"][key], err_msg=key)
    assert saved["one"]["accuracy"] == saved["two"]["accuracy"]
    assert saved["one"]["accuracy"]["PGD-5"] < saved["one"]["accuracy"]["clean"]


def test_a_strategy_must_be_a_strategy_and_several_workers_are_refused(tmp_path):
    import tensorflow as tf

    from tests.testing import run_script
    from tfadv import distribute as distribute_lib
    from tfadv.evaluation import sharding

    def model_fn(images):
        return images

    with pytest.raises(ValueError, match=r"tf.distribute.Strategy. Received: distribute='gpu'"):
        sharding.shard(model_fn, "gpu")
    assert sharding.shard(model_fn, tf.distribute.get_strategy()) is model_fn
    assert sharding.shard(model_fn, None) is model_fn
    assert isinstance(sharding.shard(model_fn, tf.distribute.MirroredStrategy(["/cpu:0"])),
                      sharding.ShardedModelFn)

    class Resolver:
        task_type, task_id = "worker", 0

        def __init__(self, workers):
            self.workers = workers

        def cluster_spec(self):
            return tf.train.ClusterSpec({"worker": [f"localhost:{i}" for i in range(self.workers)]})

    class Strategy:
        def __init__(self, workers):
            self.cluster_resolver = Resolver(workers)

    assert distribute_lib.is_multi_worker(Strategy(2))
    assert not distribute_lib.is_multi_worker(Strategy(1))
    assert not distribute_lib.is_multi_worker(tf.distribute.get_strategy())
    # The script's --strategy=multi_worker splits the evaluation by batches
    # (tfadv.evaluation.workers; tests/scripts/test_eval_multi_worker.py): it needs TF_CONFIG.
    proc = run_script("eval_robustness.py", f"--model_path={tmp_path / 'none.keras'}",
                      "--strategy=multi_worker", check=False)
    assert proc.returncode != 0
    assert "TF_CONFIG environment variable, which is not set" in proc.stderr + proc.stdout


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "compare":
        _compare(int(sys.argv[2]))
    elif mode == "diagnose":
        _diagnose(int(sys.argv[2]), sys.argv[3])
    elif mode == "resume":
        _resume(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(f"Unknown mode. Received: {mode!r}.")
