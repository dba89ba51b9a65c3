from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_account import Account

from agentgpt.kyc import sign_attestation
from services.executor.decorators import (
    DecoratorContext,
    DecoratorDeps,
    DecoratorRegistry,
    UnknownDecorator,
    base_name,
)
from services.executor.decorators.ofac import default_list_path, load_sanctions_list
from services.executor.plan import Action, Plan, PlanDeferred, PlanRejected

ISSUER = "0x" + "44" * 32
OWNER = Account.from_key("0x" + "55" * 32).address
SANCTIONED = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"  # on the shipped list
CLEAN = "0x" + "ab" * 20
NOW = time.time()


class StubFees:
    def __init__(self, base: int, tips: list[int]) -> None:
        self.base, self.tips, self.calls = base, tips, []

    async def fee_history(self, chain: str, blocks: int, percentile: float) -> tuple[list[int], list[int]]:
        self.calls.append((chain, blocks, percentile))
        return [self.base] * (blocks + 1), self.tips


def swap_to(addr: str) -> Plan:
    return Plan("rebalance", (Action("transfer", {"chain": "home", "to": addr, "value": 1}),), est_gas=21000)


def ctx(**params: object) -> DecoratorContext:
    return DecoratorContext("1", OWNER, params, ("home",), NOW)


def registry(fees: StubFees | None = None, issuers: tuple[str, ...] = ()) -> DecoratorRegistry:
    return DecoratorRegistry(DecoratorDeps(kyc_issuers=issuers, fee_source=fees), load_entry_points=False)


def test_names_parse() -> None:
    assert base_name("kyc_tier4") == ("kyc_tier", 4)
    assert base_name("gas_optimizer_v3") == ("gas_optimizer", 3)
    assert base_name("ofac_filter") == ("ofac_filter", None)


def test_registry_knows_the_seed_decorators_and_refuses_others() -> None:
    reg = registry()
    assert all(reg.known(n) for n in ("kyc_tier4", "ofac_filter", "gas_optimizer_v3"))
    assert not reg.known("gas_optimizer_v9")
    with pytest.raises(UnknownDecorator):
        reg.create("tee_sealer")


def test_registry_accepts_plugins() -> None:
    reg = registry()

    class Tag:
        name = "tagger"

        async def apply(self, plan: Plan, c: DecoratorContext) -> Plan:
            return plan

    reg.register("tagger", lambda name, deps: Tag())
    assert reg.create("tagger").name == "tagger"


async def test_ofac_blocks_sanctioned_address_with_source_and_date() -> None:
    ofac = registry().create("ofac_filter")
    with pytest.raises(PlanRejected) as info:
        await ofac.apply(swap_to(SANCTIONED.lower()), ctx())
    assert SANCTIONED.lower() in info.value.reason
    assert "2026-11-25" in info.value.reason and "0xB10C" in info.value.reason
    assert await ofac.apply(swap_to(CLEAN), ctx()) == swap_to(CLEAN)


def test_ofac_list_is_replaceable(tmp_path: Path) -> None:
    custom = tmp_path / "list.txt"
    custom.write_text(f"# mine\n{CLEAN}\n")
    lst = load_sanctions_list(str(custom))
    assert CLEAN.upper().replace("0X", "0x") in lst and SANCTIONED not in lst
    assert len(load_sanctions_list(str(default_list_path())).addresses) > 100


async def test_kyc_tier_requires_trusted_issuer_and_tier() -> None:
    issuer = Account.from_key(ISSUER).address
    kyc = registry(issuers=(issuer,)).create("kyc_tier4")
    good = sign_attestation(ISSUER, OWNER, 4, int(NOW) + 3600)
    assert await kyc.apply(swap_to(CLEAN), ctx(kyc_attestation=good))
    with pytest.raises(PlanRejected, match="tier 3"):
        await kyc.apply(
            swap_to(CLEAN), ctx(kyc_attestation=sign_attestation(ISSUER, OWNER, 3, int(NOW) + 3600))
        )
    with pytest.raises(PlanRejected, match="not a trusted issuer"):
        await kyc.apply(
            swap_to(CLEAN), ctx(kyc_attestation=sign_attestation("0x" + "66" * 32, OWNER, 5, int(NOW) + 60))
        )
    with pytest.raises(PlanRejected, match="expired"):
        await kyc.apply(swap_to(CLEAN), ctx(kyc_attestation=sign_attestation(ISSUER, OWNER, 4, int(NOW) - 1)))
    with pytest.raises(PlanRejected, match=r"requires params\.kyc_attestation"):
        await kyc.apply(swap_to(CLEAN), ctx())
    forged = {**good, "tier": 9}  # signature no longer matches: recovers some other address
    with pytest.raises(PlanRejected, match="not a trusted issuer"):
        await kyc.apply(swap_to(CLEAN), ctx(kyc_attestation=forged))


async def test_gas_optimizer_sets_eip1559_fees_and_defers_over_cap() -> None:
    fees = StubFees(base=30 * 10**9, tips=[0, 10**9, 2 * 10**9])
    gas = registry(fees).create("gas_optimizer_v3")
    plan = await gas.apply(swap_to(CLEAN), ctx(max_base_fee_gwei=50))
    assert plan.fees is not None
    assert plan.fees.max_priority_fee_per_gas == 2 * 10**9  # median of the non-zero rewards
    assert plan.fees.max_fee_per_gas == 60 * 10**9 + 2 * 10**9
    assert fees.calls == [("home", 20, 25.0)]
    with pytest.raises(PlanDeferred, match="over the session's cap"):
        await gas.apply(swap_to(CLEAN), ctx(max_base_fee_gwei=10))
    off_chain = Plan("note", (Action("note", {}),))
    assert await gas.apply(off_chain, ctx(max_base_fee_gwei=10)) is off_chain


async def test_kyc_gate_applies_to_on_chain_plans_only() -> None:
    kyc = registry(issuers=()).create("kyc_tier2")
    off_chain = Plan("analyze", (Action("read_market", {"chain": "home", "pair": CLEAN}),))
    assert await kyc.apply(off_chain, ctx()) is off_chain
    with pytest.raises(PlanRejected):
        await kyc.apply(swap_to(CLEAN), ctx())


def test_registry_uses_the_library_names_exactly() -> None:
    reg = registry()
    for name in ("kyc_tier9", "ofac_fliter", "ofac_filter2", "gas_optimizer3", "kyc_tier_v4"):
        assert not reg.known(name), name
        with pytest.raises(UnknownDecorator, match="unknown decorator"):
            reg.create(name)
    with pytest.raises(UnknownDecorator, match=r"did you mean 'ofac_filter'\?"):
        reg.create("ofac_fliter")
    assert reg.names[:2] == ["kyc_tier1", "kyc_tier2"] and "gas_optimizer_v3" in reg.names


async def test_a_plugin_that_cannot_load_refuses_every_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import agentgpt.decorators as names
    from services.executor import decorators as executor_decorators

    eps = {
        "tee_sealer": EntryPoint("tee_sealer", "no_such_pkg.zk:make", names.ENTRY_POINT_GROUP),
        "tagger": EntryPoint(
            "tagger", "tests.unit.executor.test_decorators:make_tagger", names.ENTRY_POINT_GROUP
        ),
    }
    monkeypatch.setattr(executor_decorators, "plugin_entry_points", lambda: eps)
    reg = DecoratorRegistry(DecoratorDeps(), supported=names.DecoratorSet(plugins=eps))
    assert reg.create("tagger").name == "tagger"
    with pytest.raises(UnknownDecorator, match="'tee_sealer' is supported but cannot be loaded here"):
        reg.create("tee_sealer")
    stand_in = reg.create_or_refuse("tee_sealer")
    with pytest.raises(PlanRejected, match="ModuleNotFoundError") as info:
        await stand_in.apply(Plan("note", (Action("note", {}),)), ctx())
    assert info.value.by == "tee_sealer"  # off-chain plans too: an unknown check is never skipped


class _Tag:
    name = "tagger"

    async def apply(self, plan: Plan, c: DecoratorContext) -> Plan:
        return plan


def make_tagger(name: str, deps: DecoratorDeps) -> _Tag:
    return _Tag()


async def test_a_decorator_that_cannot_be_built_is_a_refusing_stand_in_in_spec_and_swap(
    tmp_path: Path,
) -> None:
    from services.executor.context import ContextBuilder
    from services.executor.plan import TaskRequest
    from services.executor.planners import BuiltinPlanner, SessionView

    reg = DecoratorRegistry(DecoratorDeps(ofac_list=str(tmp_path / "missing.txt")), load_entry_points=False)
    builder = ContextBuilder(reg, BuiltinPlanner, lambda name: None)  # type: ignore[arg-type,return-value]
    note = TaskRequest("1", 1, "note", {})
    ctx = builder.build("1", models={}, decorators=["kyc_tier4", "ofac_filter"])
    with pytest.raises(PlanRejected, match="ofac_filter: FileNotFoundError") as info:
        await ctx.plan(note, SessionView("1"))
    assert info.value.by == "ofac_filter"
    # a swap naming it (one that succeeded elsewhere, re-applied here) keeps refusing rather than dropping it
    plain = builder.build("2", models={}, decorators=[])
    builder.swap(plain, {"decorators": ["ofac_filter"]}, at_seq=2)
    with pytest.raises(PlanRejected, match="FileNotFoundError"):
        await plain.plan(note, SessionView("2"))
    with pytest.raises(PlanRejected, match="unknown decorator 'ofac_fliter'"):
        builder.swap(plain, {"decorators": ["ofac_fliter"]}, at_seq=3)  # not a decorator at all: refused


async def test_compliance_tier_bundle_is_kyc_tier_then_ofac_filter() -> None:
    from agentgpt.decorators import expand
    from services.executor.decorators.bundle import Bundle

    assert expand("compliance_tier2") == ("kyc_tier2", "ofac_filter")
    assert expand("ofac_filter") == ("ofac_filter",)
    with pytest.raises(UnknownDecorator, match=r"compliance_tier1\.\.compliance_tier5"):
        expand("compliance_tier9")
    issuer = Account.from_key(ISSUER).address
    bundle = registry(issuers=(issuer,)).create("compliance_tier2")
    assert isinstance(bundle, Bundle) and [p.name for p in bundle.parts] == ["kyc_tier2", "ofac_filter"]
    good = ctx(kyc_attestation=sign_attestation(ISSUER, OWNER, 2, int(NOW) + 3600))
    assert await bundle.apply(swap_to(CLEAN), good) == swap_to(CLEAN)
    with pytest.raises(PlanRejected, match="sanctions list") as info:
        await bundle.apply(swap_to(SANCTIONED), good)
    assert info.value.by == "compliance_tier2/ofac_filter"
    under = ctx(kyc_attestation=sign_attestation(ISSUER, OWNER, 1, int(NOW) + 3600))
    with pytest.raises(PlanRejected, match="requires tier 2") as info:
        await bundle.apply(swap_to(CLEAN), under)
    assert info.value.by == "compliance_tier2/kyc_tier2"


async def test_zk_batch_prover_needs_a_prover_and_changes_no_plan(tmp_path: Path) -> None:
    from agentgpt.zk.batch import Groth16Worker

    def create(deps: DecoratorDeps) -> object:
        return DecoratorRegistry(deps, load_entry_points=False).create("zk_batch_prover")

    with pytest.raises(UnknownDecorator, match="cannot be loaded here: this executor has no zk prover"):
        create(DecoratorDeps())
    with pytest.raises(UnknownDecorator, match="no zk setup at"):  # a tree without `make setup`'s setup
        create(DecoratorDeps(zk_worker=Groth16Worker(tmp_path)))
    stand_in = DecoratorRegistry(
        DecoratorDeps(zk_worker=Groth16Worker(tmp_path)), load_entry_points=False
    ).create_or_refuse("zk_batch_prover")
    with pytest.raises(PlanRejected, match="no zk setup"):  # never run unproved
        await stand_in.apply(Plan("note", (Action("note", {}),)), ctx())
    prover = DecoratorRegistry(DecoratorDeps(zk_worker=Groth16Worker()), load_entry_points=False).create(
        "zk_batch_prover"
    )
    plan = swap_to("0x" + "12" * 20)
    assert await prover.apply(plan, ctx()) is plan  # the proofs are made at checkpoints
