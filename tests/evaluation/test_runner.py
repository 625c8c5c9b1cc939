"""The runner: eager non-graph-safe attacks, only-robust mode, forward-pass counts, resume, TensorBoard,
and the RobustBench-style report."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, evaluation
from tfadv.evaluation import report as report_lib
from tfadv.evaluation import runner
from tests.testing import digits_split, trained_digits_model


@pytest.fixture(scope="module")
def setup():
    model = trained_digits_model()
    _, _, x, y = digits_split(num_test=200)
    return model, x, y


def batches(x, y, size=50):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


class EagerCounting(attacks.Attack):
    """Wraps an attack, must be called eagerly (graph_safe False), counts calls and attacked points,
    and raises after ``fail_after`` calls (an interrupted run)."""

    graph_safe = False

    def __init__(self, inner, fail_after=None, name="eager"):
        self.inner, self.fail_after, self.name = inner, fail_after, name
        self.calls, self.points = 0, 0

    def __call__(self, model_fn, x, y, **kwargs):
        assert tf.executing_eagerly(), "a non-graph-safe attack must not be traced"
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.calls += 1
        self.points += int(x.shape[0])
        return self.inner(model_fn, x, y)

    def model_calls_per_example(self):
        return self.inner.model_calls_per_example()

    def get_config(self):
        return {"name": self.name, "inner": self.inner.get_config()}


def pgd(steps, eps=0.1, seed=0):
    return attacks.get("pgd", eps=eps, num_steps=steps, seed=seed)


def test_only_robust_keeps_the_worst_case_and_attacks_fewer_points(setup):
    model, x, y = setup
    specs = {"clean": attacks.get("noop"), "FGSM": attacks.get("fgsm", eps=0.1),
             "PGD-10": attacks.get("pgd", eps=0.1, num_steps=10, random_start="none")}
    full = evaluation.evaluate(model, batches(x, y), specs, pixel_range="[0,1]", progress=None)
    fast = evaluation.evaluate(model, batches(x, y), specs, pixel_range="[0,1]", progress=None,
                               only_robust=True)
    np.testing.assert_array_equal(full.worst_case, fast.worst_case)
    clean = full.results["clean"].correct
    after_fgsm = clean & full.results["FGSM"].correct
    assert fast.results["clean"].points_attacked == 200
    assert fast.results["FGSM"].points_attacked == int(clean.sum())
    assert fast.results["PGD-10"].points_attacked == int(after_fgsm.sum()) < 200
    np.testing.assert_array_equal(fast.results["FGSM"].correct, after_fgsm)  # cumulative
    assert fast.results["PGD-10"].forward_passes == 11 * int(after_fgsm.sum())
    assert full.results["PGD-10"].forward_passes == 11 * 200
    assert fast.results["PGD-10"].cumulative and not full.results["PGD-10"].cumulative
    assert "still robust" in evaluation.markdown_table(fast)


def test_non_graph_safe_attack_runs_eagerly_with_norm_checks(setup):
    model, x, y = setup
    wrapped = EagerCounting(pgd(3))
    result = evaluation.evaluate(model, batches(x, y, 64), {"eager": wrapped}, pixel_range="[0,1]",
                                 progress=None)
    assert wrapped.calls == 4 and wrapped.points == 200
    r = result.results["eager"]
    assert 0 < r.max_linf <= 0.1 + 1e-6 and 0 < r.max_l2 <= 0.1 * 8 + 1e-5
    assert (r.nan_count, r.out_of_range, r.points_attacked) == (0, 0, 200)


def test_resume_after_an_interruption_gives_the_same_result_without_recomputing(setup, tmp_path):
    model, x, y = setup
    data = batches(x, y, 40)  # 5 batches
    state = str(tmp_path / "state.npz")
    # Eager op-seeded random starts differ from call to call (TF semantics): deterministic attacks
    # here, so that the runs can be compared example by example.

    def pgd(steps, seed=0):
        return attacks.get("pgd", eps=0.1, num_steps=steps, seed=seed, random_start="none")

    def specs(wrapper):
        return {"clean": attacks.get("noop"), "PGD-5": pgd(5), "eager": wrapper}

    reference = evaluation.evaluate(model, data, specs(EagerCounting(pgd(2, seed=1))),
                                    pixel_range="[0,1]", progress=None, only_robust=True)
    first = EagerCounting(pgd(2, seed=1), fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(model, data, specs(first), pixel_range="[0,1]", progress=None,
                            only_robust=True, state_path=state)
    assert first.calls == 2 and os.path.exists(state)
    second = EagerCounting(pgd(2, seed=1))
    resumed = evaluation.evaluate(model, data, specs(second), pixel_range="[0,1]", progress=None,
                                  only_robust=True, state_path=state)
    # Only the batches after the interruption are computed (PGD-5 and clean not at all).
    assert second.calls == 3
    assert second.points + first.points == reference.results["eager"].points_attacked
    for label in reference.results:
        np.testing.assert_array_equal(resumed.results[label].correct, reference.results[label].correct)
        assert resumed.results[label].points_attacked == reference.results[label].points_attacked
        assert resumed.results[label].forward_passes == reference.results[label].forward_passes
    assert resumed.results["eager"].max_linf == pytest.approx(reference.results["eager"].max_linf)
    # A finished run resumes without computing anything.
    third = EagerCounting(pgd(2, seed=1))
    again = evaluation.evaluate(model, data, specs(third), pixel_range="[0,1]", progress=None,
                                only_robust=True, state_path=state)
    assert third.calls == 0
    np.testing.assert_array_equal(again.worst_case, reference.worst_case)
    # Another configuration, or other data, is refused.
    with pytest.raises(ValueError, match="different configuration.*Received"):
        evaluation.evaluate(model, data, {"clean": attacks.get("noop"), "PGD-5": pgd(6)},
                            pixel_range="[0,1]", progress=None, only_robust=True, state_path=state)
    other = str(tmp_path / "other.npz")
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(model, data, specs(EagerCounting(pgd(2), fail_after=1)),
                            pixel_range="[0,1]", progress=None, only_robust=True, state_path=other)
    shuffled = [(bx, by[::-1]) for bx, by in data]
    with pytest.raises(ValueError, match="same order.*Received"):
        evaluation.evaluate(model, shuffled, specs(EagerCounting(pgd(2))), pixel_range="[0,1]",
                            progress=None, only_robust=True, state_path=other)


def test_tensorboard_scalars(setup, tmp_path):
    model, x, y = setup
    tb = str(tmp_path / "tb")
    evaluation.evaluate(model, batches(x[:100], y[:100]), {"clean": attacks.get("noop"), "PGD-2": pgd(2)},
                        pixel_range="[0,1]", progress=None, tensorboard_dir=tb)
    tags = set()
    for name in os.listdir(tb):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(tb, name)):
            tags |= {v.tag for v in event.summary.value}
    assert {"robust_accuracy/clean", "robust_accuracy/PGD-2", "time_s/PGD-2",
            "worst_case_accuracy"} <= tags


class FakeAutoAttack(attacks.Attack):
    name = "autoattack"

    def __call__(self, model_fn, x, y, **kwargs):
        return attacks.get("pgd", eps=0.1, num_steps=3, seed=0)(model_fn, x, y)

    def model_calls_per_example(self):
        return 3


def test_model_card_json_and_details(setup, tmp_path):
    model, x, y = setup
    data = batches(x[:100], y[:100])
    specs = evaluation.parse_list("clean,pgd-3", eps=25.5, pixel_range="[0,1]")
    result = evaluation.evaluate(model, data, specs, pixel_range="[0,1]", progress=None)
    meta = {"dataset": "digits", "threat_model": "Linf", "eps_pixels": 25.5, "architecture": "tiny_cnn",
            "split": "test", "attacks": {k: s.params for k, s in specs.items()}}
    obj = evaluation.write(result, str(tmp_path), metadata=meta, row="tiny",
                           tensorboard_dir=str(tmp_path / "tb"))
    with open(tmp_path / "robustness.json") as f:
        card = json.load(f)
    assert card == json.loads(json.dumps(obj))
    for key in ("dataset", "threat_model", "eps", "architecture", "clean_acc", "robust_acc",
                "autoattack_acc", "attacks", "additional"):
        assert key in card
    assert card["eps"] == pytest.approx(0.1) and card["threat_model"] == "Linf"
    assert card["clean_acc"] == pytest.approx(100 * result.results["clean"].accuracy, abs=0.01)
    assert card["robust_acc"] == pytest.approx(100 * result.worst_case.mean(), abs=0.01)
    assert card["autoattack_acc"] is None
    assert card["attacks"]["PGD-3"]["params"]["num_steps"] == 3
    assert card["attacks"]["PGD-3"]["points_attacked"] == 100
    assert card["additional"]["split"] == "test"
    assert set(card["accuracy"]) == {"clean", "PGD-3", "worst case"}
    text = (tmp_path / "robustness.md").read_text()
    assert "| attack | acc.(%) | time (s) | forward passes (budget bound) | points attacked | max Linf" in text
    assert os.listdir(tmp_path / "tb")
    # With AutoAttack right after clean in only-robust mode its number is exact ...
    specs = {"clean": attacks.get("noop"), "AutoAttack": FakeAutoAttack(), "PGD-3": pgd(3)}
    fast = evaluation.evaluate(model, data, specs, pixel_range="[0,1]", progress=None, only_robust=True)
    card = report_lib.to_json(fast, metadata={"dataset": "digits"})
    assert card["autoattack_acc"] == pytest.approx(100 * fast.results["AutoAttack"].accuracy, abs=0.01)
    # ... after another attack it is only a lower bound, reported under "additional".
    specs = {"clean": attacks.get("noop"), "PGD-3": pgd(3), "AutoAttack": FakeAutoAttack()}
    late = evaluation.evaluate(model, data, specs, pixel_range="[0,1]", progress=None, only_robust=True)
    card = report_lib.to_json(late, metadata={"dataset": "digits"})
    assert card["autoattack_acc"] is None and "autoattack_lower_bound" in card["additional"]


def test_state_file_is_written_atomically_and_readable(setup, tmp_path):
    model, x, y = setup
    state = str(tmp_path / "s.npz")
    evaluation.evaluate(model, batches(x[:60], y[:60], 30), {"clean": attacks.get("noop")},
                        pixel_range="[0,1]", progress=None, state_path=state)
    assert sorted(os.listdir(tmp_path)) == ["s.npz"]
    with np.load(state) as data:
        header = json.loads(str(data["header"]))
    assert header["attacks"][0]["done"] and header["attacks"][0]["batches"] == 2
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="Received"):
        runner.evaluate(model, batches(x[:60], y[:60], 30), {"clean": attacks.get("noop")},
                        pixel_range="[0,1]", progress=None, state_path=str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("bad", ["label", "range"])
def test_runner_and_attacks_refuse_a_bad_batch_with_one_message(setup, bad):
    """One batch validator (tfadv.attacks.checks.validate_batch): the runner's first-batch check
    and every attack's eager check raise the same error for the same batch."""
    model, x, y = setup
    x, y = x[:8].copy(), y[:8].copy()
    if bad == "label":
        y[3] = 10
    else:
        x[2, 0, 0, 0] = 1.5
    messages = set()
    with pytest.raises(ValueError, match="Received") as e:
        evaluation.evaluate(model, [(x, y)], {"clean": attacks.get("noop")}, pixel_range="[0,1]",
                            progress=None)
    messages.add(str(e.value))
    for name, params in (("pgd", dict(num_steps=1)), ("apgd_ce", dict(n_iter=1)),
                         ("fab", dict(n_iter=1)), ("square", dict(n_queries=1)),
                         ("deepfool", dict(max_iter=1))):
        with pytest.raises(ValueError, match="Received") as e:
            attacks.get(name, eps=0.1, **params)(model, x, y)
        messages.add(str(e.value))
    assert len(messages) == 1, messages
    assert messages.pop().startswith("Labels must be in [0, 10)" if bad == "label"
                                     else "images must lie in the declared pixel range [0,1]")


class _StopAfter:
    """A terminal-like progress stream that interrupts the run when a line contains ``text``."""

    def __init__(self, text):
        self.text = text

    def isatty(self):
        return True

    def write(self, line):
        if self.text and self.text in line:
            raise KeyboardInterrupt("interrupted")

    def flush(self):
        pass


def test_autoattack_components_are_summed_over_batches_kept_on_resume_and_reported(setup, tmp_path):
    model, x, y = setup
    x, y = x[:24], y[:24]
    budgets = {"apgd_ce": {"n_iter": 5}, "apgd_t": {"n_iter": 5, "n_target_classes": 2},
               "fab_t": {"n_iter": 5, "n_target_classes": 2}, "square": {"n_queries": 20}}

    def specs():
        return {"clean": attacks.get("noop"),
                "AutoAttack": attacks.get("autoattack", eps=0.1, attack_params=budgets, seed=0)}

    def run(progress, state=None):
        return evaluation.evaluate(model, batches(x, y, 8), specs(), pixel_range="[0,1]",
                                   progress=progress, only_robust=True, state_path=state)

    whole = run(None)
    state = str(tmp_path / "state.npz")
    with pytest.raises(KeyboardInterrupt):
        run(_StopAfter("AutoAttack: 16/"), state)  # stopped after AutoAttack's second batch
    resumed = run(None, state)
    aa = whole.results["AutoAttack"]
    assert [c["attack"] for c in aa.components] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    counts = [(c["attacked"], c["fooled"]) for c in aa.components]
    assert counts == [(c["attacked"], c["fooled"]) for c in resumed.results["AutoAttack"].components]
    assert counts[0][0] == whole.results["clean"].correct.sum()  # AutoAttack saw the clean-correct
    for (attacked, fooled), (next_attacked, _) in zip(counts, counts[1:]):
        assert next_attacked == attacked - fooled
    assert counts[-1][0] - counts[-1][1] == whole.worst_case.sum()

    obj = report_lib.write(whole, str(tmp_path / "report"), metadata={"dataset": "digits"})
    rows = obj["attacks"]["AutoAttack"]["components"]
    assert [r["component"] for r in rows] == ["initial", "APGD-CE", "APGD-T", "FAB-T", "Square"]
    assert rows[-1]["robust_acc"] == obj["robust_acc"]
    assert [(r["attacked"], r["fooled"]) for r in rows[1:]] == counts
    with open(tmp_path / "report" / "robustness.md", encoding="utf-8") as f:
        text = f.read()
    assert f"robust accuracy after Square: {obj['robust_acc']:.2f}%" in text
    assert "clean" not in {r["component"] for r in rows} and "components" not in obj["attacks"]["clean"]


def test_runner_counts_forward_and_backward_passes_exactly(setup, tmp_path):
    """Issue 20: the passes are counted in the model callable: PGD-k without early stopping costs
    k forward + k backward per attacked point, plus the final prediction's forward; an ensemble's
    members' counts plus the final prediction are its row's count."""
    model, x, y = setup
    x, y = x[:40], y[:40]
    k = 3
    specs = {"clean": attacks.get("noop"),
             "PGD": attacks.get("pgd", eps=0.1, num_steps=k, early_stop=False),
             "AA": attacks.get("autoattack", eps=0.1, attack_params={
                 "apgd_ce": {"n_iter": 2}, "apgd_t": {"n_iter": 2, "n_target_classes": 2},
                 "fab_t": {"n_iter": 2, "n_target_classes": 2}, "square": {"n_queries": 3}})}
    result = evaluation.evaluate(model, batches(x, y, 16), specs, pixel_range="[0,1]",
                                 progress=None, only_robust=True)
    clean, pgd, aa = (result.results[k_] for k_ in ("clean", "PGD", "AA"))
    assert (clean.forward_count, clean.backward_count) == (40, 0)
    attacked = pgd.points_attacked
    assert attacked == clean.correct.sum()
    assert (pgd.forward_count, pgd.backward_count) == ((k + 1) * attacked, k * attacked)
    assert pgd.forward_count <= pgd.forward_passes  # the upper bound holds
    members = aa.components
    assert sum(c["forward"] for c in members) + aa.points_attacked == aa.forward_count
    assert sum(c["backward"] for c in members) == aa.backward_count > 0
    obj = report_lib.write(result, str(tmp_path / "report"), metadata={"dataset": "digits"})
    assert obj["attacks"]["PGD"]["backward_count"] == k * attacked
    assert [r["forward"] for r in obj["attacks"]["AA"]["components"][1:]] == \
        [c["forward"] for c in members]
    with open(tmp_path / "report" / "robustness.md", encoding="utf-8") as f:
        text = f.read()
    assert f"| {(k + 1) * attacked} | {k * attacked} |" in text
