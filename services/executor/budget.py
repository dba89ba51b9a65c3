"""Budget metering and payment rails.

Every task that runs costs a fixed fee plus its gas at a configured AGPT-per-gas rate (a task refused
before it ran costs nothing). A task whose estimate would take the session past its budget is refused
before anything runs (PlanRejected by "budget").

Charges are settled from the durable record, never from memory alone: a task's cost is recorded with
the task in SessionDB when it commits, and a settlement pays for the committed tasks after the last
settled one, up to a task seq. On chain that is SessionFactory.chargeBudget(session, throughSeq, ...),
which refuses any seq already covered, so a charge is never paid twice (a retry after a crash, another
executor after a takeover) and never lost (whoever holds the session next settles what is unsettled).
Settlements are batched (at checkpoints and when the queue drains), so off-chain tasks do not each cost
a transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from services.executor.plan import Plan, PlanRejected


class PaymentRail(Protocol):
    name: str

    async def settle(
        self, session_id: str, through_seq: int, amount: int, receipt_hash: bytes
    ) -> bytes | None:
        """Pay `amount` AGPT base units for the session's unsettled tasks up to `through_seq`, evidenced by
        `receipt_hash`; the tx hash, if any."""
        ...

    async def settled_through(self, session_id: str) -> int | None:
        """The highest task seq already paid for (None: this rail keeps no record; the task records are
        the settlement)."""
        ...


class LedgerRail:
    """Off-chain metering only (the charges are in the session's task records)."""

    name = "ledger"

    async def settle(
        self, session_id: str, through_seq: int, amount: int, receipt_hash: bytes
    ) -> bytes | None:
        return None

    async def settled_through(self, session_id: str) -> int | None:
        return None


class AgptEscrowRail:
    """SessionFactory.chargeBudget on the session's home chain, sent by the executor."""

    name = "agpt_escrow"

    def __init__(
        self,
        charge: Callable[[str, int, int, bytes], Awaitable[bytes]],
        charged_through: Callable[[str], Awaitable[int]],
    ) -> None:
        self._charge = charge
        self._charged_through = charged_through

    async def settle(
        self, session_id: str, through_seq: int, amount: int, receipt_hash: bytes
    ) -> bytes | None:
        return await self._charge(session_id, through_seq, amount, receipt_hash)

    async def settled_through(self, session_id: str) -> int | None:
        return await self._charged_through(session_id)


@dataclass
class BudgetMeter:
    budget: int  # total AGPT the session may spend (base units)
    spent: int = 0  # committed charges (what SessionDB records)
    task_fee: int = 10**15  # 0.001 AGPT per task
    agpt_per_gas: int = 10**9  # 1 gwei-equivalent of AGPT per gas unit
    # (task seq, cost) of committed tasks not known to be settled, in seq order
    unsettled_tasks: list[tuple[int, int]] = field(default_factory=list)

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

    def cost_of(self, gas_used: int) -> int:
        """What a task that ran and used `gas_used` costs (capped by what is left)."""
        return max(0, min(self.task_fee + gas_used * self.agpt_per_gas, self.budget - self.spent))

    def commit(self, seq: int, cost: int) -> None:
        """Task `seq` committed with `cost` (call only once SessionDB holds it)."""
        self.spent += cost
        if cost:
            self.unsettled_tasks.append((seq, cost))

    @property
    def unsettled(self) -> int:
        return sum(cost for _, cost in self.unsettled_tasks)

    def settled_through(self, seq: int) -> None:
        """Everything up to task `seq` is paid for."""
        self.unsettled_tasks = [(s, c) for s, c in self.unsettled_tasks if s > seq]
