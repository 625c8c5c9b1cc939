"""Multi-worker evaluation (tfadv/evaluation/workers.py): workers split the evaluation by whole
attack batches, the chief merges their shards in example order. Here the workers run one after
another in this process (they share only the output directory, as on a cluster); the slow test in
tests/scripts/test_eval_multi_worker.py runs two processes with TF_CONFIG."""

import functools
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks
from tfadv.evaluation import evaluate, specs as specs_lib, workers

NUM, BATCH = 23, 4  # 6 batches, the last of 3 examples
AA_BUDGETS = {"apgd_ce": {"n_iter": 5}, "apgd_t": {"n_iter": 5, "n_target_classes": 2},
              "fab_t": {"n_iter": 5, "n_target_classes": 2}, "square": {"n_queries": 20}}


@pytest.fixture(scope="module")
def setup():
    model = testing.tiny_cnn(with_bn=False, seed=3)
    x = np.random.default_rng(0).uniform(0, 1, (NUM, 8, 8, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), -1).astype("int32")  # every point clean-correct
    y[::5] = (y[::5] + 1) % 10  # and some not
    return model, [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, NUM, BATCH)]


@functools.lru_cache(maxsize=None)
def _specs():
    """One set of attack objects for every worker of the module: their compiled functions are
    reused (a worker of a cluster builds its own; the results are the same)."""
    specs = specs_lib.parse_list("clean,fgsm,pgd(steps=3,start=none)", eps=12.0,
                                 pixel_range="[0,1]", seed=0)
    specs["AutoAttack"] = attacks.get("autoattack", eps=0.05, seed=0, attack_params=AA_BUDGETS)
    return specs


def _run(model, data, out_dir, index, count, specs=None, **kwargs):
    return workers.evaluate_on_workers(
        model, data, specs or _specs(), worker=workers.Worker(index, count), out_dir=out_dir,
        batch_size=BATCH, num_examples=NUM, pixel_range="[0,1]", only_robust=True, progress=None,
        identity={"model": "tiny"}, poll_s=0.01, **kwargs)


def _assert_same(merged, single):
    assert list(merged.results) == list(single.results)
    for label, one in single.results.items():
        got = merged.results[label]
        np.testing.assert_array_equal(got.correct, one.correct, err_msg=label)
        assert got.points_attacked == one.points_attacked, label
        assert got.max_linf == one.max_linf and got.max_l2 == one.max_l2, label
        assert [(c["attack"], c["attacked"], c["fooled"]) for c in got.components] == \
            [(c["attack"], c["attacked"], c["fooled"]) for c in one.components], label


def test_worker_from_tf_config_orders_chief_first():
    cluster = {"chief": ["h:1"], "worker": ["h:2", "h:3"]}
    for task, expected in ((("chief", 0), 0), (("worker", 0), 1), (("worker", 1), 2)):
        raw = json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}})
        worker = workers.Worker.from_tf_config(raw)
        assert (worker.index, worker.count, worker.chief) == (expected, 3, expected == 0)
    with pytest.raises(ValueError, match="index"):
        workers.Worker.from_tf_config(json.dumps({"cluster": cluster,
                                                  "task": {"type": "worker", "index": 2}}))
    with pytest.raises(ValueError, match=r"Received: index=2, count=2\."):
        workers.Worker(2, 2)


def test_batches_partition_round_robin():
    assert workers.batch_sizes(23, 4) == [4, 4, 4, 4, 4, 3]
    assert workers.batch_sizes(8, 4) == [4, 4]
    batches = list(range(7))
    parts = [list(workers.take_batches(batches, workers.Worker(i, 3))) for i in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    ds = tf.data.Dataset.range(10).batch(3).map(lambda v: (v, -v))
    got = [[int(x[0]) for x, _ in workers.take_batches(ds, workers.Worker(i, 2))] for i in range(2)]
    assert got == [[0, 6], [3, 9]]


def test_refuses_attacks_whose_batch_result_depends_on_earlier_calls():
    seeded_start = specs_lib.parse_list("clean,pgd-5", eps=8.0, pixel_range="[0,1]", seed=0)
    with pytest.raises(ValueError, match=r"Received: \['PGD-5'\]\."):
        workers.check_reproducible(seeded_start)
    workers.check_reproducible(_specs())  # noop, FGSM, PGD without a random start, AutoAttack
    unseeded = {"APGD": attacks.get("apgd_ce", eps=0.1, seed=None)}
    with pytest.raises(ValueError, match="APGD"):
        workers.check_reproducible(unseeded)


def test_workers_merge_to_the_one_device_result(setup, tmp_path):
    model, data = setup
    single = evaluate(model, data, _specs(), pixel_range="[0,1]", only_robust=True, progress=None)
    out = str(tmp_path)
    assert _run(model, data, out, 1, 3) is None  # a non-chief writes its shard only
    assert _run(model, data, out, 2, 3) is None
    assert sorted(os.listdir(os.path.join(out, "shards"))) == [
        f"worker-{i}-of-3.npz" for i in (1, 2)]
    merged = _run(model, data, out, 0, 3)
    assert merged.num_examples == NUM
    assert 0 < merged.results["AutoAttack"].correct.sum() < merged.results["clean"].correct.sum()
    _assert_same(merged, single)


def test_interrupted_worker_resumes_its_shard(setup, tmp_path):
    model, data = setup
    out = str(tmp_path)

    class Dying:  # worker 1's batches are 1, 3, 5: it dies in its 4th attack before batch 5
        passes = 0

        def __iter__(self):
            Dying.passes += 1
            for batch, item in enumerate(data):
                if Dying.passes == 4 and batch == 5:
                    raise KeyboardInterrupt("killed")
                yield item

    with pytest.raises(KeyboardInterrupt):
        _run(model, Dying(), out, 1, 2)
    with np.load(workers.shard_path(out, 1, 2)) as saved:
        header = json.loads(str(saved["header"]))
    assert [(e["done"], e["batches"]) for e in header["attacks"]] == \
        [(True, 3), (True, 3), (True, 3), (False, 2)]  # clean..PGD done, AutoAttack on 2 batches
    with pytest.raises(ValueError, match=r"worker-1-of-2\.npz \(.*AutoAttack: 8 examples\)"):
        _run(model, data, out, 0, 2, timeout_s=0.05)  # the chief names the missing shard
    assert _run(model, data, out, 1, 2) is None  # restarted: continues its shard
    merged = _run(model, data, out, 0, 2)
    uninterrupted = str(tmp_path / "again")
    _run(model, data, uninterrupted, 1, 2)
    _assert_same(merged, _run(model, data, uninterrupted, 0, 2))


def test_chief_refuses_a_shard_of_another_configuration(setup, tmp_path):
    model, data = setup
    out = str(tmp_path)
    clean = specs_lib.parse_list("clean", eps=8.0, pixel_range="[0,1]")
    workers.evaluate_on_workers(model, data, clean, worker=workers.Worker(1, 2), out_dir=out,
                                batch_size=BATCH, num_examples=NUM, pixel_range="[0,1]",
                                progress=None, identity={"model": "other"})
    with pytest.raises(ValueError, match=r"different configuration \(model: \"other\""):
        _run(model, data, out, 0, 2, specs=clean, timeout_s=5)
