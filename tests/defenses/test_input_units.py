"""Defenses take sizes in input units only: the pixel-level entry points are recipes
(tfadv.recipes), and a defense keeps the input-unit sizes it is given."""

import pytest

from tfadv import defenses
from tfadv.defenses import bat as bat_lib
from tests import testing


def test_no_pixel_level_entry_point_or_recipe_in_the_defenses():
    assert not hasattr(defenses, "bat_config") and not hasattr(bat_lib, "bat_config")
    for module in (defenses.bat, defenses.trades, defenses.dynamic, defenses.l2lda):
        leftovers = {"BAT_MODELS", "TRADES_PRESETS", "L2LDA_PRESETS", "preset_name",
                     "script_preset", "IMAGENET_PRESET"} & set(vars(module))
        assert leftovers == set(), (module.__name__, leftovers)


@pytest.mark.parametrize("name", ["madry", "dynamic", "curriculum", "trades"])
def test_sizes_are_input_units(name):
    # 16/255 is 8 pixel levels of [-1,1]; the defense keeps the value it is given.
    model = defenses.get(name, testing.tiny_cnn(seed=0), eps=16 / 255, step_size=4 / 255,
                         pixel_range="[-1,1]")
    assert model.attack.eps == pytest.approx(16 / 255)
    assert model.attack.step_size == pytest.approx(4 / 255)
    with pytest.raises(ValueError, match="Received: eps=8"):  # 8 pixel levels are not input units
        defenses.get(name, testing.tiny_cnn(seed=0), eps=8, step_size=2)


def test_bat_takes_its_attack_in_input_units():
    attack = bat_lib.bat_image_attack(eps=16 / 255, pixel_range="[-1,1]")
    model = defenses.get("bat", testing.tiny_cnn(seed=0), image_attack=attack)
    assert model.attack is attack and model.eval_attack.eps == pytest.approx(16 / 255)
    with pytest.raises(ValueError, match="eps"):  # no pixel-level eps argument any more
        defenses.get("bat", testing.tiny_cnn(seed=0), eps=8)


# Without an attack or its sizes a factory has nothing in input units to train against: it names
# what to pass and the recipe holding the paper's values (pixel levels live in tfadv.recipes only).
@pytest.mark.parametrize("name,kwargs,message", [
    ("madry", {}, "madry needs attack= or eps= and step_size= in input units; the paper's values "
     "are tfadv.recipes.madry.defense_kwargs(). Received: attack=None, eps=None, step_size=None."),
    ("madry", {"eps": 0.1}, "tfadv.recipes.madry.defense_kwargs(). Received: attack=None, "
     "eps=0.1, step_size=None."),
    ("dynamic", {}, "dynamic needs attack= or eps= in input units; the paper's values are "
     "tfadv.recipes.fosc.defense_kwargs(). Received: attack=None, eps=None."),
    ("curriculum", {}, "curriculum needs attack= or eps= in input units; the paper's values are "
     "tfadv.recipes.fosc.defense_kwargs(). Received: attack=None, eps=None."),
    ("trades", {}, "trades needs attack= or eps= and step_size= in input units; the paper's values "
     "are tfadv.recipes.trades.defense_kwargs(). Received: attack=None, eps=None, step_size=None."),
    ("trades", {"eps": 0.1}, "TRADES' Linf attack needs step_size= in input units; the paper's "
     "values are tfadv.recipes.trades.defense_kwargs(). Received: step_size=None, norm='linf'."),
    ("bat", {}, "bat needs its image attack in input units: image_attack= (e.g. "
     "bat_image_attack(eps=..., step_size=...)); the paper's models are "
     "tfadv.recipes.bat.defense_kwargs(name). Received: image_attack=None."),
    ("l2lda", {"base_filters": 4}, "l2lda needs eps= (ε of eq. 5) in input units; the paper's "
     "values are tfadv.recipes.l2lda.defense_kwargs(dataset). Received: eps=None."),
    ("l2l", {"base_filters": 4},
     "tfadv.recipes.l2lda.defense_kwargs(dataset). Received: eps=None."),
])
def test_a_factory_without_sizes_is_refused(name, kwargs, message):
    with pytest.raises(ValueError) as info:
        defenses.get(name, testing.tiny_cnn(seed=0), **kwargs)
    assert str(info.value).endswith(message), str(info.value)

