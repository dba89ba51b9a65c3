"""The task engine: claims session leases and runs one SessionRunner per held lease.

Engine        lease loop: while below capacity, ClaimLease (empty session id = the next ACTIVE session
              without a live lease), so several executors share the sessions; also serves the
              AssignSession / RehydrateSession / ReleaseSession requests. It keeps the running
              SessionRunners (runner.py), each of which tells it through a callback when it is done.
EngineConfig  the engine's and its runners' settings; EngineDeps what they are built from.

The session service is reached through the SessionPort protocol (ports.py; GrpcSessionPort in
production, an in-memory port in the benchmark), so this module knows nothing about gRPC.

Checkpoint keys (agentgpt.sealing, docs/design.md §7): a claim made through a KeyedSessionPort brings the
session's data keys, one per executor epoch, wrapped to this executor's key, when it is the session's
executor of record. They go into the executor's keyring (its reader opens the predecessors' sealed
checkpoints with them) and the newest becomes the runner's `sealing`: its checkpoints' bodies are sealed
with it, wrapped to the owner and to this executor. A lease without keys (this executor is not the one
of record, or the session has none) writes plaintext bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from agentgpt.checkpoint_format import Domain, body_of
from agentgpt.errors import FailedPrecondition, ResourceExhausted
from agentgpt.ipfs import CheckpointReader
from agentgpt.sealing import Keyring, Sealing, SessionKey
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.tasklog import ExecutorKey
from agentgpt.zk.batch import Groth16Worker
from services.executor.actions import ActionRunner
from services.executor.anchoring import Anchor, AnchorQueue
from services.executor.checkpoints import Checkpointer
from services.executor.context import ContextBuilder
from services.executor.decorators import FeeSource
from services.executor.metrics import ExecutorMetrics
from services.executor.ports import KeyedSessionPort, ResumePoint, SessionPort
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
    # This executor's private key and the data keys of the sessions it ran (shared with `reader`): opens
    # the checkpoint keys that come with a lease; None: checkpoints are written in plaintext.
    keyring: Keyring | None = None
    # EIP-1559 fee data of the session's chains, given to the planner as gas feedback; None: no chain.
    fee_source: FeeSource | None = None
    # Proves the checkpoints of zk_batch_prover sessions (snarkjs); None: this executor cannot.
    zk: Groth16Worker | None = None


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

    def _start(
        self, lease: ss.Lease, resume: ResumePoint | None = None, sealing: Sealing | None = None
    ) -> SessionRunner:
        runner = SessionRunner(self.config, self.deps, lease, self._forget, resume)
        runner.sealing = sealing if sealing is not None else self._sealing(lease.session_id)
        self.runners[lease.session_id] = runner
        runner.task = asyncio.create_task(runner.run(), name=f"session-{lease.session_id}")
        return runner

    def _sealing(self, session_id: str) -> Sealing | None:
        """The keys the claim of `session_id` brought: every epoch's into the keyring, the newest (this
        executor's epoch) as the sealing of its checkpoints; None (plaintext) when none came."""
        keyring = self.deps.keyring
        if keyring is None or getattr(self.deps.port, "lease_keys", None) is None:
            return None  # a port that brings no keys (the benchmark's): plaintext, as configured
        got = cast(KeyedSessionPort, self.deps.port).lease_keys(session_id)
        if got is None or not got.wrapped or not got.owner_public_key:
            log.warning(
                "session %s: no checkpoint keys came with the lease (this executor is not its executor of "
                "record, or the session has none): its checkpoints are written in plaintext",
                session_id,
            )
            return None
        try:
            keys = [SessionKey(int(k.epoch), keyring.unwrap(bytes(k.wrapped))) for k in got.wrapped]
        except Exception as exc:  # wrapped to another key: the session service's answer is not ours
            log.error("session %s: the checkpoint keys of the lease do not open: %s", session_id, exc)
            return None
        keyring.add_all(session_id, keys)
        newest = max(got.wrapped, key=lambda k: k.epoch)
        if newest.executor.lower() != self.deps.key.address.lower():
            log.warning(
                "session %s: the newest checkpoint key (epoch %d) is %s's, not this executor's: plaintext",
                session_id,
                newest.epoch,
                newest.executor,
            )
            return None
        key = next(k for k in keys if k.epoch == newest.epoch)
        return Sealing(key, (bytes(got.owner_public_key), self.deps.key.public_key))

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

        The home chain must assign the session to this executor (at `epoch`, when given); then the lease
        is claimed, bringing the session's checkpoint keys (the predecessors' epochs too: their sealed
        checkpoints open with them), and the checkpoint's bytes are read back from IPFS and checked (CID,
        session, seq, state root) before the session runs from it, rolled forward with the session's
        records (each rechecked against its recorded log hash); a checkpoint that cannot be used gives
        the lease back. The first task it runs is returned. A session this executor already runs answers
        where it is."""
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
        lease = await self._lease(session_id)
        sealing = self._sealing(session_id)  # also puts the older epochs' keys into the reader's keyring
        memory: dict[str, object] = {}
        log_head = b""
        if self.deps.reader is not None:
            try:
                doc = await self.deps.reader.read(cid, session_id=session_id, seq=seq, state_root=state_root)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await self.deps.port.release(lease)
                raise FailedPrecondition(
                    f"checkpoint {cid} of session {session_id} cannot be used: {exc}"
                ) from None
            memory = dict(body_of(doc).get("memory") or {})
            head = doc.get("log_head")
            log_head = head if isinstance(head, bytes) else b""
        runner = self._start(lease, ResumePoint(seq, cid, state_root, memory, log_head), sealing)
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
