from __future__ import annotations

import pytest

from services.executor.budget import BudgetMeter, LedgerRail
from services.executor.context import ContextBuilder
from services.executor.decorators import DecoratorDeps, DecoratorRegistry
from services.executor.plan import Action, Plan, PlanRejected, TaskRequest
from services.executor.planners import BuiltinPlanner, SessionView

SANCTIONED = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"


class NamedRail(LedgerRail):
    def __init__(self, name: str) -> None:
        self.name = name


def rails(name: str) -> LedgerRail:
    if name not in ("ledger", "agpt_escrow"):
        raise KeyError(name)
    return NamedRail(name)


def builder() -> ContextBuilder:
    reg = DecoratorRegistry(DecoratorDeps(), load_entry_points=False)
    return ContextBuilder(reg, lambda model: BuiltinPlanner(model), rails)


def transfer(to: str) -> TaskRequest:
    return TaskRequest("1", 1, "transfer", {"chain": "home", "to": to, "value": 5})


async def test_swaps_are_versioned_epochs_and_take_effect() -> None:
    b = builder()
    ctx = b.build("1", models={"execution": "web3-agent-v4"}, decorators=[])
    assert ctx.epoch.epoch == 1 and ctx.epoch.adapters == {"execution": "builtin"}
    plan = await ctx.plan(transfer(SANCTIONED), SessionView("1"))
    assert plan.checked_by == ()
    epoch2 = b.swap(ctx, {"decorators": ["ofac_filter"], "payment_rail": "agpt_escrow"}, at_seq=7)
    assert (epoch2.epoch, epoch2.since_seq, epoch2.decorators, epoch2.payment_rail) == (
        2,
        7,
        ("ofac_filter",),
        "agpt_escrow",
    )
    assert ctx.rail.name == "agpt_escrow"
    with pytest.raises(PlanRejected, match="sanctions list"):
        await ctx.plan(transfer(SANCTIONED), SessionView("1"))
    epoch3 = b.swap(ctx, {"models": {"risk": "gpt-4-enterprise-finance"}}, at_seq=9)
    assert epoch3.epoch == 3 and epoch3.models == {
        "execution": "web3-agent-v4",
        "risk": "gpt-4-enterprise-finance",
    }
    assert [e.epoch for e in ctx.history] == [1, 2, 3]


def test_bad_swap_changes_nothing() -> None:
    b = builder()
    ctx = b.build("1", models={}, decorators=["ofac_filter"])
    for change in ({"decorators": ["nope_v1"]}, {"payment_rail": "paypal"}, {"colour": "red"}, {}):
        with pytest.raises(PlanRejected):
            b.swap(ctx, change, at_seq=2)
    assert ctx.epoch.epoch == 1 and [d.name for d in ctx.decorators] == ["ofac_filter"]


async def test_unknown_decorator_in_spec_refuses_every_plan() -> None:
    """Never skipped: the session's context holds a stand-in that refuses each plan, saying why."""
    ctx = builder().build("1", models={}, decorators=["ofac_filter", "tee_sealer"])
    assert [d.name for d in ctx.decorators] == ["ofac_filter", "tee_sealer"]
    with pytest.raises(PlanRejected, match="unknown decorator 'tee_sealer'") as info:
        await ctx.plan(TaskRequest("1", 1, "note", {}), SessionView("1"))
    assert info.value.by == "tee_sealer"


def test_budget_refuses_tasks_over_budget() -> None:
    meter = BudgetMeter(budget=10**15 + 100_000 * 10**9, task_fee=10**15, agpt_per_gas=10**9)
    plan = Plan("x", (Action("note", {}),), est_gas=100_000)
    assert meter.check(plan) == meter.budget
    meter.commit(1, meter.cost_of(gas_used=50_000))
    with pytest.raises(PlanRejected, match="over budget") as info:
        meter.check(plan)
    assert info.value.by == "budget"
    assert meter.unsettled == meter.spent > 0


def test_budget_meter_settles_by_task_seq() -> None:
    meter = BudgetMeter(budget=10**18, task_fee=10, agpt_per_gas=1)
    assert meter.cost_of(5) == 15
    for seq, gas in ((1, 0), (2, 5), (3, 0)):
        meter.commit(seq, meter.cost_of(gas))
    meter.commit(4, 0)  # a refused task costs nothing and is nothing to settle
    assert (meter.spent, meter.unsettled, [s for s, _ in meter.unsettled_tasks]) == (35, 35, [1, 2, 3])
    meter.settled_through(2)  # what the chain says was paid for
    assert meter.unsettled_tasks == [(3, 10)] and meter.spent == 35
    meter.settled_through(3)
    assert meter.unsettled == 0


def test_budget_meter_never_charges_past_the_budget() -> None:
    meter = BudgetMeter(budget=25, task_fee=10, agpt_per_gas=1)
    meter.commit(1, meter.cost_of(10))
    assert meter.cost_of(100) == 5 and meter.cost_of(0) == 5
