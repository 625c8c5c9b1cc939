"""Issue 16 section 5: multi-host training splits the epoch.

Each worker's input pipeline (``strategy.distribute_datasets_from_function``) reads a disjoint,
equal share of the training examples, taken before shuffling (ImageNet: of the file list, before
decoding), so the union of what the workers read in one epoch is the data set, without repeats,
less at most ``workers - 1`` examples when the count does not divide, and every worker takes the
same number of steps.

The two-process test runs this file as a script in each worker (``python
tests/reliability/test_multi_worker_input.py worker ROOT OUT``) with ``TF_CONFIG`` naming a
2-worker localhost cluster.
"""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest  # also in the worker processes: the module's decorators use it

if __name__ != "__main__":
    import tensorflow as tf

    from tests.data.imagenet_testing import write_tiny_ilsvrc12
    from tests.testing import REPO_ROOT, free_ports

    from tfadv import data, experiment

NUM_EXAMPLES = 21  # odd: two workers take 10 each, one example is in neither shard
GLOBAL_BATCH = 4
EPOCHS = 2


def _indexed_npz(path, n=NUM_EXAMPLES):
    """An npz data set whose example ``k`` has label ``k`` and every pixel ``k``."""
    x = np.repeat(np.arange(n, dtype=np.uint8), 16).reshape(n, 4, 4, 1)
    y = np.arange(n)
    np.savez(path, x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    return f"npz:{path}"


class _OneOfTwoWorkers:
    """Stands for worker ``index`` of a 2-worker MultiWorkerMirroredStrategy with ``replicas``
    replicas per worker: builds that worker's input pipeline from its InputContext, here."""

    def __init__(self, index, replicas):
        self.index, self.replicas = index, replicas

    def distribute_datasets_from_function(self, dataset_fn):
        return dataset_fn(tf.distribute.InputContext(num_input_pipelines=2,
                                                     input_pipeline_id=self.index,
                                                     num_replicas_in_sync=2 * self.replicas))


def _epochs_read(dataset, steps, replicas):
    """The per-replica image batches of EPOCHS epochs, as fit reads them: a fresh pass per epoch
    (one replica per worker), else ``steps`` steps of ``replicas`` batches from one iterator."""
    if replicas == 1:
        return [[x.numpy() for x, _ in dataset] for _ in range(EPOCHS)]
    iterator = iter(dataset)
    return [[next(iterator)[0].numpy() for _ in range(steps * replicas)] for _ in range(EPOCHS)]


def _assert_epochs_split(per_worker, expected):
    """``per_worker[w][e]``: the labels worker ``w`` read in epoch ``e``."""
    for epoch in range(EPOCHS):
        read = [labels[epoch] for labels in per_worker]
        union = sorted(sum(read, []))
        assert union == expected, (epoch, read)  # every example once; none twice


def test_npz_shards_are_disjoint_and_cover_the_examples(tmp_path):
    name = _indexed_npz(str(tmp_path / "indexed.npz"))
    for limit, expected in ((None, list(range(20))), (15, list(range(14)))):
        per_worker = []
        for index in range(2):
            ds, info = data.load(name, "train", batch_size=3, seed=0, limit=limit,
                                 shard_index=index, num_shards=2)
            assert info.num_examples == len(expected) // 2, (limit, index, info)
            epochs = [np.concatenate([y.numpy() for _, y in ds]).tolist() for _ in range(EPOCHS)]
            assert epochs[0] != epochs[1]  # still shuffled every epoch, within the shard
            per_worker.append(epochs)
        _assert_epochs_split(per_worker, expected)


@pytest.mark.parametrize("replicas", [1, 2])
def test_digits_training_input_of_two_workers_splits_the_epoch(replicas):
    global_batch = GLOBAL_BATCH * replicas
    cfg = experiment.TrainConfig(dataset="digits", batch_size=global_batch, train_limit=None,
                                 seed=0).validate()
    full, full_info = data.load("digits", "train", batch_size=500, training=False)
    images = [image.tobytes() for x, _ in full for image in x.numpy()]
    # Both shards together: each of the first 2 * floor(1438 / 2) examples once (images are
    # compared as a multiset: a few digits repeat).
    expected = collections.Counter(images[:2 * (full_info.num_examples // 2)])
    read, steps = [collections.Counter() for _ in range(EPOCHS)], []
    for worker in range(2):
        inputs = experiment.train_input(cfg, _OneOfTwoWorkers(worker, replicas))
        assert inputs.info.num_examples == full_info.num_examples // 2
        steps.append(inputs.steps)
        for epoch, batches in enumerate(_epochs_read(inputs.dataset, inputs.steps, replicas)):
            assert len(batches) == inputs.steps * replicas
            # Per-replica batches of global / (2 workers x replicas), but the ragged last step.
            assert {len(b) for b in batches[:-replicas]} == {GLOBAL_BATCH // 2}
            read[epoch].update(image.tobytes() for b in batches for image in b)
    assert steps[0] == steps[1]  # collectives need the same number of steps on every worker
    for epoch in range(EPOCHS):
        assert read[epoch] == expected, epoch


def test_two_process_imagenet_workers_read_disjoint_halves_of_every_epoch(tmp_path):
    root = str(tmp_path / "ilsvrc12")
    # One training image per class: the label identifies the image after augmentation.
    write_tiny_ilsvrc12(root, num_classes=4, images_per_class=1)
    workers = [f"localhost:{p}" for p in free_ports(2)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    procs, outs = [], []
    try:
        for index in range(2):
            outs.append(str(tmp_path / f"worker-{index}.json"))
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "worker", root, outs[-1]],
                cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=dict(env, TF_CONFIG=json.dumps(tf_config))))
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-4000:]
    read = []
    for out in outs:
        with open(out) as f:
            read.append(json.load(f))
    assert [r["steps"] for r in read] == [2, 2] and [r["num_examples"] for r in read] == [2, 2]
    _assert_epochs_split([r["labels"] for r in read], [0, 1, 2, 3])


def _worker(root, out):
    """One worker of the 2-process test: the training input experiment.train gives fit, read for
    EPOCHS epochs as fit does (a fresh pass per epoch); writes the labels it read per epoch."""
    sys.path.insert(0, REPO_ROOT)
    from tfadv import distribute, experiment

    strategy = distribute.strategy_from_flags(0, strategy="multi_worker")
    cfg = experiment.TrainConfig(dataset="imagenet", data_dir=root, pixel_range="[-1,1]",
                                 data_options={"image_size": 16, "num_workers": 0},
                                 batch_size=2, seed=0).validate()
    inputs = experiment.train_input(cfg, strategy)
    labels = []
    for _ in range(EPOCHS):
        iterator = iter(inputs.dataset)
        epoch = []
        for _ in range(inputs.steps):
            _, y = next(iterator)
            epoch += [int(v) for t in strategy.experimental_local_results(y) for v in t.numpy()]
        labels.append(epoch)
    with open(out, "w") as f:
        json.dump({"steps": inputs.steps, "num_examples": inputs.info.num_examples,
                   "labels": labels}, f)


if __name__ == "__main__":
    REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if sys.argv[1:2] == ["worker"]:
        _worker(*sys.argv[2:4])
