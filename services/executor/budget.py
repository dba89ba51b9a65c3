"""Budget metering and payment rails.

Every task costs a fixed fee plus its gas at a configured AGPT-per-gas rate. A task whose estimate
would take the session past its budget is refused before anything runs (PlanRejected by "budget").
Charges accumulate and are settled through the session's payment rail at each checkpoint and at the
end: on chain that is SessionFactory.chargeBudget (paid from the escrow to the executor), batched so
off-chain tasks do not each cost a transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from services.executor.plan import Plan, PlanRejected


class PaymentRail(Protocol):
    name: str

    async def settle(self, session_id: str, amount: int, receipt_hash: bytes) -> bytes | None:
        """Pay `amount` AGPT base units for the work evidenced by `receipt_hash`; the tx hash, if any."""
        ...


class LedgerRail:
    """Off-chain metering only (the charges are in the session's task records)."""

    name = "ledger"

    async def settle(self, session_id: str, amount: int, receipt_hash: bytes) -> bytes | None:
        return None


class AgptEscrowRail:
    """SessionFactory.chargeBudget on the session's home chain, sent by the executor."""

    name = "agpt_escrow"

    def __init__(self, charge: Callable[[str, int, bytes], Awaitable[bytes]]) -> None:
        self._charge = charge

    async def settle(self, session_id: str, amount: int, receipt_hash: bytes) -> bytes | None:
        return await self._charge(session_id, amount, receipt_hash)


@dataclass
class BudgetMeter:
    budget: int  # total AGPT the session may spend (base units)
    spent: int = 0
    unsettled: int = 0  # charged to tasks, not yet settled through the rail
    task_fee: int = 10**15  # 0.001 AGPT per task
    agpt_per_gas: int = 10**9  # 1 gwei-equivalent of AGPT per gas unit

    def estimate(self, plan: Plan) -> int:
        return self.task_fee + plan.est_gas * self.agpt_per_gas

    def check(self, plan: Plan) -> int:
        """The task's estimated cost; PlanRejected if it would exceed the budget."""
        cost = self.estimate(plan)
        if self.spent + cost > self.budget:
            raise PlanRejected(
                f"over budget: this task is estimated at {cost} AGPT base units, "
                f"{self.budget - self.spent} of {self.budget} remain",
                by="budget",
            )
        return cost

    def charge(self, gas_used: int) -> int:
        cost = min(self.task_fee + gas_used * self.agpt_per_gas, self.budget - self.spent)
        self.spent += cost
        self.unsettled += cost
        return cost

    def take_unsettled(self) -> int:
        amount, self.unsettled = self.unsettled, 0
        return amount

    def restore_unsettled(self, amount: int) -> None:
        self.unsettled += amount
