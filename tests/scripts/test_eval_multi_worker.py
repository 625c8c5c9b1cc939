"""scripts/eval_robustness.py --strategy=multi_worker: two processes on localhost (TF_CONFIG),
AutoAttack's members at a small budget on the points still robust, worker 1 killed mid-run and
started again; the chief's report and every per-example mask equal the one-device run's."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import testing
from tests.testing import REPO_ROOT, run_script

LIMIT, BATCH = 48, 4  # 12 batches: 6 per worker
# AutoAttack's protocol at a small budget: its members in order, each on the points still robust.
AA = "clean,apgd_ce(n_iter=8),apgd_t(n_iter=8,n_target_classes=3),fab_t(n_iter=8," \
     "n_target_classes=3),square(n_queries=40)"


def _arrays(path):
    with np.load(path) as data:
        header = json.loads(str(data["header"]))
        return header, {k: data[k] for k in data.files if k != "header"}


def _masks(path):
    """label -> per-example ``correct`` of an evaluation state file."""
    header, arrays = _arrays(path)
    return {e["label"]: arrays[f"a{i}_correct"].astype(bool)
            for i, e in enumerate(header["attacks"])}


def _interleave(shards, sizes):
    """Batch b's rows from shard b mod W, written here independently of tfadv's merge."""
    out, offsets = [], [0] * len(shards)
    for b, size in enumerate(sizes):
        w = b % len(shards)
        out.append(shards[w][offsets[w]:offsets[w] + size])
        offsets[w] += size
    return np.concatenate(out)


def _report(out_dir):
    with open(os.path.join(out_dir, "robustness.json")) as f:
        card = json.load(f)
    return card["accuracy"], {label: (a["points_attacked"], a["max_linf"])
                              for label, a in card["attacks"].items()}


@pytest.mark.slow
def test_two_workers_killed_and_restarted_give_the_one_device_masks(tmp_path):
    model_path = str(tmp_path / "net.keras")
    testing.trained_digits_model().save(model_path)
    common = [f"--model_path={model_path}", "--dataset=digits", "--eps=25.5",
              f"--limit={LIMIT}", f"--batch_size={BATCH}", f"--attacks={AA}", "--only_robust"]
    single_dir = str(tmp_path / "single")
    run_script("eval_robustness.py", *common, f"--out_dir={single_dir}", "--resume")

    out_dir = str(tmp_path / "mw")
    cluster = {"worker": [f"localhost:{p}" for p in testing.free_ports(2)]}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    args = [sys.executable, os.path.join(REPO_ROOT, "scripts", "eval_robustness.py"), *common,
            f"--out_dir={out_dir}", "--strategy=multi_worker", "--shard_timeout=600"]

    def start(index):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        return subprocess.Popen(args, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env, TF_CONFIG=json.dumps(tf_config)))

    chief, worker = start(0), start(1)
    shard = os.path.join(out_dir, "shards", "worker-1-of-2.npz")
    deadline = time.time() + 300
    while not os.path.exists(shard) and worker.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    header, _ = _arrays(shard)
    assert not all(e["done"] for e in header["attacks"]), "worker 1 finished before the kill"
    worker = start(1)  # continues its shard
    for proc in (worker, chief):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-2000:] + err[-4000:]
    assert "| Acc.(%) |" in out  # the chief printed the table; worker 1 only its shard

    assert _report(out_dir) == _report(single_dir)
    single = _masks(os.path.join(single_dir, "eval_state.npz"))
    shards = [_masks(os.path.join(out_dir, "shards", f"worker-{i}-of-2.npz")) for i in range(2)]
    sizes = [BATCH] * (LIMIT // BATCH)
    assert list(single) == list(shards[0]) == list(shards[1])
    for label, mask in single.items():
        np.testing.assert_array_equal(_interleave([s[label] for s in shards], sizes), mask,
                                      err_msg=label)
    accuracy = _report(out_dir)[0]
    assert accuracy["worst case"] < accuracy["clean"]  # the attacks fooled some points
