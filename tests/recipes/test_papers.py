"""The paper recipes (tfadv.recipes.bat, trades, fosc, l2lda): their training functions build the
defense's attack once, in input units, and record what was used in pixel levels."""

import dataclasses

import pytest

from tfadv import config, defenses, recipes
from tfadv.recipes import bat as bat_recipe
from tfadv.recipes import fosc as fosc_recipe
from tfadv.recipes import l2lda as l2lda_recipe
from tfadv.recipes import trades as trades_recipe
from tests import testing
from tests.recipes.test_base import constructions  # noqa: F401 (fixture)


def run(**kw):
    return config.TrainConfig(**kw).validate()


def test_bat_training_records_the_named_models_attack(constructions):  # noqa: F811
    cfg = run(pixel_range="[-1,1]", eps=8.0, step_size=2.0, num_steps=7)
    constructions["n"] = 0  # validate() parses the evaluation attacks
    cfg, kwargs = bat_recipe.training(cfg, "R-MC-LA-ImageNet", beta=9.0)
    assert constructions["n"] == 1 and "image_attack" not in kwargs
    attack = kwargs["attack"]
    assert attack.eps == pytest.approx(32 / 255) and attack.step_size == pytest.approx(16 / 255)
    assert (cfg.eps, cfg.step_size, cfg.num_steps, cfg.random_start) == (16.0, 8.0, 2, "uniform")
    assert kwargs["beta"] == 100.0 and kwargs["label_adversary"] == "la"
    assert bat_recipe.default_beta("CIFAR100") == 11.0 and bat_recipe.default_beta("svhn") == 9.0
    model = defenses.get("bat", testing.tiny_cnn(seed=0), **kwargs)
    assert model.attack is attack  # the defense keeps the recipe's attack, in input units


def test_trades_training_builds_the_kl_attack_once(constructions):  # noqa: F811
    preset = recipes.get("trades_mnist")
    cfg = run(**{f.name: getattr(preset, f.name) for f in dataclasses.fields(preset)
                 if f.name in {"model", "pixel_range", "eps", "step_size", "num_steps"}})
    constructions["n"] = 0
    cfg, kwargs = trades_recipe.training(cfg, beta=6.0)
    assert constructions["n"] == 1
    attack = kwargs["attack"]
    assert attack.eps == pytest.approx(0.3) and attack.step_size == pytest.approx(0.01)
    assert attack.loss == "kl" and cfg.random_start == "gaussian" and kwargs["beta"] == 6.0
    with pytest.raises(ValueError, match="Received: -1"):
        trades_recipe.training(cfg, beta=-1)
    l2, _ = trades_recipe.training(run(eps=127.5, num_steps=5, norm="l2"), beta=6.0,
                                   step_size_given=False)
    assert l2.step_size == pytest.approx(51.0)  # the release's 2*eps/K, recorded in pixel levels


def test_l2lda_training_gives_the_generator_input_units(constructions):  # noqa: F811
    cfg = run(eps=76.5, step_size=19.125, num_steps=10, seed=3)
    constructions["n"] = 0
    kwargs = l2lda_recipe.training(cfg, lam=0.02)
    assert constructions["n"] == 1  # the validation PGD-10
    assert kwargs["eps"] == pytest.approx(0.3) and kwargs["step_size"] == pytest.approx(0.075)
    assert kwargs["attack"].step_size == pytest.approx(0.075) and kwargs["attack"].num_steps == 10
    assert (kwargs["num_steps"], kwargs["lam"], kwargs["seed"]) == (10, 0.02, 3)
    assert l2lda_recipe.preset_lambda("l2lda_digits") == 0.02
    assert l2lda_recipe.preset_name("CIFAR10") == "l2lda_cifar10"


def test_script_presets_choose_the_papers_recipe_by_dataset():
    """The preset a training command takes for its --dataset when --preset is unset."""
    assert trades_recipe.script_preset("cifar10") == "trades_cifar10"
    assert trades_recipe.script_preset("digits") == "digits"  # not a TRADES dataset
    assert l2lda_recipe.script_preset("digits") == "l2lda_digits"
    assert l2lda_recipe.script_preset("svhn") == "svhn"


def test_fosc_recipes():
    assert fosc_recipe.paper_preset("mnist") == "fosc_mnist"
    assert fosc_recipe.paper_preset("svhn") is None
    assert fosc_recipe.default_t_prime("fosc_cifar10", 7) == 100
    assert fosc_recipe.default_t_prime(None, 50) == 40 and fosc_recipe.default_t_prime(None, 1) == 1
    assert fosc_recipe.script_preset("digits") is None
    assert fosc_recipe.script_preset("cifar10") == "fosc_cifar10"
    mnist = recipes.get("fosc_mnist")
    assert (mnist.eps, mnist.step_size, mnist.num_steps) == (76.5, 19.125, 10)


# The paper values the defense factories defaulted to before they took input units only, now the
# recipes': 8 pixel levels are 8/255 of [0,1] and 16/255 of [-1,1]; 2 are 2/255 and 4/255.
@pytest.mark.parametrize("pixel_range,width", [("[0,1]", 1), ("[-1,1]", 2)])
def test_recipes_hold_the_former_defaults_hand_computed(pixel_range, width):
    from tfadv.recipes import madry as madry_recipe

    madry = madry_recipe.defense_kwargs(pixel_range)["attack"]
    assert (madry.eps, madry.step_size) == (pytest.approx(8 * width / 255),
                                            pytest.approx(2 * width / 255))
    assert (madry.num_steps, madry.random_start, madry.norm) == (7, "uniform", "linf")
    fosc = fosc_recipe.defense_kwargs(pixel_range)["attack"]
    assert (fosc.eps, fosc.step_size) == (pytest.approx(8 * width / 255),
                                          pytest.approx(2 * width / 255))
    assert (fosc.num_steps, fosc.random_start) == (10, "uniform")
    trades = trades_recipe.defense_kwargs(pixel_range)["attack"]
    assert (trades.eps, trades.step_size) == (pytest.approx(8 * width / 255),
                                              pytest.approx(0.007 * width))
    assert (trades.num_steps, trades.random_start, trades.loss) == (10, "gaussian", "kl")
    bat = bat_recipe.defense_kwargs("R-MC-LA", pixel_range=pixel_range)["image_attack"]
    assert (bat.eps, bat.step_size) == (pytest.approx(8 * width / 255),
                                        pytest.approx(8 * width / 255))
    assert (bat.num_steps, bat.target, bat.random_start) == (1, "mc", "uniform")
    l2lda = l2lda_recipe.defense_kwargs("cifar10", pixel_range)
    assert l2lda["eps"] == pytest.approx(8 * width / 255) and l2lda["lam"] == 0.5
    mnist = l2lda_recipe.defense_kwargs("mnist", pixel_range)
    assert mnist["eps"] == pytest.approx(0.3 * width) and mnist["lam"] == 0.02
    for attack in (madry, fosc, trades, bat):
        assert str(attack.pixel_range) == pixel_range
    with pytest.raises(ValueError, match="Received: dataset='svhn'"):
        l2lda_recipe.defense_kwargs("svhn")


def test_no_defense_holds_a_size_in_pixel_levels():
    import inspect

    for module in (defenses.bat, defenses.curriculum, defenses.dynamic, defenses.l2lda,
                   defenses.madry, defenses.trades):
        source = inspect.getsource(module)
        assert "PIXELS" not in source, module.__name__
        # the one from_pixels left is an error message's hint (8 pixel levels in input units)
        assert source.count("from_pixels(") == (1 if module is defenses.l2lda else 0), module.__name__
