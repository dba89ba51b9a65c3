"""The model adapter protocol and the read-only view of a session a planner gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.executor.plan import Plan, TaskRequest


@dataclass(frozen=True)
class Feedback:
    """What the chain and the escrow say back to the planner (product page §3: gas feedback and incentive
    signals). Fees are of the session's first chain, read with eth_feeHistory at most every few seconds;
    None when unknown (no chain, or the node did not answer in time)."""

    base_fee_wei: int | None = None  # the next block's base fee
    base_fees_wei: tuple[int, ...] = ()  # the last blocks' base fees, oldest first
    priority_fee_wei: int | None = None  # median tip paid in those blocks
    recent_gas_used: tuple[int, ...] = ()  # gas of the session's last on-chain tasks, oldest first
    budget_left: int = 0  # AGPT base units the escrow still holds for this session (as metered here)
    task_fee: int = 0  # AGPT base units every task that runs pays the executor
    agpt_per_gas: int = 0  # AGPT base units paid per gas unit used (the gas price in AGPT)

    def to_json(self) -> dict[str, Any]:
        """The form a remote model is given (amounts as decimal strings: they exceed JSON's safe integers)."""

        def text(v: int | None) -> str | None:
            return None if v is None else str(v)

        return {
            "base_fee_wei": text(self.base_fee_wei),
            "base_fees_wei": [str(v) for v in self.base_fees_wei],
            "priority_fee_wei": text(self.priority_fee_wei),
            "recent_gas_used": list(self.recent_gas_used),
            "budget_left_agpt_base_units": str(self.budget_left),
            "task_fee_agpt_base_units": str(self.task_fee),
            "gas_price_agpt_base_units": str(self.agpt_per_gas),
        }


@dataclass(frozen=True)
class SessionView:
    """What a planner may know about a session: its spec params, chains, account and earlier results."""

    session_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    chains: tuple[str, ...] = ()
    account: str = ""  # the session's SessionAccount address on its home chain ("" when off-chain)
    # Latest result per task kind (e.g. "analyze_market" -> reserves and price): the session's memory.
    memory: Mapping[str, Any] = field(default_factory=dict)
    feedback: Feedback = field(default_factory=Feedback)


class Planner(Protocol):
    """A model adapter. `name` is recorded in the context epoch; plan() must not have side effects."""

    name: str

    async def plan(self, task: TaskRequest, view: SessionView) -> Plan: ...

    async def close(self) -> None: ...
