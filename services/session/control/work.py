"""Executor calls: task submission (an owner's or a service's, idempotent), leases with fencing epochs,
task reports and checkpoints. Each read-modify-commit goes through the core's retry-on-conflict helper:
executors update an ACTIVE session all the time, so a lost race is re-read, not failed."""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from eth_utils.address import to_checksum_address

from agentgpt.attestation import spec_policy
from agentgpt.canonical import canonical_json
from agentgpt.errors import FailedPrecondition, NotFound, PermissionDenied
from agentgpt.lifecycle import Action, SessionState
from agentgpt.runtime.validation import INT64_MAX
from agentgpt.sealing import address_of
from agentgpt.session.v1 import session_pb2 as pb
from services.session import rules
from services.session.control.callers import ORACLE_IDENTITY, CallContext, Callers, is_oracle
from services.session.control.core import Core
from services.session.control.relay import Relay
from services.session.convert import intents_to_bytes
from services.session.model import Caller, NewEvent, SessionRecord
from services.session.store import Change

log = logging.getLogger("agentgpt.session")

DEFAULT_LEASE_TTL = 15
FINAL_TASK = {pb.TASK_STATUS_SUCCEEDED, pb.TASK_STATUS_FAILED, pb.TASK_STATUS_REFUSED}


def _status_name(status: int) -> str:
    return pb.TaskStatus.Name(cast(pb.TaskStatus.ValueType, status))


class Work:
    def __init__(self, core: Core, callers: Callers, relay: Relay) -> None:
        self.core = core
        self.callers = callers
        self.relay = relay

    # ------------------------------------------------------------------ the task queue

    async def submit_tasks(self, req: pb.SubmitTasksRequest, ctx: CallContext) -> pb.SubmitTasksResponse:
        core = self.core

        async def body(caller: Caller, key: str) -> pb.SubmitTasksResponse:
            # Executors update an ACTIVE session all the time (reports, leases, checkpoints): appending
            # to its queue re-reads and retries on a version conflict instead of failing the owner.
            # Submissions to one session through this process queue for it rather than race each other.
            async with core.locks.hold(req.session_id):
                return await core.retry_on_conflict(
                    lambda: attempt(caller, key),
                    gave_up=f"session {req.session_id} kept changing; retry the submission",
                )

        async def attempt(caller: Caller, key: str) -> pb.SubmitTasksResponse:
            rec = await core.load_owned(req.session_id, caller)
            core.check_version(req, rec)
            core.next_clock(rec, Action.EXECUTE_TASKS)
            first = rec.next_task_seq
            now = core.clock()
            rows = [
                {
                    "session_id": rec.session_id,
                    "seq": first + i,
                    "kind": t.kind,
                    "args_json": t.args_json or "{}",
                    "status": pb.TASK_STATUS_QUEUED,
                    "result_json": "",
                    "error": "",
                    "intents": b"",
                    "gas_used": 0,
                    "cost": "0",
                    "log_hash": b"",
                    "score": None,
                    "executor_id": "",
                    "epoch": 0,
                    "updated_at": now,
                }
                for i, t in enumerate(req.tasks)
            ]
            resp = pb.SubmitTasksResponse(task_seqs=[first + i for i in range(len(req.tasks))])
            await core.commit(
                Change(
                    rec.session_id,
                    rec.version,
                    {"next_task_seq": first + len(rows)},
                    [NewEvent("tasks_submitted", {"first_seq": first, "count": len(rows)})],
                    new_tasks=rows,
                    finish_request=(caller.principal, key, lambda _r: resp.SerializeToString()),
                )
            )
            return resp

        return await self.relay.idempotent(req, ctx, pb.SubmitTasksResponse, body)

    # ------------------------------------------------------------------ leases

    async def claim_lease(self, req: pb.ClaimLeaseRequest, ctx: CallContext) -> SessionRecord | None:
        """The session now leased to the executor (its lease columns), or None when none is free."""
        self.callers.service_caller(req, ctx, "ClaimLease")
        ttl = req.ttl_seconds or DEFAULT_LEASE_TTL
        if req.session_id and not req.executor_address:
            # a session requiring attestation is leased only to its executor of record, whose attestation
            # was verified at activation (this service) or reassignment (the recovery oracle)
            target = await self.core.db.require(req.session_id)
            if spec_policy((target.spec.get("params") or {}).get("attestation")) is not None:
                raise FailedPrecondition(
                    f"session {req.session_id}: its spec requires an attested executor and it is leased "
                    f"only to its executor of record ({target.executor or 'none yet'}); {req.executor_id} "
                    "claimed without executor_address, so its attestation is unknown"
                )
        rec = await self.core.db.claim(
            executor_id=req.executor_id,
            executor_address=to_checksum_address(req.executor_address) if req.executor_address else None,
            session_id=req.session_id or None,
            ttl=ttl,
            now=self.core.clock(),
            active_state=int(SessionState.ACTIVE),
        )
        if rec is not None:
            self.core.bus.notify(rec.session_id)
        return rec

    async def lease_keys(
        self, rec: SessionRecord, public_key: bytes
    ) -> tuple[list[pb.WrappedSessionKey], bytes]:
        """The leased session's checkpoint data keys wrapped to `public_key`, and the owner's public key —
        only when that key is the executor of record's (SessionDB's record of the chain's activation or
        latest reassignment) and the newest key is that executor's epoch; else nothing."""
        custody = self.core.custody
        if not public_key or custody is None or not rec.executor or rec.owner_public_key is None:
            return [], b""
        caller = address_of(public_key)
        if caller != to_checksum_address(rec.executor):
            log.info(
                "session %s: %s claimed its lease but the executor of record is %s: no keys",
                rec.session_id,
                caller,
                rec.executor,
            )
            return [], b""
        rows = await self.core.db.session_keys(rec.session_id)
        if not rows or rows[-1].executor != caller:
            log.warning(
                "session %s: no data key of the current executor %s's epoch (newest: %s): no keys",
                rec.session_id,
                caller,
                f"epoch {rows[-1].epoch}, {rows[-1].executor}" if rows else "none",
            )
            return [], b""
        return custody.rewrap(rows, public_key), rec.owner_public_key

    async def session_keys(
        self, req: pb.GetSessionKeysRequest, ctx: CallContext
    ) -> pb.GetSessionKeysResponse:
        """Every epoch's data key of a session wrapped to the caller's key: the recovery oracle only."""
        caller = self.callers.service_caller(req, ctx, "GetSessionKeys")
        if not is_oracle(caller.service):
            raise PermissionDenied(
                f"GetSessionKeys is reserved to the recovery oracle (service identity {ORACLE_IDENTITY!r}); "
                "executors get their sessions' keys with the lease (ClaimLease with executor_public_key)"
            )
        rec = await self.core.db.require(req.session_id)
        custody = self.core.custody
        rows = await self.core.db.session_keys(rec.session_id)
        if custody is None or not rows or rec.owner_public_key is None:
            return pb.GetSessionKeysResponse()
        return pb.GetSessionKeysResponse(
            keys=custody.rewrap(rows, bytes(req.public_key)), owner_public_key=rec.owner_public_key
        )

    async def renew_lease(self, req: pb.RenewLeaseRequest, ctx: CallContext) -> SessionRecord:
        self.callers.service_caller(req, ctx, "RenewLease")
        core = self.core

        async def attempt() -> SessionRecord:
            rec = await core.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            if rec.lifecycle_state is not SessionState.ACTIVE or rec.lease_expires_at is None:
                raise FailedPrecondition(
                    f"session {rec.session_id} is {rec.lifecycle_state.name}; the lease is void"
                )
            ttl = req.ttl_seconds or DEFAULT_LEASE_TTL
            return await core.db.commit(
                Change(rec.session_id, rec.version, {"lease_expires_at": core.clock() + ttl})
            )

        return await core.retry_on_conflict(attempt, gave_up="the session kept changing; retry")

    async def release_lease(self, req: pb.ReleaseLeaseRequest, ctx: CallContext) -> None:
        self.callers.service_caller(req, ctx, "ReleaseLease")
        core = self.core

        async def attempt() -> None:
            rec = await core.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            await core.db.commit(Change(rec.session_id, rec.version, {"lease_expires_at": None}))

        await core.retry_on_conflict(attempt, gave_up="the session kept changing; retry")

    # ------------------------------------------------------------------ reports

    async def report_task(self, req: pb.ReportTaskRequest, ctx: CallContext) -> int:
        """Record a task's outcome; the session's version after it."""
        self.callers.service_caller(req, ctx, "ReportTask")
        core = self.core
        t = req.task

        async def attempt() -> int:
            rec = await core.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            core.next_clock(rec, Action.EXECUTE_TASKS)
            current = await core.db.task(rec.session_id, t.seq)
            if current is None:
                raise NotFound(f"task.seq: session {rec.session_id} has no task {t.seq}")
            if current.status in FINAL_TASK:
                if current.status == t.status:
                    return rec.version  # a retried report: already recorded
                raise FailedPrecondition(
                    f"task.status: task {t.seq} already ended as {_status_name(current.status)}"
                )
            result = json.loads(t.result_json) if t.result_json else {}
            values = _finished_task_values(rec, t, result) if t.status in FINAL_TASK else {}
            score = result.get("model_score", result.get("plan_score"))
            score = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
            status_name = _status_name(t.status).removeprefix("TASK_STATUS_").lower()
            update = {
                "session_id": rec.session_id,
                "seq": t.seq,
                "status": t.status,
                "result_json": t.result_json,
                "error": t.error[:4096],
                "intents": intents_to_bytes(t.intents),
                "gas_used": min(t.gas_used, INT64_MAX),
                "cost": t.cost or "0",
                "log_hash": t.log_hash,
                "score": score,
                "executor_id": req.executor_id,
                "epoch": req.epoch,
                "updated_at": core.clock(),
            }
            event = NewEvent(
                f"task_{status_name}",
                {
                    "seq": t.seq,
                    "kind": current.kind,
                    "gas_used": t.gas_used,
                    "cost": t.cost or "0",
                    "error": t.error[:512],
                    "log_hash": "0x" + t.log_hash.hex(),
                },
            )
            done = await core.commit(Change(rec.session_id, rec.version, values, [event], task_update=update))
            return done.version

        return await core.retry_on_conflict(attempt, gave_up="the session kept changing; retry the report")

    # ------------------------------------------------------------------ checkpoints

    async def record_checkpoint(self, req: pb.RecordCheckpointRequest, ctx: CallContext) -> None:
        self.callers.service_caller(req, ctx, "RecordCheckpoint")
        core = self.core
        cp = req.checkpoint

        async def attempt() -> None:
            rec = await core.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            if rec.lifecycle_state not in (SessionState.ACTIVE, SessionState.PAUSED):
                raise FailedPrecondition(f"session {rec.session_id} is {rec.lifecycle_state.name}")
            latest = json.loads(rec.checkpoint_json) if rec.checkpoint_json else None
            anchors = [{"chain_id": a.chain_id, "number": a.number, "hash": a.hash.hex()} for a in cp.anchors]
            if latest is not None and cp.seq == latest["seq"]:
                # the same checkpoint again, with the anchors confirmed since it was first recorded
                event = rules.checkpoint_anchors(latest, cp.cid, cp.state_root.hex(), anchors)
                if event is None:
                    return  # nothing new: a retry
                doc = {**latest, "anchors": event["anchors"]}
                new_event = NewEvent("checkpoint_anchored", event)
            elif latest is not None and cp.seq < latest["seq"]:
                raise FailedPrecondition(
                    f"checkpoint.seq: {cp.seq} is below the latest checkpoint {latest['seq']}"
                )
            else:
                doc = {
                    "seq": cp.seq,
                    "cid": cp.cid,
                    "state_root": cp.state_root.hex(),
                    "at": core.clock(),
                    "anchors": anchors,
                }
                new_event = NewEvent(
                    "checkpointed", {"seq": cp.seq, "cid": cp.cid, "state_root": "0x" + cp.state_root.hex()}
                )
            await core.commit(
                Change(rec.session_id, rec.version, {"checkpoint_json": canonical_json(doc)}, [new_event])
            )

        await core.retry_on_conflict(attempt, gave_up="the session kept changing; retry")


def _finished_task_values(rec: SessionRecord, t: pb.Task, result: dict[str, Any]) -> dict[str, Any]:
    """What a task that ended adds to its session: its cost, gas and gas cost, and a new context epoch
    when a swap_context task moved the session to one (models, rail, decorators)."""
    values: dict[str, Any] = {
        "budget_spent": str(int(rec.budget_spent) + int(t.cost or 0)),
        "gas_used": min(rec.gas_used + t.gas_used, INT64_MAX),
    }
    gas_cost = result.get("gas_cost_wei")
    if isinstance(gas_cost, int | str) and str(gas_cost).isdigit():
        values["gas_cost_wei"] = str(int(rec.gas_cost_wei) + int(gas_cost))
    epoch = result.get("context_epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool) and rec.context_epoch < epoch <= INT64_MAX:
        values["context_epoch"] = epoch
    return values
