"""Strategies: flag validation, per-replica correctness of every defense's train_step, multi-worker.

Logical CPU devices must be configured before TensorFlow initialises, so the replica comparisons run
this file as a script in a fresh process (``python tests/test_distribute.py compare``): it trains
the same network one epoch on one device and on a MirroredStrategy over 2 logical CPUs with the
same global batches and prints the largest weight difference per defense as JSON.
"""

import json
import os
import subprocess
import sys

import pytest

if __name__ != "__main__":
    from tests.testing import REPO_ROOT, free_ports, run_python
else:
    REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ flag validation
def test_too_many_gpus_names_the_value_and_the_cpu_aid():
    from tfadv import distribute

    with pytest.raises(ValueError, match=r"--logical_cpus>=64.*Received: num_gpus=64"):
        distribute.strategy_from_flags(64)
    with pytest.raises(ValueError, match=r"Received: num_gpus=-1"):
        distribute.strategy_from_flags(-1)
    with pytest.raises(ValueError, match=r"Unknown strategy.*Received: strategy='ps'"):
        distribute.strategy_from_flags(0, strategy="ps")


@pytest.mark.parametrize("raw,message", [
    ("", "not set"),
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster'"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "ps", "index": 0}}', "'type'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "index"),
])
def test_malformed_tf_config_is_reported_with_its_value(raw, message, monkeypatch):
    from tfadv import distribute

    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ValueError, match=message) as info:
        distribute.strategy_from_flags(0, strategy="multi_worker")
    assert "Received: TF_CONFIG=" in str(info.value)


def test_valid_tf_config_parses():
    from tfadv import distribute

    config = distribute.parse_tf_config(
        '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", '
        '"index": 1}}')
    assert config["task"]["index"] == 1


def test_global_batch_must_split_over_replicas_and_tiny_last_batches_are_dropped():
    import tensorflow as tf

    from tfadv import distribute, experiment

    class TwoReplicas:
        num_replicas_in_sync = 2

    assert distribute.global_batch_check(16, TwoReplicas()) == 8
    with pytest.raises(ValueError, match="Received: batch_size=15"):
        distribute.global_batch_check(15, TwoReplicas())
    # 17 examples, batch 8: 8, 8, 1 on one device; on 4 replicas the 1-example batch is dropped.
    assert distribute.steps_per_epoch(17, 8) == 3
    assert distribute.steps_per_epoch(17, 8, replicas=4) == 2
    assert distribute.steps_per_epoch(20, 8, replicas=4) == 3
    ds = tf.data.Dataset.from_tensor_slices((tf.zeros([17, 2]), tf.range(17))).batch(8)
    sizes = [int(y.shape[0]) for _, y in distribute.split_over_replicas(ds, 4)]
    assert sizes == [2] * 8  # two batches of 8 in 4 pieces each; the 1-example batch dropped
    assert [int(y.shape[0]) for _, y in experiment.validation_dataset(ds)] == [8, 8, 1]


# ------------------------------------------------------------------------------ replica equivalence
def _compare(cases):
    """Runs in a fresh process: one epoch on 1 device vs 2 mirrored logical CPUs per case
    (``defense-examples`` in batches of 8, or ``bn``: BatchNorm copies after a mirrored epoch)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    from tests import testing
    from tfadv import attacks, defenses

    from tfadv.defenses import bat as bat_lib

    x, y, _, _ = testing.digits_split(num_train=32)
    attack = dict(eps=0.1, step_size=0.05, num_steps=2, random_start="none")

    def build(name, bn):
        net = testing.tiny_cnn(seed=0, with_bn=bn)
        if name == "madry":
            return defenses.get("madry", net, attack=attacks.get("pgd", **attack),
                                         weight_decay=1e-3), net
        if name == "bat":  # MC-targeted step without random start + adversarial labels (eq. 14)
            image = bat_lib.bat_image_attack(eps=0.1, target="mc", random_start=False,
                                             pixel_range="[0,1]")
            return defenses.get("bat", net, attack=image, label_adversary="la", beta=9.0,
                                       weight_decay=1e-3), net
        if name == "fast":  # FGSM-RS's one step of 1.25 eps without the start (per-replica
            # noise differs) and the guard, whose PGD accuracy is logged after the epoch
            guard = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=5, random_start="none")
            return defenses.get("fast", net, attack=attacks.get(
                "pgd", eps=0.1, step_size=0.125, num_steps=1, random_start="none"),
                guard_batch=(x[:8], y[:8]), guard_attack=guard, weight_decay=1e-3), net
        if name in ("free", "freeproject"):  # m = 3 replays, delta per replica (4 + 4 slices)
            delta_range = "project" if name == "freeproject" else "clip"
            return defenses.get("free", net, eps=0.1, replays=3, batch_size=8,
                                delta_range=delta_range, weight_decay=1e-3), net
        if name == "awp":  # Madry's PGD with AWP: the ascent gradient of the global batch
            return defenses.get("madry", net, attack=attacks.get("pgd", **attack),
                                weight_decay=1e-3, awp_gamma=0.05), net
        if name == "awptrades":
            return defenses.get("trades", net, attack=attacks.get("pgd", **attack), beta=6.0,
                                weight_decay=1e-3, awp_gamma=0.05), net
        if name == "mart":  # MART's loss with its CE PGD from x' = x (no per-replica noise)
            return defenses.get("mart", net, attack=attacks.get("pgd", **attack), beta=6.0,
                                weight_decay=1e-3), net
        # TRADES' loss with a CE PGD attack: its KL attack from x' = x (no random start; the
        # Gaussian start draws different noise per replica) has a zero gradient whose sign is
        # rounding noise, which no two batch layouts share.
        return defenses.get("trades", net, attack=attacks.get("pgd", **attack), beta=6.0,
                                      weight_decay=1e-3), net

    def fit(strategy, name, n, bn=False):
        with strategy.scope():
            model, net = build(name, bn)
            model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
        ds = tf.data.Dataset.from_tensor_slices((x[:n], y[:n])).batch(8)
        logs = model.fit(ds, epochs=1, verbose=0).history
        return net, {k: v[-1] for k, v in logs.items()}

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {}
    for case in cases:
        if case == "bn":
            net, logs = fit(mirrored, "madry", 17, bn=True)
            copies = [v.numpy() for v in mirrored.experimental_local_results(
                net.get_layer("bn1").moving_mean.value)]
            out["bn"] = {"copies_differ": float(np.abs(copies[0] - copies[1]).max()),
                         "finite": bool(all(np.isfinite(w).all() for w in net.get_weights())),
                         "moved": float(np.abs(copies[0]).max())}
            continue
        name, n = case.split("-")
        net1, logs1 = fit(tf.distribute.get_strategy(), name, int(n))
        net2, logs2 = fit(mirrored, name, int(n))
        out[case] = {
            "weights": max(float(np.abs(a - b).max())
                           for a, b in zip(net1.get_weights(), net2.get_weights())),
            "logs": {k: abs(logs1[k] - logs2[k]) for k in logs1},
            "moved": max(float(np.abs(a - b).max()) for a, b in
                         zip(net1.get_weights(), build(name, False)[1].get_weights())),
            "same_keys": sorted(logs1) == sorted(logs2)}
    print("RESULT " + json.dumps(out))


# 21 examples in batches of 8: 8 (4+4), 8 (4+4), 5 (3+2: unequal slices); 17: the last batch of 1
# leaves one replica an EMPTY slice.
FAST_CASES = ("madry-17", "bn")
SLOW_CASES = ("madry-21", "bat-21", "trades-21", "bat-17", "trades-17", "mart-17",
              "fast-17", "awp-21", "awptrades-21")
def _check_cases(cases):
    proc = run_python(["compare", *cases], script=os.path.join("tests", "test_distribute.py"),
                      timeout=600)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    for key in cases:
        if key == "bn":
            # BatchNorm moving statistics are averaged over the replicas: the copies never drift
            # apart (they did: Keras assigns them per replica), and an empty slice adds no NaN.
            assert result["bn"]["copies_differ"] == 0.0 and result["bn"]["finite"], result["bn"]
            assert result["bn"]["moved"] > 0.0
            continue
        assert result[key]["moved"] > 1e-3, (key, result[key])  # training changed the weights
        assert result[key]["weights"] < 1e-5, (key, result[key])
        assert result[key]["same_keys"], (key, result[key])
        # every epoch log, TRADES' natural_loss/kl_loss included (weighted by slice size)
        assert max(result[key]["logs"].values()) < 1e-5, (key, result[key])


def test_mirrored_two_replicas_match_one_device_with_an_empty_slice():
    _check_cases(FAST_CASES)


def test_mirrored_two_replicas_match_one_device_for_free_and_awp():
    """Free AT's replays with a per-replica delta (4 + 4 slices: each replica's delta is the
    one device's rows of its slice), and AWP on Madry with an empty slice (the last batch of 1):
    the ascent gradient is the global batch's, so every replica perturbs by the one device's v
    (TRADES-AWP on unequal slices is a slow case); Free AT with delta projected onto each
    replica's own slice's box as well."""
    _check_cases(("free-16", "freeproject-16", "awp-17"))


def test_mirrored_two_replicas_match_one_device_for_mart_and_fast():
    """MART's loss, bce_loss and kl_loss, and Fast AT's update and guard_pgd_acc, on unequal
    replica slices (3 + 2) equal one device's."""
    _check_cases(("mart-21", "fast-21"))


@pytest.mark.slow
def test_mirrored_two_replicas_match_one_device_for_madry_bat_trades():
    _check_cases(SLOW_CASES)


# ------------------------------------------------------------------------------ multi-worker
@pytest.mark.slow
def test_two_process_multi_worker_run_trains_on_localhost(tmp_path):
    workers = [f"localhost:{p}" for p in free_ports(2)]
    logdir = str(tmp_path / "mw")
    args = [os.path.join(REPO_ROOT, "scripts", "train_madry.py"), "--strategy=multi_worker",
            "--epochs=2", "--train_limit=64", "--batch_size=16", "--num_steps=2",
            "--val_limit=0", "--eval_limit=32", "--eval_attacks=clean", f"--logdir={logdir}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=dict(env, TF_CONFIG=json.dumps(tf_config))))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-4000:]
    assert "Epoch 2/2" in outputs[0][0] and "| Acc.(%) | clean |" in outputs[0][0]
    assert os.path.exists(os.path.join(logdir, "checkpoints", "ckpt-0002.weights.h5"))
    # The second worker saved into its own scratch directory, never over the chief's files.
    assert os.path.exists(os.path.join(logdir, "workers", "worker-1", "backup", "state.json"))
    assert not os.path.exists(os.path.join(logdir, "workers", "worker-1", "robustness.json"))


if __name__ == "__main__":
    sys.path.insert(0, REPO_ROOT)
    if sys.argv[1:2] == ["compare"]:
        _compare(sys.argv[2:])
