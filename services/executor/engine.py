"""The task engine: claims session leases and runs one SessionRunner per held lease.

Engine        lease loop: while below capacity, ClaimLease (empty session id = the next ACTIVE session
              without a live lease), so several executors share the sessions; also serves the
              AssignSession / RehydrateSession / ReleaseSession requests. It keeps the running
              SessionRunners (runner.py), each of which tells it through a callback when it is done.
EngineConfig  the engine's and its runners' settings; EngineDeps what they are built from.

The session service is reached through the SessionPort protocol (ports.py; GrpcSessionPort in
production, an in-memory port in the benchmark), so this module knows nothing about gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from agentgpt.checkpoint_format import Domain, body_of
from agentgpt.errors import FailedPrecondition, ResourceExhausted
from agentgpt.ipfs import CheckpointReader
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.tasklog import ExecutorKey
from services.executor.actions import ActionRunner
from services.executor.anchoring import Anchor, AnchorQueue
from services.executor.checkpoints import Checkpointer
from services.executor.context import ContextBuilder
from services.executor.metrics import ExecutorMetrics
from services.executor.ports import ResumePoint, SessionPort
from services.executor.records import checkpoint_pb
from services.executor.runner import SessionRunner

log = logging.getLogger("agentgpt.executor.engine")


@dataclass(frozen=True)
class EngineConfig:
    executor_id: str = "executor-1"
    capacity: int = 8
    lease_ttl: int = 15
    poll_interval: float = 0.5  # idle wait between queue polls and claim attempts
    checkpoint_interval: int = 50  # default N when the spec does not set one
    checkpoint_on_idle: bool = True  # also checkpoint uncovered tasks when the queue drains
    task_fee: int = 10**15
    agpt_per_gas: int = 10**9
    settle_min: int = 1  # settle budget charges on chain once at least this much is unsettled
    task_attempts: int = 8  # attempts of a task whose dependencies keep failing, then FAILED
    retry_base: float = 0.5  # first retry delay (doubles) for a task or the queue
    retry_max: float = 30.0  # longest retry delay
    claim_address: str = ""  # lease only sessions assigned to this address on chain ("" = any)


@dataclass
class EngineDeps:
    port: SessionPort
    contexts: ContextBuilder
    actions: ActionRunner
    key: ExecutorKey
    checkpointer: Checkpointer | None = None
    anchors: AnchorQueue | None = None
    home_chain_id: int = 0
    # The EIP-712 domain checkpoint and log signatures are made in (the home chain's SessionFactory).
    domain: Domain = field(default_factory=Domain)
    chain_names: Mapping[str, str] = field(default_factory=dict)  # spec chain key -> manifest chain name
    metrics: ExecutorMetrics = field(default_factory=ExecutorMetrics)
    # Reads a checkpoint document back from IPFS, verified against its CID (and the anchored seq/root).
    reader: CheckpointReader | None = None
    # The home chain's assignment of a session: (executor address, epoch); None when off chain.
    assignment: Callable[[str], Awaitable[tuple[str, int]]] | None = None
    # Tells the recovery oracle a session was released cleanly (graceful handoff); None: nobody is told.
    handoff: Callable[[str], Awaitable[None]] | None = None


class Engine:
    def __init__(self, config: EngineConfig, deps: EngineDeps) -> None:
        self.config = config
        self.deps = deps
        self.runners: dict[str, SessionRunner] = {}
        self._stopping = False
        self.draining = False

    # ------------------------------------------------------------------ lease loop
    async def run(self) -> None:
        """Background job: claim sessions while below capacity."""
        while not self._stopping:
            claimed = False
            if len(self.runners) < self.config.capacity:
                try:
                    lease = await self.deps.port.claim(
                        self.config.executor_id, "", self.config.lease_ttl, self.config.claim_address
                    )
                except Exception as exc:
                    log.warning("claiming a session failed: %s", exc)
                    lease = None
                if lease is not None and lease.session_id not in self.runners:
                    self._start(lease)
                    claimed = True
            if not claimed:
                await asyncio.sleep(self.config.poll_interval)

    def _start(self, lease: ss.Lease, resume: ResumePoint | None = None) -> SessionRunner:
        runner = SessionRunner(self.config, self.deps, lease, self._forget, resume)
        self.runners[lease.session_id] = runner
        runner.task = asyncio.create_task(runner.run(), name=f"session-{lease.session_id}")
        return runner

    def _forget(self, runner: SessionRunner) -> None:
        if self.runners.get(runner.session_id) is runner:
            del self.runners[runner.session_id]

    async def on_anchored(
        self, session_id: str, seq: int, cid: str, root: bytes, anchors: list[Anchor]
    ) -> None:
        runner = self.runners.get(session_id)
        if runner is None or runner.fenced:
            return  # the new leaseholder records its own checkpoints
        await self.deps.port.record_checkpoint(
            runner.lease, checkpoint_pb(session_id, seq, cid, root, anchors, time.time())
        )

    # ------------------------------------------------------------------ RPC-facing operations
    def _admit(self) -> None:
        if self.draining:
            raise FailedPrecondition(
                f"executor {self.config.executor_id} is shutting down and takes no sessions; choose another"
            )
        if len(self.runners) >= self.config.capacity:
            raise ResourceExhausted(
                f"executor {self.config.executor_id} runs {len(self.runners)} sessions, its capacity"
            )

    async def _lease(self, session_id: str) -> ss.Lease:
        lease = await self.deps.port.claim(
            self.config.executor_id, session_id, self.config.lease_ttl, self.config.claim_address
        )
        if lease is None:
            raise FailedPrecondition(
                f"session {session_id} could not be leased (not ACTIVE, or leased elsewhere)"
            )
        return lease

    async def assign(self, session_id: str) -> int:
        if session_id in self.runners:
            return int(self.runners[session_id].lease.epoch)
        self._admit()
        lease = await self._lease(session_id)
        self._start(lease)
        return int(lease.epoch)

    async def rehydrate(self, session_id: str, seq: int, cid: str, state_root: bytes, epoch: int) -> int:
        """Continue a session another executor ran, from the checkpoint the recovery oracle verified.

        The checkpoint's bytes are read back from IPFS and checked (CID, session, seq, state root) before
        anything else; the home chain must assign the session to this executor (at `epoch`, when given);
        then the lease is claimed and the session runs from the checkpoint, rolled forward with the
        session's records (each rechecked against its recorded log hash). The first task it runs is
        returned. A session this executor already runs answers where it is."""
        running = self.runners.get(session_id)
        if running is not None and not running.fenced:
            await running.ready.wait()
            return running.last_seq + 1
        self._admit()
        if self.deps.assignment is not None:
            assigned, chain_epoch = await self.deps.assignment(session_id)
            if assigned.lower() != self.deps.key.address.lower() or (epoch and chain_epoch != epoch):
                raise FailedPrecondition(
                    f"session {session_id} is assigned to {assigned} at epoch {chain_epoch} on its home chain, "
                    f"not to this executor ({self.deps.key.address}{f' at epoch {epoch}' if epoch else ''})"
                )
        memory: dict[str, object] = {}
        log_head = b""
        if self.deps.reader is not None:
            try:
                doc = await self.deps.reader.read(cid, session_id=session_id, seq=seq, state_root=state_root)
            except Exception as exc:
                raise FailedPrecondition(
                    f"checkpoint {cid} of session {session_id} cannot be used: {exc}"
                ) from None
            memory = dict(body_of(doc).get("memory") or {})
            head = doc.get("log_head")
            log_head = head if isinstance(head, bytes) else b""
        lease = await self._lease(session_id)
        runner = self._start(lease, ResumePoint(seq, cid, state_root, memory, log_head))
        await runner.ready.wait()
        if runner.tasklog is None:  # its setup failed (logged by the runner)
            raise FailedPrecondition(f"session {session_id} stopped while starting; see the executor's log")
        log.info("session %s: rehydrated from checkpoint %d (%s)", session_id, seq, cid)
        return runner.last_seq + 1

    async def release(self, session_id: str, timeout: float = 30.0) -> None:
        runner = self.runners.get(session_id)
        if runner is None:
            return
        runner.stop_requested = True  # the loop leaves after the current task
        if runner.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(runner.task), timeout)
            except TimeoutError:
                runner.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner.task
            except (asyncio.CancelledError, Exception):
                pass

    async def drain(self, timeout: float = 10.0) -> None:
        """Graceful handoff (SIGTERM): take no new sessions; let each running session finish its current
        task, settle and release its lease; then tell the recovery oracle, which moves it to another
        executor at once (no pause)."""
        self.draining = True
        self._stopping = True

        async def hand_off(session_id: str) -> None:
            await self.release(session_id, timeout=timeout)
            if self.deps.handoff is None:
                return
            try:
                await self.deps.handoff(session_id)
                log.info("session %s handed off to the recovery oracle", session_id)
            except Exception as exc:
                log.warning(
                    "session %s: the recovery oracle did not take the handoff (%s); its lease lapses instead",
                    session_id,
                    exc,
                )

        await asyncio.gather(*(hand_off(sid) for sid in list(self.runners)))

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.gather(*(self.release(sid, timeout=5.0) for sid in list(self.runners)))
