"""Issue 16, section 1: no model ever runs on a zero-size batch (oneDNN's kernels, on by default on
AVX-512 CPUs, fail on them: ``ReluGrad must have the same size and shape``).

The classifier is wrapped so that it records the batch size of every call when the call *runs*
(eagerly or inside a graph), so these tests hold on any CPU, whether or not its oneDNN reproduces
the crash: every registered attack, the evaluation runner and a 2-replica train step go through the
empty cases and no zero-size call may happen.
"""

import json

import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks, evaluation
from tfadv.attacks.registry import ATTACKS

EPS = 0.3
# Small budgets for every registered attack, by canonical name (aliases share the factory).
SMALL = {
    "noop": {}, "pgd": dict(eps=EPS, num_steps=3, early_stop=True), "fgsm": dict(eps=EPS),
    "mifgsm": dict(eps=EPS, num_steps=2), "cw_linf": dict(eps=EPS, num_steps=2),
    "deepfool": dict(max_iter=3), "cw_l2": dict(binary_search_steps=1, max_iterations=3),
    "apgd_ce": dict(eps=EPS, n_iter=3), "apgd_dlr": dict(eps=EPS, n_iter=3),
    "apgd_t": dict(eps=EPS, n_iter=3, n_target_classes=3),
    "fab": dict(eps=EPS, n_iter=3), "fab_t": dict(eps=EPS, n_iter=3, n_target_classes=2),
    "square": dict(eps=EPS, n_queries=5),
    "a3": dict(eps=EPS, seed=0, n_restarts=3, first_steps=2, adi_steps=2, steps=2),
    "autoattack_fast": dict(eps=EPS, seed=0, attack_params={
        "a3": {"n_restarts": 2, "first_steps": 2, "adi_steps": 1, "steps": 2},
        "square": {"n_queries": 5}}),
    "autoattack": dict(eps=EPS, attacks=[("apgd_ce", {"n_iter": 2}),
                                         ("apgd_t", {"n_iter": 2, "n_target_classes": 2})]),
    "advgan": dict(eps=EPS, finetune_steps=1, base_filters=4, num_res_blocks=1),
    "gap": dict(eps=EPS, finetune_steps=1, base_filters=8, num_res_blocks=1),
    "l2lda": dict(eps=EPS, finetune_steps=1, num_steps=2, num_samples=2),
}


@pytest.fixture(scope="module")
def recorded():
    """The trained digits classifier wrapped to record its batch sizes: ``(model, sizes)``."""
    return testing.recording_batch_sizes(testing.trained_digits_model())


@pytest.fixture(scope="module")
def every_attack(recorded, tmp_path_factory):
    """(name, attack) for every registered attack (one name per factory), small budgets; the
    transfer attack's source and the generators' fitting use the recorded model too."""
    from tfadv.models.unet_generator import build_generator
    from tfadv.attacks import l2lda_generator

    model, _ = recorded
    tmp_path = tmp_path_factory.mktemp("l2lda_run")
    l2lda_generator.save_generator(build_generator(10, (8, 8, 1), base_filters=4),
                                   str(tmp_path / l2lda_generator.GENERATOR_DIR))
    params = dict(SMALL, transfer=dict(source=model, inner="apgd_t", eps=EPS, n_iter=3,
                                       n_target_classes=3))
    params["l2lda"] = dict(params["l2lda"], generator_path=str(tmp_path))
    by_factory = {}
    for name in attacks.names():
        by_factory.setdefault(ATTACKS.lookup(name), []).append(name)
    x, y, _, _ = testing.digits_split(num_train=16)
    out = []
    for names in by_factory.values():
        name = next((n for n in names if n in params), None)
        assert name is not None, f"no small budget for the registered attack {names}"
        attack = attacks.get(name, **params[name])
        if getattr(attack, "needs_preparation", False):
            attack.prepare(model, [(x, y)])
        out.append((name, attack))
    return out


def _zero_size_calls(x, y, recorded, every_attack):
    """{attack: number of its zero-size model calls} over every registered attack called on
    ``(x, y)`` eagerly and, if graph-safe, in a tf.function with an open batch dimension (as the
    evaluation runner and a train_step trace it); also checks each returns a batch shaped like x."""
    model, sizes = recorded
    offenders = {}
    for name, attack in every_attack:
        graph = tf.function(lambda a, b, attack=attack: attack(model, a, b), input_signature=[
            tf.TensorSpec([None, *x.shape[1:]], tf.float32), tf.TensorSpec([None], tf.int32)])
        calls = [lambda: attack(model, x, y)]
        if attack.graph_safe:
            calls.append(lambda: graph(x, y))
        del sizes[:]
        for call in calls:
            assert tuple(call().shape) == x.shape, name
        if 0 in sizes:
            offenders[name] = sizes.count(0)
    return offenders


def test_no_attack_runs_the_model_on_an_empty_batch_when_every_point_is_already_fooled(
        recorded, every_attack):
    # Every label is wrong: early-stopped attacks (APGD-T's targets, restarts) have nothing left.
    _, _, x, _ = testing.digits_split(num_test=8)
    wrong = ((testing.predicted(recorded[0], x) + 1) % 10).astype("int32")
    assert _zero_size_calls(x, wrong, recorded, every_attack) == {}


def test_an_attack_on_an_empty_batch_returns_it_without_running_the_model(recorded, every_attack):
    _, _, x, y = testing.digits_split(num_test=8)
    assert _zero_size_calls(x[:0], y[:0], recorded, every_attack) == {}


def test_evaluation_runner_never_runs_the_model_on_an_empty_batch(recorded):
    # An empty batch, then 19 examples in batches of 8 (a final batch of 3); only_robust: APGD-T
    # attacks what the clean pass leaves and FGSM what APGD-T leaves (nothing, at this eps).
    _, _, x, y = testing.digits_split(num_test=19)
    data = [(x[:0], y[:0])] + [(x[i:i + 8], y[i:i + 8]) for i in range(0, 19, 8)]
    model, sizes = recorded
    del sizes[:]
    specs = {"clean": attacks.get("noop"),
             "apgd_t": attacks.get("apgd_t", eps=EPS, n_iter=5, n_target_classes=3, seed=0),
             "fgsm": attacks.get("fgsm", eps=EPS)}
    result = evaluation.evaluate(model, data, specs, pixel_range="[0,1]", only_robust=True,
                                 progress=None)
    assert result.num_examples == 19 and result.results["apgd_t"].points_attacked > 0
    assert result.results["fgsm"].points_attacked == 0  # nothing left to attack
    assert sizes and 0 not in sizes, sizes


_TRAIN_ON_TWO_REPLICAS = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tests import testing
from tfadv import defenses
x, y, _, _ = testing.digits_split(num_train=17)
out = {}
attack = dict(eps=0.1, step_size=0.05, num_steps=2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
# Dynamic AT: the base train/test step plus its FOSC pass; L2L-DA: its generator update.
for name, kwargs in (("dynamic", dict(random_start="none")), ("l2lda", dict(base_filters=4))):
    with strategy.scope():
        net, sizes = testing.recording_batch_sizes(testing.tiny_cnn(seed=0))
        model = defenses.get(name, net, pixel_range="[0,1]", **attack, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    # 17 examples in batches of 8: the last global batch of 1 leaves one replica an empty slice.
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model.fit(ds, epochs=1, verbose=0)
    model.evaluate(ds, verbose=0)
    out[name] = sizes
print("SIZES " + json.dumps(out))
"""


def test_two_replica_train_and_test_steps_skip_an_empty_replica_slice():
    proc = testing.run_python(code=_TRAIN_ON_TWO_REPLICAS)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("SIZES "))
    for name, sizes in json.loads(line[len("SIZES "):]).items():
        assert sizes and 0 not in sizes, (name, sizes)
