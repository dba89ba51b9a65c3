"""The default model adapter: a deterministic planner (same task + same view -> same plan).

It knows the seed's treasury workflow (analyze_market, rebalance, publish_report) and plans every
other task kind as an off-chain `note`, which is what the throughput benchmark runs. Being
deterministic, a rehydrated session replans exactly what the crashed executor planned.

It uses the chain's feedback (`SessionView.feedback`): an on-chain task (rebalance, transfer, call) is
not urgent unless it says `urgent: true`, so while the next base fee is over the spec's `params.fee_ceiling_gwei` it is deferred
(retried after `params.fee_retry_after` s, default 15) rather than paid for at that price; and a
rebalance's rationale says what the chain costs and what is left of the budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.executor.plan import Action, Plan, PlanDeferred, PlanRejected, TaskRequest, plan_from_json
from services.executor.planners.base import Feedback, SessionView

SWAP_GAS = 180_000  # swapExactETHForTokens through the session account (~91k for the swap itself)
TRANSFER_GAS = 60_000
DEFAULT_REBALANCE_BPS = 3_000  # the seed's "rebalance 30% ETH -> stablecoins"
DEFAULT_SLIPPAGE_BPS = 100
DEFAULT_FEE_RETRY_AFTER = 15.0
GWEI = 10**9


def _fee_ceiling(params: Mapping[str, Any]) -> int | None:
    """The spec's fee ceiling for non-urgent on-chain work (wei), or None."""
    raw = params.get("fee_ceiling_gwei")
    if raw is None:
        return None
    try:
        ceiling = float(raw)
    except (TypeError, ValueError):
        raise PlanRejected(
            f"params.fee_ceiling_gwei must be a number of gwei, not {raw!r}", by="builtin"
        ) from None
    if not ceiling >= 0:  # (also NaN)
        raise PlanRejected(f"params.fee_ceiling_gwei must be >= 0, not {raw!r}", by="builtin")
    return int(ceiling * GWEI)


def _wait_for_fees(task: TaskRequest, view: SessionView) -> None:
    """Defer a non-urgent on-chain task while the base fee is over the session's ceiling."""
    ceiling = _fee_ceiling(view.params)
    fee = view.feedback.base_fee_wei
    if ceiling is None or fee is None or fee <= ceiling or task.args.get("urgent") is True:
        return
    retry = view.params.get("fee_retry_after", DEFAULT_FEE_RETRY_AFTER)
    raise PlanDeferred(
        f"base fee {fee / GWEI:.3f} gwei is over the fee ceiling of {ceiling / GWEI:.3f} gwei; a "
        f"non-urgent {task.kind} waits for cheaper blocks (submit it with urgent: true to pay now)",
        by="builtin",
        retry_after=float(retry) if isinstance(retry, int | float) and retry > 0 else DEFAULT_FEE_RETRY_AFTER,
    )


def _costs(feedback: Feedback) -> str:
    """What the chain costs and the budget holds, for a rationale ("" when nothing is known)."""
    parts = []
    if feedback.base_fee_wei is not None:
        parts.append(f"base fee {feedback.base_fee_wei / GWEI:.3f} gwei")
    if feedback.recent_gas_used:
        parts.append(
            f"last on-chain tasks used ~{sum(feedback.recent_gas_used) // len(feedback.recent_gas_used)} gas"
        )
    if feedback.budget_left:
        parts.append(f"{feedback.budget_left} AGPT base units left")
    return f" ({'; '.join(parts)})" if parts else ""


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
        plan = self._plan(task, view)
        if plan.on_chain:
            _wait_for_fees(task, view)
        return plan

    def _plan(self, task: TaskRequest, view: SessionView) -> Plan:
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
            rationale += _costs(view.feedback)
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
