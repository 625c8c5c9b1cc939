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
