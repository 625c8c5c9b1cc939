"""One rule for every registry (tfadv.registry): ``get`` returns the built object, ``lookup`` the
factory, unknown names fail with the same message, and no package attribute named like an entry
is anything but the submodule of that name."""

import inspect
import re

import pytest

from tfadv import models
import tfadv
from tfadv import attacks, data, defenses, losses, recipes, registry
from tfadv.attacks import steps, targets
from tfadv.data import augment
from tests import testing

# (package a user reaches the entries from, its registry)
REGISTRIES = [
    (attacks, attacks.ATTACKS),
    (defenses, defenses.DEFENSES),
    (recipes, recipes.PRESETS),
    (tfadv, losses.LOSSES),
    (attacks, steps.STEPS),
    (attacks, targets.TARGETS),
    (data, data.DATASETS),
    (data, augment.AUGMENTATIONS),
    (models, models.REGISTRY),
]
IDS = [reg.kind for _, reg in REGISTRIES]


@pytest.mark.parametrize("package, reg", REGISTRIES, ids=IDS)
def test_attribute_named_like_an_entry_is_its_module(package, reg):
    assert list(reg.names()), reg.kind
    for name in reg.names():
        value = getattr(package, name, None)
        assert value is None or inspect.ismodule(value), (reg.kind, name, value)


@pytest.mark.parametrize("package, reg", REGISTRIES, ids=IDS)
def test_package_does_not_export_a_factory_function(package, reg):
    factories = [f for f in reg._entries.values() if not inspect.isclass(f)]
    exported = [key for key, value in vars(package).items() if any(value is f for f in factories)]
    assert exported == [], (reg.kind, exported)


def test_defense_modules_import_plainly():
    from tfadv.defenses import (bat, curriculum, dynamic, fast, free, l2lda, madry, mart,
                                natural, trades)

    for module, name in [(bat, "bat"), (curriculum, "curriculum"), (dynamic, "dynamic"),
                         (fast, "fast"), (free, "free"), (l2lda, "l2lda"), (madry, "madry"),
                         (mart, "mart"),
                         (natural, "natural"),
                         (trades, "trades")]:
        assert inspect.ismodule(module)
        assert defenses.DEFENSES.lookup(name) is getattr(module, name)


@pytest.mark.parametrize("name", ["bat", "curriculum", "dynamic", "fast", "free", "l2l",
                                  "l2lda", "madry", "mart", "natural", "trades"])
def test_defense_get_builds_the_model(name):
    net = testing.tiny_cnn(seed=0)
    model = defenses.get(name, net, **testing.paper_kwargs(name),
                         **({"base_filters": 4} if name.startswith("l2l") else {}))
    assert isinstance(model, defenses.AdversarialModel)
    assert model.network is net


def test_get_returns_the_built_object():
    assert isinstance(attacks.get("pgd", eps=0.1), attacks.IterativeAttack)
    assert isinstance(attacks.get("noop"), attacks.NoOpAttack)
    assert attacks.get("fgsm", eps=0.1).get_config()["num_steps"] == 1
    for name in recipes.PRESETS.names():
        assert isinstance(recipes.get(name), recipes.Preset), name
    assert recipes.get("digits").model == "digits_cnn"
    assert isinstance(steps.get("l2"), steps.L2Step)
    assert isinstance(steps.get("linf"), steps.LinfStep)
    assert losses.get("ce") is losses.ce and losses.get("kl") is losses.trades_kl
    assert losses.get("dlr") is losses.dlr and losses.get("mart") is losses.mart


def _unknown(kind, names, received="nope"):
    return (rf"^Unknown {kind} '{received}'\. Expected one of: {re.escape(', '.join(names))}\. "
            rf"Received: '{received}'\.$")


@pytest.mark.parametrize("package, reg", REGISTRIES, ids=IDS)
def test_unknown_name_message(package, reg):
    for method in (reg.get, reg.lookup):
        with pytest.raises(ValueError, match=_unknown(reg.kind, reg.names())):
            method("nope")


def test_package_entry_points_give_the_registry_message():
    cases = [
        (lambda: attacks.get("nope", eps=0.1), attacks.ATTACKS),
        (lambda: defenses.get("nope", testing.tiny_cnn(seed=0)), defenses.DEFENSES),
        (lambda: recipes.get("nope"), recipes.PRESETS),
        (lambda: losses.get("nope"), losses.LOSSES),
        (lambda: steps.get("nope"), steps.STEPS),
        (lambda: models.build("nope", num_classes=10, input_shape=(8, 8, 1)), models.REGISTRY),
    ]
    for call, reg in cases:
        with pytest.raises(ValueError, match=_unknown(reg.kind, reg.names())):
            call()


def test_bad_parameters_are_value_and_type_errors():
    expected = r"^Bad parameters for attack 'pgd': .*Received: \{'eps': 0.1, 'nope': 1\}\.$"
    with pytest.raises(registry.BadParametersError, match=expected) as e:
        attacks.get("pgd", eps=0.1, nope=1)
    assert isinstance(e.value, ValueError) and isinstance(e.value, TypeError)
    with pytest.raises(registry.BadParametersError,
                       match=r"Bad parameters for defense 'madry': .*network.*Received: \{\}\."):
        defenses.DEFENSES.get("madry")  # no network


def test_register_refuses_a_second_entry_of_a_name():
    reg = registry.Registry("widget")
    reg.register("a", "B")(dict)
    assert reg.get("b", x=1) == {"x": 1} and reg.lookup("A") is dict
    with pytest.raises(ValueError, match="A widget named 'a' is already registered"):
        reg.register("A")(list)
    with pytest.raises(ValueError, match=r"Received: \(\)\."):
        reg.register()
