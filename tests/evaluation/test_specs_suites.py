"""Spec grammar for any registered attack, and the suites (registered names checked at run time)."""

import pytest

from tfadv import attacks
from tfadv.evaluation import specs as specs_lib


class RecordingAttack(attacks.Attack):
    """Keeps its parameters; used to see what the grammar passes to a registered factory."""

    name = "recording"

    def __init__(self, **params):
        self.params = params

    def __call__(self, model_fn, x, y, **kwargs):
        return x

    def model_calls_per_example(self):
        return int(self.params.get("num_steps", 0))


@pytest.fixture
def recording(monkeypatch):
    entries = dict(attacks.ATTACKS._entries)
    entries["recorder"] = lambda **params: RecordingAttack(**params)

    def with_seed(*, eps, pixel_range, seed=None, **params):
        return RecordingAttack(eps=eps, pixel_range=pixel_range, seed=seed, **params)

    entries["seeded"] = with_seed
    monkeypatch.setattr(attacks.ATTACKS, "_entries", entries)


def test_registered_attack_params_pass_through_with_pixel_conversion(recording):
    s = specs_lib.parse("recorder(eps=4,step=1,steps=7,n_queries=100,loss=DLR,flag=true,p=0.5,x=none)",
                        eps=8, pixel_range="[-1,1]")
    p = s.attack.params
    assert p["eps"] == pytest.approx(8 / 255) and p["step_size"] == pytest.approx(2 / 255)
    assert p["num_steps"] == 7 and p["n_queries"] == 100 and p["loss"] == "dlr"
    assert p["flag"] is True and p["p"] == 0.5 and p["x"] is None
    assert str(p["pixel_range"]) == "[-1,1]" and "seed" not in p
    assert s.label.startswith("recorder-7 (")
    assert "eps 4" in s.label and "step 1" in s.label
    assert s.params["attack"] == "recorder" and s.params["eps_pixels"] == 4


def test_bare_name_and_name_k_and_seed_only_when_accepted(recording):
    s = specs_lib.parse("recorder", eps=8, pixel_range="[0,1]", seed=3)
    assert s.label == "recorder" and s.attack.params["eps"] == pytest.approx(8 / 255)
    assert "seed" not in s.attack.params
    s = specs_lib.parse("seeded-30", eps=8, pixel_range="[0,1]", seed=3)
    assert s.label == "seeded-30" and s.attack.params["num_steps"] == 30 and s.attack.params["seed"] == 3
    s = specs_lib.parse("recorder(source=/Some/Path)", eps=8, pixel_range="[0,1]")
    assert s.attack.params["source"] == "/Some/Path"


def test_real_registered_attacks_and_display_names():
    specs = specs_lib.parse_list("clean,apgd_ce(n_iter=5),cw_linf-30,mifgsm,deepfool(norm=linf)",
                                 eps=8, pixel_range="[0,1]")
    assert list(specs) == ["clean", "APGD-CE (n_iter 5)", "CW-Linf-30", "MI-FGSM", "DeepFool (norm linf)"]
    assert specs["CW-Linf-30"].attack.num_steps == 30 and specs["CW-Linf-30"].attack.loss == "cw"
    assert specs["APGD-CE (n_iter 5)"].attack.eps == pytest.approx(8 / 255)


@pytest.mark.parametrize("bad", ["nosuchattack", "nosuchattack(eps=2)", "recorder(eps=0.3)",
                                 "recorder(1)", "recorder(steps=2,num_steps=3)", "recorder(eps=x)"])
def test_errors(recording, bad):
    with pytest.raises(ValueError, match="Received"):
        specs_lib.parse_list(bad, eps=8, pixel_range="[0,1]")


def test_bad_parameter_of_a_real_attack_is_a_value_error():
    with pytest.raises(ValueError, match="Received"):
        specs_lib.parse("square(no_such_param=1)", eps=8, pixel_range="[0,1]")


def test_suites_list_their_attacks():
    assert specs_lib.suite_attack_names("autoattack") == ["noop", "autoattack"]
    paper = specs_lib.suite_attack_names("paper")
    assert paper == ["noop", "fgsm", "pgd", "cw_linf", "mifgsm", "deepfool"]
    full = specs_lib.suite_attack_names("full")
    assert set(paper) | {"autoattack", "apgd_ce", "apgd_t", "fab_t", "square"} == set(full)
    with pytest.raises(ValueError, match="Received: 'robustbench'"):
        specs_lib.suite_attack_names("robustbench")


def test_suite_specs_when_everything_is_registered(recording, monkeypatch):
    entries = dict(attacks.ATTACKS._entries)
    for name in ("autoattack", "apgd_ce", "apgd_t", "fab_t", "square", "cw_linf", "mifgsm", "deepfool"):
        entries[name] = lambda **params: RecordingAttack(**params)
    monkeypatch.setattr(attacks.ATTACKS, "_entries", entries)
    specs = specs_lib.parse_suite("paper", eps=8, pixel_range="[0,1]")
    assert list(specs) == ["clean", "FGSM", "PGD-20", "PGD-100", "CW-20", "CW-Linf-30", "MI-FGSM",
                           "DeepFool (norm linf)"]
    full = specs_lib.parse_suite("full", eps=8, pixel_range="[0,1]")
    assert list(full)[:2] == ["clean", "AutoAttack"]
    assert {"APGD-CE", "APGD-T", "FAB-T", "Square"} <= set(full)
    assert list(specs_lib.parse_suite("AutoAttack", eps=8, pixel_range="[0,1]")) == ["clean", "AutoAttack"]


def test_suite_with_unregistered_attack_names_it(monkeypatch):
    entries = {k: v for k, v in attacks.ATTACKS._entries.items() if k not in ("square", "fab_t")}
    monkeypatch.setattr(attacks.ATTACKS, "_entries", entries)
    with pytest.raises(ValueError, match=r"fab_t, square.*Received: suite='full'"):
        specs_lib.parse_suite("full", eps=8, pixel_range="[0,1]")
    entries.pop("autoattack", None)
    with pytest.raises(ValueError, match=r"not registered.*autoattack"):
        specs_lib.parse_suite("autoattack", eps=8, pixel_range="[0,1]")


@pytest.mark.parametrize("text", ["fgsm", "pgd-10", "cw-20", "pgd(steps=5,target=mc)"])
def test_evaluation_attacks_stop_early_by_default(text):
    spec = specs_lib.parse(text, eps=8.0, pixel_range="[0,1]")
    assert spec.attack.early_stop is True
    assert spec.params["early_stop"] is True


def test_early_stop_can_be_switched_off_and_is_checked():
    spec = specs_lib.parse("pgd(steps=5,early_stop=false)", eps=8.0, pixel_range="[0,1]")
    assert spec.attack.early_stop is False
    assert spec.label == "PGD-5 (no early stop)"
    with pytest.raises(ValueError, match=r"early_stop must be true or false. Received: 'maybe'"):
        specs_lib.parse("pgd(steps=5,early_stop=maybe)", eps=8.0, pixel_range="[0,1]")
