"""tfadv.recipes: the preset registry, and the one boundary where a recipe's pixel levels become the
input units of a defense (every recipe's training attack is built there, once)."""

import io
import types

import pytest

from tfadv import experiment, recipes
from tfadv.attacks import core
from tfadv.recipes import base

RANGES = {"[0,1]": 1.0, "[-1,1]": 2.0}


def run_config(preset, pixel_range):
    return types.SimpleNamespace(eps=preset.eps, step_size=preset.step_size,
                                 num_steps=preset.num_steps, random_start="uniform", norm="linf",
                                 pixel_range=pixel_range)


@pytest.fixture
def constructions(monkeypatch):
    """Counts the IterativeAttacks built (every PGD-type attack of tfadv is one)."""
    count = {"n": 0}
    init = core.IterativeAttack.__init__

    def counting(self, *args, **kwargs):
        count["n"] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(core.IterativeAttack, "__init__", counting)
    return count


def test_the_boundary_converts_hand_computed_values():
    assert base.to_input(8, "[-1,1]") == pytest.approx(16 / 255)
    assert base.to_input(76.5, "[0,1]") == pytest.approx(0.3)
    assert base.to_input(25.5, "[0,1]") == pytest.approx(0.1)
    assert base.to_input(None, "[0,1]") is None
    assert base.to_pixels(16 / 255, "[-1,1]") == 8.0 and base.to_pixels(0.3, "[0,1]") == 76.5


@pytest.mark.parametrize("pixel_range", sorted(RANGES))
@pytest.mark.parametrize("name", sorted(recipes.PRESETS.names()))
def test_every_recipe_attack_is_in_input_units(name, pixel_range):
    preset = recipes.get(name)
    attack = recipes.pgd_attack(run_config(preset, pixel_range))
    width = RANGES[pixel_range]
    assert attack.eps == pytest.approx(preset.eps / 255 * width)
    assert attack.step_size == pytest.approx(preset.step_size / 255 * width)
    assert str(attack.pixel_range) == pixel_range and attack.num_steps == preset.num_steps


def test_hand_computed_preset_attacks():
    cifar = recipes.pgd_attack(run_config(recipes.get("cifar10"), "[-1,1]"))
    assert (cifar.eps, cifar.step_size) == (pytest.approx(16 / 255), pytest.approx(4 / 255))
    mnist = recipes.pgd_attack(run_config(recipes.get("mnist"), "[0,1]"))
    assert (mnist.eps, mnist.step_size) == (pytest.approx(0.3), pytest.approx(0.01))


def test_training_kwargs_build_the_pgd_once_and_keep_a_recipes_attack(constructions):
    cfg = run_config(recipes.get("digits"), "[0,1]")
    kwargs = recipes.training_kwargs(cfg, {"c_max": 0.5})
    assert constructions["n"] == 1 and kwargs["c_max"] == 0.5
    assert kwargs["attack"].eps == pytest.approx(0.1)
    given = {"attack": kwargs["attack"], "beta": 6.0}
    again = recipes.training_kwargs(cfg, given)
    assert constructions["n"] == 1  # the recipe's attack is used, no second one is built
    assert again["attack"] is given["attack"] and again is not given
    assert recipes.training_kwargs(cfg, {"attack": None})["attack"] is None  # passed through


def test_train_builds_exactly_one_attack(tmp_path, constructions):
    cfg = experiment.TrainConfig(
        dataset="digits", model="digits_cnn", eps=25.5, step_size=25.5, num_steps=1, epochs=1,
        batch_size=16, train_limit=32, val_limit=0, eval_limit=16, eval_attacks="clean",
        verbose=0, logdir=str(tmp_path / "run")).validate()
    model, _ = experiment.train(cfg, defense="madry", stream=io.StringIO())
    assert constructions["n"] == 1
    assert model.attack.eps == pytest.approx(0.1) and model.attack.step_size == pytest.approx(0.1)


def test_presets_by_dataset_and_image_shape():
    assert recipes.for_dataset("cifar10") == "cifar10"
    assert recipes.for_dataset("npz:x.npz", (28, 28, 1)) == "mnist"
    with pytest.raises(ValueError, match=r"Received: image_shape=\(5, 5, 1\)\."):
        recipes.for_dataset("npz:x.npz", (5, 5, 1))
    assert recipes.get("digits").model == "digits_cnn"
