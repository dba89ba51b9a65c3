"""ExecutorPool: the executors the oracle can move sessions to, and which of them are alive.

Every `interval` seconds each configured executor is asked for its status (GetExecutorStatus, one short
deadline, no retry). An executor that fails `failures` probes in a row is *dead*: `on_dead(address)` is
called once (the detector recovers the sessions assigned to it), and it is not chosen again until it
answers. One that answers `draining` (shutting down, handing its sessions off) is alive but not chosen.

`choose()` picks the live, non-draining executor with the most free capacity, other than the ones
excluded (the failed one), and, when a bonding check is given, bonded on the home chain; given a session's
attestation policy, only among executors whose DCAP quote verified and satisfies it.

Attestation: an executor's status carries its Intel DCAP quote and collateral. `verifier` checks them
(agentgpt.attestation.verify, any TCB status: the session's policy decides which are acceptable) once per
distinct quote and keeps the result on the Member (`attestation`, or `attestation_error` saying why not).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agentgpt.attestation import Attestation, AttestationError, Policy
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
    attestation: Attestation | None = None
    attestation_error: str = ""
    attestation_digest: bytes = b""

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
        verifier: Callable[[bytes, str, str], Attestation] | None = None,
    ) -> None:
        self.members = [
            Member(t, ExecutorClient(t, identity="recovery_oracle")) for t in dict.fromkeys(targets) if t
        ]
        self.interval = interval
        self.failures = failures
        self.timeout = timeout
        self.on_dead = on_dead
        self.bonded = bonded
        self.verifier = verifier

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
        self._attest(m, status)

    def _attest(self, m: Member, status: ex.GetExecutorStatusResponse) -> None:
        """Verify the executor's quote when it is new (a restarted executor may bring another)."""
        digest = hashlib.sha256(
            status.address.lower().encode()
            + b"\0"
            + status.attestation_quote
            + b"\0"
            + status.attestation_collateral_json.encode()
        ).digest()
        if digest == m.attestation_digest:
            return
        m.attestation_digest, m.attestation, m.attestation_error = digest, None, ""
        if not status.attestation_quote:
            m.attestation_error = "not attested (no quote)"
            return
        if self.verifier is None:
            m.attestation_error = "this oracle verifies no attestation"
            return
        try:
            m.attestation = self.verifier(
                status.attestation_quote, status.attestation_collateral_json, status.address
            )
        except AttestationError as exc:
            m.attestation_error = str(exc)[:400]
            log.warning("executor %s (%s): attestation refused: %s", status.executor_id, m.target, exc)
            return
        log.info("executor %s (%s) attested: %s", status.executor_id, m.target, m.attestation.summary())

    @staticmethod
    def attestation_problem(m: Member, policy: Policy | None) -> str:
        """Why `m` may not run a session requiring `policy` ("" when it may, or nothing is required)."""
        if policy is None:
            return ""
        if m.attestation is None:
            return m.attestation_error or "not attested"
        return policy.problem(m.attestation)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(m) for m in self.members))

    async def run(self) -> None:
        """Background job: probe every executor every `interval` seconds."""
        while True:
            await self.probe_all()
            await asyncio.sleep(self.interval)

    async def choose(self, exclude: set[str], policy: Policy | None = None) -> Member | None:
        """The live, non-draining, bonded executor with the most free capacity, not in `exclude`
        (addresses, any case), attested as `policy` requires (when given)."""
        skip = {a.lower() for a in exclude if a}
        candidates = sorted(
            (
                m
                for m in self.live()
                if m.address.lower() not in skip
                and m.status is not None
                and not m.status.draining
                and m.free > 0
                and not self.attestation_problem(m, policy)
            ),
            key=lambda m: -m.free,
        )
        for m in candidates:
            if self.bonded is None or await self.bonded(m.address):
                return m
        return None

    def describe(self, policy: Policy | None = None) -> str:
        """One line per executor, for error messages ("none healthy: ..."); with a session's attestation
        policy, why each executor does not satisfy it."""
        parts = []
        for m in self.members:
            if m.status is None:
                parts.append(f"{m.target}: never answered ({m.last_error or 'not probed yet'})")
            elif m.dead:
                parts.append(f"{m.status.executor_id}: not answering")
            elif m.status.draining:
                parts.append(f"{m.status.executor_id}: draining")
            else:
                problem = self.attestation_problem(m, policy)
                parts.append(
                    f"{m.status.executor_id}: {m.free} free of {m.status.capacity}"
                    + (f", attestation: {problem}" if problem else "")
                )
        return "; ".join(parts) or "no executors configured (AGENTGPT_EXECUTOR_ADDRS)"
