from __future__ import annotations

import pytest

from services.executor.plan import PlanRejected, TaskRequest, plan_from_json
from services.executor.planners import BuiltinPlanner, SessionView

A = "0x" + "11" * 20
B = "0x" + "22" * 20
C = "0x" + "33" * 20
MARKET = {"chain": "home", "router": A, "pair": B, "weth": C, "stable": A}


def task(kind: str, **args: object) -> TaskRequest:
    return TaskRequest("1", 1, kind, args)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("not an object", "plan"),
        ({"actions": []}, "actions"),
        ({"actions": [{"kind": "rm_rf"}]}, "actions[0].kind"),
        (
            {"actions": [{"kind": "transfer", "params": {"chain": "x", "to": "0x12", "value": 1}}]},
            "params.to",
        ),
        ({"actions": [{"kind": "transfer", "params": {"chain": "x", "to": A}}]}, "needs value"),
        ({"actions": [{"kind": "note"}], "score": 7}, "score"),
        ({"actions": [{"kind": "call", "params": {"chain": "x", "target": A, "data": "zz"}}]}, "params.data"),
        (
            {
                "actions": [
                    {
                        "kind": "swap_exact_eth_for_tokens",
                        "params": {**MARKET, "path": [A], "fraction_bps": 1, "slippage_bps": 1},
                    }
                ]
            },
            "params.path",
        ),
    ],
)
def test_malformed_plans_are_rejected_naming_the_field(raw: object, field: str) -> None:
    with pytest.raises(PlanRejected) as info:
        plan_from_json(task("x"), raw)
    assert field in info.value.reason
    assert info.value.by == "plan"


async def test_builtin_is_deterministic_and_plans_the_treasury_workflow() -> None:
    planner = BuiltinPlanner()
    view = SessionView("1", params={"market": MARKET}, chains=("home",))
    a = await planner.plan(task("rebalance"), view)
    b = await planner.plan(task("rebalance"), view)
    assert a == b
    (swap,) = a.actions
    assert swap.kind == "swap_exact_eth_for_tokens"
    assert swap.params["fraction_bps"] == 3000 and swap.params["path"] == [C, A]
    assert a.on_chain and a.est_gas > 0
    assert set(a.addresses()) == {A, C}
    read = await planner.plan(task("analyze_market"), view)
    assert read.actions[0].kind == "read_market" and not read.on_chain
    report = await planner.plan(task("publish_report", title="13F"), view)
    assert report.actions[0].params == {"title": "13F"}


async def test_builtin_off_chain_note_and_missing_market() -> None:
    planner = BuiltinPlanner()
    plan = await planner.plan(task("count", n=3), SessionView("1"))
    assert plan.actions[0].kind == "note" and not plan.on_chain
    with pytest.raises(PlanRejected, match=r"params\.market"):
        await planner.plan(task("rebalance"), SessionView("1"))


async def test_literal_plan_arg_is_validated() -> None:
    with pytest.raises(PlanRejected):
        await BuiltinPlanner().plan(task("x", plan={"actions": [{"kind": "selfdestruct"}]}), SessionView("1"))
