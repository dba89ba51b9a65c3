"""Chain-to-AI feedback (product page §3): what the planners are told about fees and the budget, and what
the built-in planner does with it."""

from __future__ import annotations

import json

import pytest

from services.executor.plan import PlanDeferred, PlanRejected, TaskRequest
from services.executor.planners.base import Feedback, SessionView
from services.executor.planners.builtin import BuiltinPlanner
from services.executor.planners.openai import OpenAIPlanner

GWEI = 10**9
TO = "0x" + "ab" * 20
MARKET = {"chain": "home", "router": "0x" + "01" * 20, "pair": "0x" + "02" * 20, "weth": "0x" + "03" * 20,
          "stable": "0x" + "04" * 20}  # fmt: skip


def view(base_fee: int | None, **params: object) -> SessionView:
    feedback = Feedback(
        base_fee_wei=base_fee,
        base_fees_wei=(10 * GWEI, 12 * GWEI),
        priority_fee_wei=GWEI,
        recent_gas_used=(100_000, 120_000),
        budget_left=5 * 10**18,
        task_fee=10**15,
        agpt_per_gas=10**9,
    )
    return SessionView("1", {"market": MARKET, **params}, ("home",), "", {}, feedback)


def transfer(**extra: object) -> TaskRequest:
    return TaskRequest("1", 3, "transfer", {"chain": "home", "to": TO, "value": 1, **extra})


def test_a_non_urgent_on_chain_task_waits_while_the_base_fee_is_over_the_ceiling() -> None:
    planner = BuiltinPlanner()
    with pytest.raises(PlanDeferred, match=r"base fee 30\.000 gwei is over the fee ceiling of 20\.000") as d:
        planner.plan_sync(transfer(), view(30 * GWEI, fee_ceiling_gwei=20, fee_retry_after=2))
    assert d.value.by == "builtin" and d.value.retry_after == 2
    with pytest.raises(PlanDeferred):
        planner.plan_sync(TaskRequest("1", 4, "rebalance", {}), view(30 * GWEI, fee_ceiling_gwei=20))
    # under the ceiling, urgent, no ceiling, or no fee known: it runs now
    for task, v in [
        (transfer(), view(20 * GWEI, fee_ceiling_gwei=20)),
        (transfer(urgent=True), view(30 * GWEI, fee_ceiling_gwei=20)),
        (transfer(), view(30 * GWEI)),
        (transfer(), view(None, fee_ceiling_gwei=20)),
    ]:
        assert planner.plan_sync(task, v).on_chain
    # off-chain work never waits for fees
    note = planner.plan_sync(TaskRequest("1", 5, "publish_report", {}), view(999 * GWEI, fee_ceiling_gwei=1))
    assert not note.on_chain


def test_a_bad_ceiling_refuses_the_task_with_the_reason() -> None:
    for bad in ("cheap", -1, float("nan")):
        with pytest.raises(PlanRejected, match="fee_ceiling_gwei"):
            BuiltinPlanner().plan_sync(transfer(), view(30 * GWEI, fee_ceiling_gwei=bad))


def test_a_rebalance_says_what_the_chain_costs_and_what_is_left() -> None:
    plan = BuiltinPlanner().plan_sync(TaskRequest("1", 4, "rebalance", {}), view(12 * GWEI))
    assert "base fee 12.000 gwei" in plan.rationale and "~110000 gas" in plan.rationale
    assert f"{5 * 10**18} AGPT base units left" in plan.rationale


def test_the_openai_adapter_sends_the_feedback_with_the_task() -> None:
    body = OpenAIPlanner("http://127.0.0.1:9", "m").request_body(transfer(), view(30 * GWEI))
    sent = json.loads(body["messages"][1]["content"])
    assert sent["feedback"] == {
        "base_fee_wei": str(30 * GWEI),
        "base_fees_wei": [str(10 * GWEI), str(12 * GWEI)],
        "priority_fee_wei": str(GWEI),
        "recent_gas_used": [100_000, 120_000],
        "budget_left_agpt_base_units": str(5 * 10**18),
        "task_fee_agpt_base_units": str(10**15),
        "gas_price_agpt_base_units": str(10**9),
    }
    assert "feedback" in body["messages"][0]["content"]
