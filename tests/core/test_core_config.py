import dataclasses

import pytest

from care_verl.core import RESCUE_MODES, SELECTORS, CareConfig


def test_defaults_are_the_papers():
    c = CareConfig()
    assert (c.k, c.m, c.neg_scale, c.refl_neg_scale, c.equalize, c.eps) == (4, 6, 0.5, None, True, 1e-6)
    assert (c.selector, c.rescue, c.rescue_gamma, c.seed) == ("cosine_topk", "raw", 0.1, 0)
    assert c.refl_scale == 0.25
    assert CareConfig(refl_neg_scale=0.4).refl_scale == 0.4
    assert CareConfig(neg_scale=0.8).refl_scale == 0.4


def test_every_field_has_help_and_config_is_frozen():
    helps = CareConfig.help()
    assert set(helps) == {f.name for f in dataclasses.fields(CareConfig)}
    assert all(isinstance(h, str) and h.strip() for h in helps.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        CareConfig().k = 3  # type: ignore[misc]


BAD = [
    ("k", 0), ("k", -1), ("k", 2.0), ("k", True), ("k", "4"),
    ("m", 0), ("m", 1.5), ("m", None),
    ("neg_scale", -0.1), ("neg_scale", 1.5), ("neg_scale", float("nan")), ("neg_scale", "0.5"),
    ("refl_neg_scale", -1.0), ("refl_neg_scale", 2.0), ("refl_neg_scale", float("inf")),
    ("equalize", 1), ("equalize", "yes"),
    ("eps", 0.0), ("eps", -1e-6), ("eps", float("inf")),
    ("selector", "cosine"), ("selector", None),
    ("rescue", "on"), ("rescue", True),
    ("rescue_gamma", 0.0), ("rescue_gamma", -0.1), ("rescue_gamma", float("nan")),
    ("rescue_anchor", "max"), ("rescue_anchor", None),
    ("seed", -1), ("seed", 1.0), ("seed", 2**63),
]


@pytest.mark.parametrize("name,value", BAD)
def test_invalid_field_raises_naming_the_field(name, value):
    with pytest.raises(ValueError, match=rf"^care\.{name} "):
        CareConfig(**{name: value})


def test_error_message_format():
    with pytest.raises(ValueError, match=r"^care\.k must be >= 1, got 0$"):
        CareConfig(k=0)


def test_every_field_is_validated():
    # Each field appears in BAD, so a new unvalidated field fails here.
    assert {n for n, _ in BAD} == {f.name for f in dataclasses.fields(CareConfig)}


@pytest.mark.parametrize("sel", SELECTORS)
@pytest.mark.parametrize("res", RESCUE_MODES)
def test_valid_names_accepted(sel, res):
    c = CareConfig(selector=sel, rescue=res, m=1, k=8, neg_scale=0.0, refl_neg_scale=1.0)
    assert c.selector == sel and c.rescue == res
