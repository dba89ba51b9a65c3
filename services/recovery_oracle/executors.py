"""ExecutorPool: the executors the oracle can move sessions to, and which of them are alive.

Every `interval` seconds each configured executor is asked for its status (GetExecutorStatus, one short
deadline, no retry). An executor that fails `failures` probes in a row is *dead*: `on_dead(address)` is
called once (the detector recovers the sessions assigned to it), and it is not chosen again until it
answers. One that answers `draining` (shutting down, handing its sessions off) is alive but not chosen.

`choose()` picks the live, non-draining executor with the most free capacity, other than the ones
excluded (the failed one), and, when a bonding check is given, bonded on the home chain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agentgpt.clients import ExecutorClient
from agentgpt.errors import RpcError
from agentgpt.executor.v1 import executor_pb2 as ex
from agentgpt.runtime.tasks import cancelling

log = logging.getLogger("agentgpt.recovery.executors")


@dataclass
class Member:
    target: str  # gRPC address
    client: ExecutorClient
    status: ex.GetExecutorStatusResponse | None = None
    failures: int = 0
    dead: bool = False
    last_ok: float = 0.0
    last_error: str = ""
    since: float = field(default_factory=time.monotonic)

    @property
    def address(self) -> str:
        return self.status.address if self.status is not None else ""

    @property
    def free(self) -> int:
        if self.status is None:
            return 0
        return int(self.status.capacity) - len(self.status.sessions)


class ExecutorPool:
    def __init__(
        self,
        targets: tuple[str, ...],
        *,
        interval: float = 0.5,
        failures: int = 2,
        timeout: float = 1.0,
        on_dead: Callable[[str], Awaitable[None]] | None = None,
        bonded: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.members = [
            Member(t, ExecutorClient(t, identity="recovery_oracle")) for t in dict.fromkeys(targets) if t
        ]
        self.interval = interval
        self.failures = failures
        self.timeout = timeout
        self.on_dead = on_dead
        self.bonded = bonded

    async def close(self) -> None:
        for m in self.members:
            await m.client.close()

    def by_address(self, address: str) -> Member | None:
        for m in self.members:
            if m.address and m.address.lower() == address.lower():
                return m
        return None

    def live(self) -> list[Member]:
        return [m for m in self.members if m.status is not None and not m.dead]

    async def probe(self, m: Member) -> None:
        try:
            status = await asyncio.wait_for(
                m.client.get_status(timeout=self.timeout, retry=False), self.timeout + 0.5
            )
        except (RpcError, TimeoutError, OSError) as exc:
            if cancelling():
                raise asyncio.CancelledError from None
            m.failures += 1
            m.last_error = str(exc)[:300]
            if not m.dead and m.failures >= self.failures and m.status is not None:
                m.dead = True
                m.since = time.monotonic()
                log.warning(
                    "executor %s (%s) stopped answering (%d probes: %s)",
                    m.status.executor_id,
                    m.target,
                    m.failures,
                    m.last_error,
                )
                if self.on_dead is not None:
                    await self.on_dead(m.address)
            return
        if m.dead:
            log.info("executor %s (%s) answers again", status.executor_id, m.target)
        m.status, m.failures, m.dead, m.last_ok = status, 0, False, time.monotonic()

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(m) for m in self.members))

    async def run(self) -> None:
        """Background job: probe every executor every `interval` seconds."""
        while True:
            await self.probe_all()
            await asyncio.sleep(self.interval)

    async def choose(self, exclude: set[str]) -> Member | None:
        """The live, non-draining, bonded executor with the most free capacity, not in `exclude`
        (addresses, any case)."""
        skip = {a.lower() for a in exclude if a}
        candidates = sorted(
            (
                m
                for m in self.live()
                if m.address.lower() not in skip
                and m.status is not None
                and not m.status.draining
                and m.free > 0
            ),
            key=lambda m: -m.free,
        )
        for m in candidates:
            if self.bonded is None or await self.bonded(m.address):
                return m
        return None

    def describe(self) -> str:
        """One line per executor, for error messages ("none healthy: ...")."""
        parts = []
        for m in self.members:
            if m.status is None:
                parts.append(f"{m.target}: never answered ({m.last_error or 'not probed yet'})")
            elif m.dead:
                parts.append(f"{m.status.executor_id}: not answering")
            elif m.status.draining:
                parts.append(f"{m.status.executor_id}: draining")
            else:
                parts.append(f"{m.status.executor_id}: {m.free} free of {m.status.capacity}")
        return "; ".join(parts) or "no executors configured (AGENTGPT_EXECUTOR_ADDRS)"
