"""tfadv.benchmark: the one-call model card (worst case, per-attack and per-component accuracies,
the robustness mask), its files, and the arguments it refuses."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfadv
from tfadv import ranges
from tfadv.data.sources import digits_arrays
from tests.testing import trained_digits_model

EPS = 0.1  # 25.5/255 of [0,1]: the tiny model keeps some points and loses others
COMPONENTS = ["initial", "APGD-CE", "APGD-T", "FAB-T", "Square"]
# Small member budgets keep the default tests fast; the slow test runs the standard budgets.
BUDGETS = {"apgd_ce": {"n_iter": 10}, "apgd_t": {"n_iter": 10, "n_target_classes": 3},
           "fab_t": {"n_iter": 10, "n_target_classes": 3}, "square": {"n_queries": 100}}
LABEL = "AutoAttack (custom budgets)"


def digits_test(n=16):
    """The first ``n`` images of tfadv.data's digits test split as [0,1] arrays (what
    ``tfadv.data.load("digits", "test")`` yields)."""
    x, y = digits_arrays()["test"]
    return ranges.get_range("[0,1]").from_uint8(x[:n]).numpy(), y[:n].astype("int32")


def run(model, data, **kwargs):
    kwargs = {"eps": EPS, "num_examples": 16, "batch_size": 8, "seed": 0, "progress": None,
              "autoattack_params": BUDGETS, **kwargs}
    return tfadv.benchmark(model, data, **kwargs)


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    model = trained_digits_model()
    out = str(tmp_path_factory.mktemp("card"))
    first = run(model, digits_test(), out_dir=out, name="digits_cnn")
    return {"model": model, "out": out, "first": first, "again": run(model, digits_test()),
            "by_name": run(model, "digits")}


def test_worst_case_is_the_mask_and_bounded_by_each_attack_and_clean(cards):
    card = cards["first"]
    mask = card.robust_mask
    assert mask.dtype == bool and mask.shape == (16,) and card.num_examples == 16
    assert card.robust_accuracy == pytest.approx(1 - np.mean(~mask))
    assert card.robust_accuracy == pytest.approx(card.result.accuracies()["worst case"])
    assert list(card.attack_accuracy) == [LABEL]
    for accuracy in card.attack_accuracy.values():
        assert card.robust_accuracy <= accuracy <= card.clean_accuracy
    assert 0 < card.robust_accuracy < card.clean_accuracy  # the test exercises both outcomes
    assert card.seconds > 0 and card.forward_passes > 0


def test_components_are_cumulative_non_increasing_and_end_at_the_worst_case(cards):
    check_components(cards["first"])


def check_components(card):
    (rows,) = card.components.values()
    assert [row["component"] for row in rows] == COMPONENTS
    accuracies = [row["accuracy"] for row in rows]
    assert all(later <= earlier for earlier, later in zip(accuracies, accuracies[1:]))
    assert accuracies[0] == pytest.approx(card.clean_accuracy)  # AutoAttack ran on the clean-correct
    assert round(accuracies[-1] * card.num_examples) == card.robust_mask.sum()
    (counts,) = (r.components for r in card.result.results.values() if r.components)
    for previous, member in zip(counts, counts[1:]):  # each member attacks what the last left robust
        assert member["attacked"] == previous["attacked"] - previous["fooled"]
    text = card.markdown()
    for row in rows[1:]:
        assert f"robust accuracy after {row['component']}: {100 * row['accuracy']:.2f}%" in text
    assert f"initial accuracy: {100 * card.clean_accuracy:.2f}%" in text


def test_the_same_seed_gives_the_same_mask_and_a_name_the_same_card_as_arrays(cards):
    first, again, by_name = cards["first"], cards["again"], cards["by_name"]
    np.testing.assert_array_equal(first.robust_mask, again.robust_mask)
    np.testing.assert_array_equal(first.robust_mask, by_name.robust_mask)
    assert first.clean_accuracy == by_name.clean_accuracy
    def accuracies(card):
        return [(row["component"], row["accuracy"]) for row in card.components[LABEL]]

    assert accuracies(first) == accuracies(again) == accuracies(by_name)
    assert by_name.metadata["dataset"] == "digits" and first.metadata["dataset"] == "arrays"


def test_out_dir_round_trip_and_no_overwrite_without_overwrite(cards):
    card, out = cards["first"], cards["out"]
    with open(os.path.join(out, "model_card.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(card.to_json()))
    assert saved["robust_mask"] == card.robust_mask.astype(int).tolist()
    assert saved["clean_acc"] == round(100 * card.clean_accuracy, 2)
    assert saved["robust_acc"] == round(100 * card.robust_accuracy, 2)
    assert saved["threat_model"] == "Linf" and saved["eps"] == pytest.approx(EPS)
    assert saved["forward_passes"] == card.forward_passes and saved["seconds"] >= 0
    assert saved["attacks"][LABEL]["params"]["attack_params"] == BUDGETS
    components = saved["attacks"][LABEL]["components"]
    assert [c["component"] for c in components] == COMPONENTS
    assert components[-1]["robust_acc"] == saved["robust_acc"]
    with open(os.path.join(out, "model_card.md"), encoding="utf-8") as f:
        assert f.read() == card.markdown()

    calls = []

    def model(x):
        calls.append(1)
        return cards["model"](x)

    with pytest.raises(ValueError, match=r"overwrite=True.*Received: out_dir="):
        run(model, digits_test(), out_dir=out)
    assert not calls  # refused before the model ran
    with open(os.path.join(out, "model_card.json"), encoding="utf-8") as f:
        assert json.load(f) == saved
    card.metadata["seed"] = "replaced"
    assert card.write(out, overwrite=True)[1].endswith("model_card.json")
    with open(os.path.join(out, "model_card.json"), encoding="utf-8") as f:
        assert json.load(f)["additional"]["seed"] == "replaced"


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": -0.1}, "eps must be a positive number"),
    ({"eps": 0}, "eps must be a positive number"),
    ({"eps": float("nan")}, "eps must be a positive number"),
    ({"eps": 1.5}, "cannot exceed the width 1"),
    ({"eps": 2.5, "pixel_range": "[-1,1]"}, "cannot exceed the width 2"),
    ({"eps": 1.5, "threat_model": "L2"}, "L2 radii up to the width"),
    ({"eps": 0.5 / 255}, "below one pixel level"),
    ({"threat_model": "L1"}, "threat_model must be one of"),
    ({"suite": "nope"}, "Unknown suite"),
    ({"suite": "paper", "threat_model": "L2"}, "runs the suites"),
    ({"num_examples": 0}, "num_examples must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"seed": "zero"}, "seed must be an integer"),
    ({"distribute": "mirrored"}, "distribute must be None"),
])
def test_invalid_arguments_are_refused_before_anything_runs(kwargs, message):
    calls = []
    with pytest.raises(ValueError, match=message) as info:
        run(lambda x: calls.append(1), digits_test(), **kwargs)
    assert "Received:" in str(info.value)
    assert not calls


def test_invalid_data_and_model_are_refused():
    x, y = digits_test()
    for data in ([x], (x, y[:3]), (x, y.astype("float32")), (np.uint8(x), y), {"x": x}):
        with pytest.raises(ValueError, match="Received:"):
            run(lambda images: images, data)
    with pytest.raises(ValueError, match="model must be a keras.Model or a callable.*Received:"):
        run("not a model", (x, y))


def test_a_strategy_gives_the_one_device_card_and_a_non_strategy_is_refused(cards):
    # One replica through the sharded path (the several-replica comparisons need logical CPUs set
    # at process start: tests/evaluation/test_distributed_eval.py).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    card = run(cards["model"], digits_test(), distribute=strategy)
    np.testing.assert_array_equal(card.robust_mask, cards["first"].robust_mask)
    def counts(c):
        return {label: [(row["component"], row["accuracy"]) for row in rows]
                for label, rows in c.components.items()}

    assert counts(card) == counts(cards["first"])  # the seconds differ
    calls = []
    with pytest.raises(ValueError,
                       match="distribute must be None.*Strategy.*Received: distribute=.gpu."):
        run(lambda x: calls.append(1), digits_test(), distribute="gpu")
    assert not calls


def test_l2_runs_autoattack_in_the_l2_ball():
    model = trained_digits_model()
    card = run(model, digits_test(4), threat_model="l2", eps=0.5, num_examples=4)
    assert card.metadata["threat_model"] == "L2"
    (label,) = card.attack_accuracy
    assert card.result.results[label].max_l2 <= 0.5 + 1e-5
    assert card.metadata["attacks"][label]["norm"] == "l2"
    assert card.to_json()["threat_model"] == "L2"


def test_autoattack_params_are_checked():
    with pytest.raises(ValueError, match="not in the ensemble.*Received:"):
        run(lambda x: x, digits_test(), autoattack_params={"nope": {}})
    with pytest.raises(ValueError, match="needs a suite with AutoAttack.*Received:"):
        run(lambda x: x, digits_test(), suite="bat_imagenet", eps=16 / 255)
    with pytest.raises(ValueError, match="autoattack_params maps.*Received:"):
        run(lambda x: x, digits_test(), autoattack_params={})


@pytest.mark.slow
def test_standard_autoattack_card_on_digits():
    card = run(trained_digits_model(), "digits", autoattack_params=None, num_examples=32,
               batch_size=16)
    assert list(card.attack_accuracy) == ["AutoAttack"]
    assert card.to_json()["autoattack_acc"] == round(100 * card.robust_accuracy, 2)
    check_components(card)
