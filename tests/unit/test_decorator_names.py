"""agentgpt.decorators: the one list of decorator names the session service and the executor share."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import agentgpt.decorators as names
from agentgpt.decorators import (
    GAS_OPTIMIZER_VERSIONS,
    KYC_TIERS,
    DecoratorSet,
    UnknownDecorator,
    supported_decorators,
)
from agentgpt.spec import parse_yaml
from services.executor.decorators import gas

DEMO_SPEC_DECORATORS = ("kyc_tier4", "ofac_filter", "gas_optimizer_v3")  # README / apps/demo


def test_every_builtin_the_demo_uses_resolves() -> None:
    reg = DecoratorSet()
    assert [reg.resolve(n).implementation for n in DEMO_SPEC_DECORATORS] == [
        "kyc_tier",
        "ofac_filter",
        "gas_optimizer",
    ]
    assert reg.resolve("kyc_tier4").parameter == 4 and reg.resolve("gas_optimizer_v3").parameter == 3
    from apps.demo.treasury import treasury_spec_yaml

    demo = parse_yaml(treasury_spec_yaml(["arbitrum", "polygon"], {"max_base_fee_gwei": 50}))
    assert demo.decorators == DEMO_SPEC_DECORATORS and all(reg.known(n) for n in demo.decorators)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ofac_fliter", "unknown decorator 'ofac_fliter' (did you mean 'ofac_filter'?); supported: "),
        ("kyc_tier9", "kyc_tier is supported as kyc_tier1..kyc_tier5"),
        ("kyc_tier0", "kyc_tier is supported as kyc_tier1..kyc_tier5"),
        ("kyc_tier04", "did you mean 'kyc_tier4'?"),
        ("kyc_tier", "unknown decorator 'kyc_tier'"),
        ("gas_optimizer_v9", "gas_optimizer is supported as gas_optimizer_v1..gas_optimizer_v3"),
        ("gas_optimizer3", "did you mean 'gas_optimizer_v3'?"),
        ("ofac_filter2", "did you mean 'ofac_filter'?"),  # no fallback to a family by base name
        (
            "tee_sealer",
            "supported: kyc_tier1..kyc_tier5, ofac_filter, gas_optimizer_v1..gas_optimizer_v3, compliance_tier1..compliance_tier5, zk_batch_prover",
        ),
    ],
)
def test_unknown_names_are_refused_saying_what_exists(name: str, fragment: str) -> None:
    with pytest.raises(UnknownDecorator) as info:
        DecoratorSet().resolve(name)
    assert fragment in info.value.message and info.value.name == name
    assert not DecoratorSet().known(name)


def test_the_families_match_the_executor_implementations() -> None:
    assert set(GAS_OPTIMIZER_VERSIONS) == set(gas.VERSIONS)
    assert KYC_TIERS == (1, 2, 3, 4, 5)


def test_plugins_are_exact_names_and_may_replace_a_family(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        EntryPoint("tee_sealer", "my_pkg.zk:make", names.ENTRY_POINT_GROUP),
        EntryPoint("ofac_filter", "my_pkg.ofac:make", names.ENTRY_POINT_GROUP),  # replaces the built-in
        EntryPoint("Bad-Name", "my_pkg.bad:make", names.ENTRY_POINT_GROUP),  # not a decorator name
    ]
    monkeypatch.setattr(names, "entry_points", lambda group: eps if group == names.ENTRY_POINT_GROUP else [])
    supported_decorators.cache_clear()
    try:
        reg = supported_decorators()
        assert reg.resolve("tee_sealer").implementation == "tee_sealer"
        assert reg.resolve("ofac_filter").implementation == "ofac_filter"
        assert reg.plugins == ("tee_sealer",)
        for unknown in ("tee_sealer2", "Bad-Name", "bad_name"):
            assert not reg.known(unknown)
        assert "tee_sealer" in reg.describe()
    finally:
        supported_decorators.cache_clear()
