"""The recovery protocol (docs/design.md §5): bring a session whose executor died back on another one.

A recovery is a fixed sequence of steps, each durable (its outcome is written to the RecoveryStore
before the next starts) and idempotent (its effect on the session service carries an idempotency key
made from the recovery id, and the session service relays each chain transaction once), so an oracle
that crashes anywhere is resumed by the next holder of the recovery at the step it was in:

  pause      PauseSession, reason node_failure: store and chain PAUSED, the 72 h clock stopped, the
             failed executor's lease void (skipped for a graceful handoff)
  choose     a live, bonded executor with free capacity, not the failed one (ExecutorPool)
  reassign   ReassignExecutor: reassignExecutor on the home chain (epoch bumped: the old executor's
             transactions and anchors now revert), writer grants on the secondary chains
  verify     the newest anchored checkpoint that verifies across history (CheckpointVerifier); newer
             ones that do not are listed with their reasons; none anchored yet: the records alone
  resume     ResumeSession: ACTIVE again, the clock running (skipped for a handoff: it never stopped)
  rehydrate  RehydrateSession on the new executor from the verified checkpoint (AssignSession when
             there is none): it claims the lease and runs the next task

A step whose dependency is down (chain RPC, session service, IPFS, no executor free yet) is retried with
capped backoff until `give_up_after`; the rehydration is tried `rehydrate_attempts` times (an executor that
dies as it is chosen leaves a session ACTIVE without a lease, which the detector recovers again). A
session that ended meanwhile (completed, terminated, paused by its owner) ends the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from agentgpt.attestation import Policy, spec_policy
from agentgpt.clients import SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import NotFound, RpcError
from agentgpt.executor.v1 import executor_pb2 as ex
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.runtime.tasks import cancelling
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.timestamps import to_timestamp
from agentgpt.verify import CheckpointVerifier
from services.recovery_oracle.executors import ExecutorPool
from services.recovery_oracle.metrics import RecoveryMetrics
from services.recovery_oracle.store import FINAL, Fenced, RecoveryStore

log = logging.getLogger("agentgpt.recovery.protocol")

FAILURE_STEPS = ("pause", "choose", "reassign", "verify", "resume", "rehydrate")
HANDOFF_STEPS = ("choose", "reassign", "verify", "rehydrate")
STATUS_OF_STEP = {
    "pause": pb.RECOVERY_STATUS_PAUSED,
    "choose": pb.RECOVERY_STATUS_REASSIGNING,
    "reassign": pb.RECOVERY_STATUS_REASSIGNING,
    "verify": pb.RECOVERY_STATUS_VERIFYING,
    "resume": pb.RECOVERY_STATUS_REHYDRATING,
    "rehydrate": pb.RECOVERY_STATUS_REHYDRATING,
}
FINAL_STATES = (cpb.SESSION_STATE_COMPLETED, cpb.SESSION_STATE_TERMINATED)


class Ended(Exception):
    """The session does not need recovering any more (it ended, or someone else paused it)."""


class GiveUp(Exception):
    """A step failed for longer than the protocol waits."""


class Retry(Exception):
    """A step cannot complete yet (no executor free, an executor not answering): try again."""


@dataclass(frozen=True)
class ProtocolConfig:
    holder: str  # this oracle replica's name
    lease: float = 10.0  # seconds a replica holds a recovery without writing to it
    retry_base: float = 0.2
    retry_max: float = 5.0
    give_up_after: float = 900.0  # seconds one step keeps retrying before the recovery FAILED
    rehydrate_attempts: int = 3


def session_attestation_policy(s: ss.Session) -> Policy | None:
    """The attestation the session's spec requires of its executor (its `attestation:` block, validated
    and normalised when the session was created), or None."""
    if not s.spec.params_json:
        return None
    try:
        params = json.loads(s.spec.params_json)
    except ValueError:
        return None
    return spec_policy(params.get("attestation")) if isinstance(params, dict) else None


def _rpc_code(exc: BaseException) -> grpc.StatusCode | None:
    return exc.code if isinstance(exc, RpcError) else None


class Recoverer:
    def __init__(
        self,
        store: RecoveryStore,
        session: SessionClient,
        verifier: CheckpointVerifier,
        pool: ExecutorPool,
        metrics: RecoveryMetrics,
        config: ProtocolConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.session = session
        self.verifier = verifier
        self.pool = pool
        self.metrics = metrics
        self.config = config
        self.clock = clock
        self._running: dict[str, asyncio.Task[None]] = {}
        self._steps: dict[str, Callable[[pb.Recovery], Awaitable[str]]] = {
            "pause": self._pause,
            "choose": self._choose,
            "reassign": self._reassign,
            "verify": self._verify,
            "resume": self._resume,
            "rehydrate": self._rehydrate,
        }

    # ------------------------------------------------------------------ starting recoveries

    def running(self, session_id: str) -> bool:
        return session_id in self._running

    async def start(
        self, session_id: str, reason: str, *, handoff: bool = False, failed_executor: str = ""
    ) -> pb.Recovery:
        """Open a recovery of the session (or answer the open one) and run it in the background."""
        if not failed_executor:
            failed_executor = (await self.session.get_session(session_id)).executor
        now = self.clock()
        rec = pb.Recovery(
            session_id=session_id,
            status=pb.RECOVERY_STATUS_DETECTED,
            reason=reason[:256],
            failed_executor=failed_executor,
            handoff=handoff,
            started_at=to_timestamp(now),
        )
        got = await self.store.begin(rec, holder=self.config.holder, ttl=self.config.lease, now=now)
        if got is None:  # another replica runs it: answer what it recorded
            open_ = await self.store.list(session_id=session_id, limit=1)
            return open_[0][0] if open_[0] else rec
        if got.recovery_id == rec.recovery_id:
            log.warning(
                "session %s: recovery %s started (%s; executor %s)",
                session_id,
                got.recovery_id,
                reason,
                failed_executor or "none",
            )
        self._spawn(got)
        return got

    async def resume_orphans(self) -> None:
        """Take over open recoveries whose holder stopped writing (a crashed or stalled replica)."""
        for session_id in await self.store.orphaned(self.clock()):
            if self.running(session_id):
                continue
            rec = await self.store.take_over(
                session_id, holder=self.config.holder, ttl=self.config.lease, now=self.clock()
            )
            if rec is not None:
                log.warning(
                    "session %s: taking recovery %s over (fence %d)", session_id, rec.recovery_id, rec.fence
                )
                self._spawn(rec)

    def _spawn(self, rec: pb.Recovery) -> None:
        if rec.session_id in self._running or rec.status in FINAL:
            return
        task = asyncio.create_task(self._run(rec), name=f"recovery-{rec.recovery_id}")
        self._running[rec.session_id] = task
        session_id = rec.session_id

        def forget(_: asyncio.Task[None]) -> None:
            self._running.pop(session_id, None)

        task.add_done_callback(forget)

    async def stop(self) -> None:
        """Cancel the running recoveries (their holder lease lapses; another replica, or this one after a
        restart, takes them over at the step they were in)."""
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # ------------------------------------------------------------------ running one

    async def _save(self, rec: pb.Recovery) -> None:
        await self.store.save(rec, ttl=self.config.lease, now=self.clock())

    async def _heartbeat(self, rec: pb.Recovery, main: asyncio.Task[None]) -> None:
        while True:
            await asyncio.sleep(self.config.lease / 3)
            try:
                await self._save(rec)
            except Fenced:
                main.cancel()
                return
            except Exception as exc:  # the store is down: the lease may lapse; the next write tells
                if cancelling():
                    raise asyncio.CancelledError from None
                log.warning("recovery %s: extending the lease failed: %s", rec.recovery_id, exc)

    async def _run(self, rec: pb.Recovery) -> None:
        me = asyncio.current_task()
        assert me is not None
        beat = asyncio.create_task(self._heartbeat(rec, me))
        started = time.perf_counter()
        try:
            for name in HANDOFF_STEPS if rec.handoff else FAILURE_STEPS:
                step = next((s for s in rec.steps if s.name == name), None)
                if step is not None and step.HasField("finished_at"):
                    continue  # done before a crash or a take-over
                await self._step(rec, name, step)
            rec.status = pb.RECOVERY_STATUS_RESUMED
            outcome = "handoff" if rec.handoff else "resumed"
            log.warning(
                "session %s: recovery %s done: on %s from task %d",
                rec.session_id,
                rec.recovery_id,
                rec.new_executor,
                rec.resume_from_seq,
            )
        except Ended as exc:
            rec.status, outcome = pb.RECOVERY_STATUS_FAILED, "ended"
            rec.steps.add(name="end", started_at=to_timestamp(self.clock()), detail=str(exc)[:1000])
            log.info("session %s: recovery %s not needed any more: %s", rec.session_id, rec.recovery_id, exc)
        except GiveUp as exc:
            rec.status, outcome = pb.RECOVERY_STATUS_FAILED, "failed"
            log.error("session %s: recovery %s failed: %s", rec.session_id, rec.recovery_id, exc)
        except (Fenced, asyncio.CancelledError):
            log.info("session %s: recovery %s left to another holder", rec.session_id, rec.recovery_id)
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
        rec.finished_at.CopyFrom(to_timestamp(self.clock()))
        with contextlib.suppress(Fenced):
            await self._save(rec)
        self.metrics.recoveries.labels(outcome).inc()
        if rec.status == pb.RECOVERY_STATUS_RESUMED:
            self.metrics.recovery_seconds.labels("handoff" if rec.handoff else "failure").observe(
                time.perf_counter() - started
            )

    async def _step(self, rec: pb.Recovery, name: str, step: pb.RecoveryStep | None) -> None:
        if step is None:
            step = rec.steps.add(name=name, started_at=to_timestamp(self.clock()))
        rec.status = STATUS_OF_STEP[name]
        fn = self._steps[name]
        t0 = time.perf_counter()
        first = self.clock()
        delay = self.config.retry_base
        while True:
            step.attempts += 1
            try:
                detail = await fn(rec)
            except (Ended, GiveUp, Fenced, asyncio.CancelledError):
                raise
            except Exception as exc:
                if cancelling():
                    raise asyncio.CancelledError from None
                why = exc.details if isinstance(exc, RpcError) else str(exc)
                step.detail = f"attempt {step.attempts} failed: {type(exc).__name__}: {why}"[:1000]
                log.warning("session %s: recovery step %s: %s", rec.session_id, name, step.detail)
                with contextlib.suppress(Exception):
                    await self._save(rec)
                if name == "rehydrate" and step.attempts >= self.config.rehydrate_attempts:
                    raise GiveUp(f"rehydrate: {step.detail}") from None
                if self.clock() - first > self.config.give_up_after:
                    raise GiveUp(
                        f"{name}: still failing after {self.config.give_up_after:.0f} s: {why}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max)
                continue
            step.detail = detail[:1000]
            step.finished_at.CopyFrom(to_timestamp(self.clock()))
            await self._save(rec)
            self.metrics.step_seconds.labels(name).observe(time.perf_counter() - t0)
            return

    def _key(self, rec: pb.Recovery, step: str, extra: str = "") -> str:
        return f"recovery-{rec.recovery_id}-{step}{('-' + extra) if extra else ''}"

    async def _state(self, session_id: str) -> ss.Session:
        s = await self.session.get_session(session_id)
        if s.state in FINAL_STATES:
            raise Ended(f"session {session_id} is {cpb.SessionState.Name(s.state)}")
        return s

    # ------------------------------------------------------------------ the steps

    async def _pause(self, rec: pb.Recovery) -> str:
        req = ss.PauseSessionRequest(
            idempotency_key=self._key(rec, "pause"),
            session_id=rec.session_id,
            reason=f"node_failure: {rec.reason}"[:256],
        )
        try:
            resp = await self.session.pause_session(req)
        except RpcError as exc:
            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            s = await self._state(rec.session_id)
            if s.state == cpb.SESSION_STATE_PAUSED:
                raise Ended(
                    f"session {rec.session_id} was paused by someone else ({s.state_reason})"
                ) from None
            raise
        return f"paused: {resp.session.state_reason}"

    async def _choose(self, rec: pb.Recovery) -> str:
        s = await self._state(rec.session_id)
        policy = session_attestation_policy(s)
        m = await self.pool.choose({rec.failed_executor}, policy)
        if m is None:
            # The failed executor itself, once it came back as a new process (a restarted pod keeps its
            # key): with no other executor, that is where the session continues.
            back = self.pool.by_address(rec.failed_executor) if rec.failed_executor else None
            if (
                back is not None
                and back.status is not None
                and not back.dead
                and not back.status.draining
                and back.free > 0
                and not self.pool.attestation_problem(back, policy)
                and back.status.started_at.ToSeconds() > rec.started_at.ToSeconds()
            ):
                m = back
        if m is None or m.status is None:
            if policy is not None:
                raise Retry(
                    "no live executor with free capacity attested as the session's spec requires "
                    f"({self.pool.describe(policy)}); the session stays paused until one is"
                )
            raise Retry(f"no live executor with free capacity ({self.pool.describe()})")
        rec.new_executor = m.address
        return f"{m.status.executor_id} {m.address} at {m.target}: {m.free} of {m.status.capacity} free"

    async def _reassign(self, rec: pb.Recovery) -> str:
        if rec.new_executor.lower() == rec.failed_executor.lower():
            return f"kept on {rec.new_executor}: the same executor restarted (its old process is gone)"
        req = ss.ReassignExecutorRequest(
            idempotency_key=self._key(rec, "reassign", rec.new_executor.lower()),
            session_id=rec.session_id,
            executor=rec.new_executor,
            reason=f"{'handoff' if rec.handoff else 'node_failure'}: {rec.reason}"[:256],
        )
        try:
            resp = await self.session.reassign_executor(req)
        except RpcError as exc:
            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            s = await self._state(rec.session_id)
            if s.executor.lower() == rec.new_executor.lower():
                return f"already assigned to {rec.new_executor}"
            # refused on chain (not bonded any more, a state the chain does not allow): choose again
            m = await self.pool.choose({rec.failed_executor, rec.new_executor}, session_attestation_policy(s))
            if m is not None:
                rec.new_executor = m.address
            raise
        rec.chain_epoch = resp.chain_epoch
        return f"assigned to {rec.new_executor} at epoch {resp.chain_epoch} (tx 0x{resp.tx_hash.hex()})"

    async def _verify(self, rec: pb.Recovery) -> str:
        try:
            resp, rejected = await self.verifier.newest_verified(rec.session_id)
        except NotFound:
            rec.ClearField("checkpoint")
            return "no checkpoint anchored yet: the new executor starts from the session's records"
        del rec.rejected[:]
        rec.rejected.extend(rejected)
        if resp.HasField("checkpoint"):
            rec.checkpoint.CopyFrom(resp.checkpoint)
            return f"checkpoint {resp.checkpoint.seq} ({resp.checkpoint.cid}) verifies" + (
                f"; {len(rejected)} newer rejected" if rejected else ""
            )
        rec.ClearField("checkpoint")
        return f"no anchored checkpoint verifies ({resp.verification.failure}): starting from the records"

    async def _resume(self, rec: pb.Recovery) -> str:
        req = ss.ResumeSessionRequest(
            idempotency_key=self._key(rec, "resume"),
            session_id=rec.session_id,
            reason=f"recovered on {rec.new_executor} after node_failure"[:256],
        )
        try:
            resp = await self.session.resume_session(req)
        except RpcError as exc:
            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            s = await self._state(rec.session_id)
            if s.state == cpb.SESSION_STATE_ACTIVE:
                return "already ACTIVE"
            raise
        return f"ACTIVE: {resp.session.state_reason}"

    async def _rehydrate(self, rec: pb.Recovery) -> str:
        m = self.pool.by_address(rec.new_executor)
        if m is None:
            raise Retry(f"executor {rec.new_executor} is not among the executors this oracle knows")
        if rec.HasField("checkpoint"):
            resp = await m.client.rehydrate_session(
                ex.RehydrateSessionRequest(
                    session_id=rec.session_id, checkpoint=rec.checkpoint, epoch=rec.chain_epoch
                )
            )
            rec.resume_from_seq = resp.resume_from_seq
            return f"rehydrated on {m.target} from checkpoint {rec.checkpoint.seq}, next task {resp.resume_from_seq}"
        assigned = await m.client.assign_session(rec.session_id)
        return f"assigned on {m.target} (lease epoch {assigned.epoch}), from the session's records"
