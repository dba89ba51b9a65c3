"""The default model adapter: a deterministic planner (same task + same view -> same plan).

It knows the seed's treasury workflow (analyze_market, rebalance, publish_report) and plans every
other task kind as an off-chain `note`, which is what the throughput benchmark runs. Being
deterministic, a rehydrated session replans exactly what the crashed executor planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.executor.plan import Action, Plan, PlanRejected, TaskRequest, plan_from_json
from services.executor.planners.base import SessionView

SWAP_GAS = 180_000  # swapExactETHForTokens through the session account (~91k for the swap itself)
TRANSFER_GAS = 60_000
DEFAULT_REBALANCE_BPS = 3_000  # the seed's "rebalance 30% ETH -> stablecoins"
DEFAULT_SLIPPAGE_BPS = 100


def _market(task: TaskRequest, view: SessionView) -> Mapping[str, Any]:
    market = {**dict(view.params.get("market") or {}), **dict(task.args.get("market") or {})}
    if not market:
        raise PlanRejected(
            f"task {task.kind} needs params.market (chain, router, pair, weth, stable) in the session spec",
            by="builtin",
        )
    return market


class BuiltinPlanner:
    name = "builtin"

    def __init__(self, model: str = "builtin") -> None:
        # The model name the spec asked for; recorded so the dashboard says what stood in for it.
        self.model = model

    async def plan(self, task: TaskRequest, view: SessionView) -> Plan:
        return self.plan_sync(task, view)

    def plan_sync(self, task: TaskRequest, view: SessionView) -> Plan:
        if task.kind == "analyze_market":
            m = _market(task, view)
            return Plan(
                task.kind,
                (
                    Action(
                        "read_market",
                        {
                            "chain": str(m.get("chain", view.chains[0] if view.chains else "")),
                            "pair": m.get("pair", ""),
                        },
                    ),
                ),
                score=0.9,
                rationale="read the pool reserves to price ETH in the stablecoin",
            )
        if task.kind == "rebalance":
            m = _market(task, view)
            bps = int(task.args.get("fraction_bps", DEFAULT_REBALANCE_BPS))
            analysed = view.memory.get("analyze_market")
            rationale = f"swap {bps / 100:g}% of the treasury's ETH into the stablecoin"
            if isinstance(analysed, Mapping) and "price" in analysed:
                rationale += f" at ~{analysed['price']} per ETH"
            action = {
                "chain": str(m.get("chain", view.chains[0] if view.chains else "")),
                "router": m.get("router", ""),
                "path": [m.get("weth", ""), m.get("stable", "")],
                "fraction_bps": bps,
                "slippage_bps": int(task.args.get("slippage_bps", DEFAULT_SLIPPAGE_BPS)),
            }
            return plan_from_json(
                task,
                {
                    "actions": [{"kind": "swap_exact_eth_for_tokens", "params": action}],
                    "score": 0.8,
                    "rationale": rationale,
                    "est_gas": SWAP_GAS,
                },
            )
        if task.kind == "publish_report":
            title = str(task.args.get("title", "holdings report"))
            return Plan(
                task.kind,
                (Action("publish_report", {"title": title}),),
                score=0.95,
                rationale="publish the holdings report to IPFS",
            )
        if task.kind in ("transfer", "call"):
            # Explicit on-chain actions: the task's args are the action (validated like a model's answer).
            return plan_from_json(
                task,
                {
                    "actions": [{"kind": task.kind, "params": dict(task.args)}],
                    "est_gas": TRANSFER_GAS if task.kind == "transfer" else 200_000,
                },
            )
        if "plan" in task.args:
            # A literal plan (tests and operators): validated exactly like a remote model's answer.
            return plan_from_json(task, task.args["plan"])
        return Plan(
            task.kind, (Action("note", dict(task.args)),), score=1.0, rationale="off-chain bookkeeping"
        )

    async def close(self) -> None:
        return None
