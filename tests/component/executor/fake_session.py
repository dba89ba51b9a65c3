"""An in-process stand-in for the session service, speaking the real SessionService gRPC API over a real
loopback channel: leases with fencing epochs, a task queue, ReportTask with epoch checks, checkpoints,
ListTasks and InspectSession. Sessions and tasks are put in directly (no owner signatures, no lifecycle).

It serves the engine's logic tests that the real service cannot easily provoke or observe: it records
every report (executor, epoch, seq, status) and checkpoint, lets a test steal a lease or edit a queued
task, and refuses a report while an earlier task is still open (the real service does not check that), so
ordering violations fail loudly. The on-chain engine tests in tests/integration/executor
(test_onchain_engine, test_treasury_engine) run against it too.

It is a simplification: it trusts every caller (no service identity needed), its ClaimLease of a session
leased elsewhere answers no lease instead of FAILED_PRECONDITION, and its ReleaseLease ignores a stale
epoch instead of refusing it.

The executor against the REAL session service (in-process, SQLite): test_with_session_service.py; as
processes, the whole stack: tests/integration/executor/test_demo_stack.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2_grpc

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.sealing import address_of, wrap_key
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.session.v1 import session_pb2_grpc as ss_grpc

DONE = {ss.TASK_STATUS_SUCCEEDED, ss.TASK_STATUS_FAILED, ss.TASK_STATUS_REFUSED}


@dataclass
class FakeSession:
    session: ss.Session
    tasks: dict[int, ss.Task] = field(default_factory=dict)
    events: list[ss.SessionEvent] = field(default_factory=list)
    lease_executor: str = ""
    lease_expires: float = 0.0
    reports: list[tuple[str, int, int, int]] = field(default_factory=list)  # (executor, epoch, seq, status)
    checkpoints: list[cpb.Checkpoint] = field(default_factory=list)
    refused_reports: int = 0
    # checkpoint data keys (epoch, executor address, key) and the owner's public key: when set, a claim
    # naming the newest key's executor's public key gets them wrapped to it, as the real service does
    keys: list[tuple[int, str, bytes]] = field(default_factory=list)
    owner_public_key: bytes = b""
    claimable: bool = True  # False: ClaimLease passes it over (a test rewriting its record meanwhile)


class FakeSessionService(ss_grpc.SessionServiceServicer):
    def __init__(self) -> None:
        self.sessions: dict[str, FakeSession] = {}
        self.identities: set[str] = set()  # x-agentgpt-service values seen on lease calls
        self.read_identities: set[str] = set()  # ... and on ListTasks reads

    # ------------------------------------------------------------------ test helpers
    def add_session(
        self,
        session_id: str,
        *,
        spec: ss.SessionSpec | None = None,
        budget: int = 10**24,
        owner: str = "0x" + "11" * 20,
    ) -> FakeSession:
        s = ss.Session(
            session_id=session_id,
            owner=owner,
            state=cpb.SESSION_STATE_ACTIVE,
            spec=spec or ss.SessionSpec(type="test", chains=[]),
            budget=str(budget),
            budget_spent="0",
        )
        self.sessions[session_id] = FakeSession(s)
        return self.sessions[session_id]

    def submit(self, session_id: str, tasks: list[tuple[str, dict[str, Any]]]) -> list[int]:
        fs = self.sessions[session_id]
        seqs = []
        items = []
        for kind, args in tasks:
            seq = len(fs.tasks) + 1
            fs.tasks[seq] = ss.Task(
                session_id=session_id,
                seq=seq,
                status=ss.TASK_STATUS_QUEUED,
                input=ss.TaskInput(kind=kind, args_json=json.dumps(args)),
            )
            seqs.append(seq)
            items.append({"seq": seq, "kind": kind, "args_json": json.dumps(args)})
        self._event(fs, "tasks_submitted", {"tasks": items})
        return seqs

    def _event(self, fs: FakeSession, type_: str, data: dict[str, Any]) -> None:
        fs.events.append(
            ss.SessionEvent(
                cursor=len(fs.events) + 1,
                session_id=fs.session.session_id,
                type=type_,
                state=fs.session.state,
                data_json=json.dumps(data),
            )
        )

    def steal_lease(self, session_id: str, executor_id: str) -> int:
        fs = self.sessions[session_id]
        fs.session.lease_epoch += 1
        fs.lease_executor = executor_id
        fs.lease_expires = time.time() + 15
        return fs.session.lease_epoch

    def done(self, session_id: str) -> list[ss.Task]:
        return [t for t in self.sessions[session_id].tasks.values() if t.status in DONE]

    # ------------------------------------------------------------------ RPCs
    def _get(self, session_id: str) -> FakeSession:
        return self.sessions[session_id]

    async def GetSession(self, request: Any, context: Any) -> Any:
        if request.session_id not in self.sessions:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such session")
        return ss.GetSessionResponse(session=self._get(request.session_id).session)

    async def ClaimLease(self, request: Any, context: Any) -> Any:
        self.identities.update(v for k, v in context.invocation_metadata() or () if k == "x-agentgpt-service")
        now = time.time()
        candidates = [request.session_id] if request.session_id else sorted(self.sessions)
        for sid in candidates:
            fs = self.sessions.get(sid)
            if fs is None or fs.session.state != cpb.SESSION_STATE_ACTIVE or not fs.claimable:
                continue
            if fs.lease_expires > now and fs.lease_executor != request.executor_id:
                continue
            if not request.session_id and fs.lease_expires > now:
                continue
            fs.session.lease_epoch += 1
            fs.lease_executor = request.executor_id
            fs.lease_expires = now + (request.ttl_seconds or 15)
            lease = ss.Lease(session_id=sid, executor_id=request.executor_id, epoch=fs.session.lease_epoch)
            pub = bytes(request.executor_public_key)
            if fs.keys and pub and address_of(pub) == fs.keys[-1][1]:
                wrapped = [
                    ss.WrappedSessionKey(epoch=e, executor=a, wrapped=wrap_key(k, pub)) for e, a, k in fs.keys
                ]
                return ss.ClaimLeaseResponse(
                    lease=lease, session_keys=wrapped, owner_public_key=fs.owner_public_key
                )
            return ss.ClaimLeaseResponse(lease=lease)
        return ss.ClaimLeaseResponse()

    async def _check_lease(self, fs: FakeSession, executor_id: str, epoch: int, context: Any) -> None:
        if epoch != fs.session.lease_epoch or executor_id != fs.lease_executor:
            fs.refused_reports += 1
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"stale lease epoch {epoch} (current {fs.session.lease_epoch})",
            )

    async def RenewLease(self, request: Any, context: Any) -> Any:
        fs = self._get(request.session_id)
        await self._check_lease(fs, request.executor_id, request.epoch, context)
        fs.lease_expires = time.time() + (request.ttl_seconds or 15)
        return ss.RenewLeaseResponse(
            lease=ss.Lease(
                session_id=request.session_id, executor_id=request.executor_id, epoch=request.epoch
            )
        )

    async def ReleaseLease(self, request: Any, context: Any) -> Any:
        fs = self._get(request.session_id)
        if request.epoch == fs.session.lease_epoch:
            fs.lease_expires = 0.0
        return ss.ReleaseLeaseResponse()

    async def ReportTask(self, request: Any, context: Any) -> Any:
        fs = self._get(request.session_id)
        await self._check_lease(fs, request.executor_id, request.epoch, context)
        t = request.task
        earlier = [s for s, task in fs.tasks.items() if s < t.seq and task.status not in DONE]
        if earlier:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"task {earlier[0]} is not done yet")
        current = fs.tasks[t.seq]
        if current.status in DONE:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"task {t.seq} is already done")
        stored = ss.Task()
        stored.CopyFrom(t)
        fs.tasks[t.seq] = stored
        fs.reports.append((request.executor_id, request.epoch, t.seq, t.status))
        if t.status in DONE:
            fs.session.budget_spent = str(int(fs.session.budget_spent or 0) + int(t.cost or 0))
            name = {
                ss.TASK_STATUS_SUCCEEDED: "task_succeeded",
                ss.TASK_STATUS_FAILED: "task_failed",
                ss.TASK_STATUS_REFUSED: "task_refused",
            }[t.status]
            self._event(fs, name, {"seq": t.seq, "log_hash": t.log_hash.hex()})
        fs.session.version += 1
        return ss.ReportTaskResponse(version=fs.session.version)

    async def RecordCheckpoint(self, request: Any, context: Any) -> Any:
        fs = self._get(request.session_id)
        await self._check_lease(fs, request.executor_id, request.epoch, context)
        fs.checkpoints.append(request.checkpoint)
        if (
            not fs.session.HasField("latest_checkpoint")
            or request.checkpoint.seq >= fs.session.latest_checkpoint.seq
        ):
            fs.session.latest_checkpoint.CopyFrom(request.checkpoint)
        return ss.RecordCheckpointResponse()

    async def ListTasks(self, request: Any, context: Any) -> Any:
        self.read_identities.update(
            v for k, v in context.invocation_metadata() or () if k == "x-agentgpt-service"
        )
        fs = self._get(request.session_id)
        size = request.page_size or 100
        after = [fs.tasks[s] for s in sorted(fs.tasks) if s > request.after_seq]
        page = after[:size]
        more = len(after) > size
        return ss.ListTasksResponse(tasks=page, next_after_seq=page[-1].seq if more else 0)

    async def InspectSession(self, request: Any, context: Any) -> Any:
        fs = self._get(request.session_id)
        tasks = sorted(fs.tasks.values(), key=lambda t: -t.seq)
        done = [t for t in tasks if t.status in DONE]
        return ss.InspectSessionResponse(
            session=fs.session,
            tasks_done=len(done),
            tasks_total=len(tasks),
            recent_tasks=tasks[:20] if request.detail == "full" else [],
        )


class FakeSessionServer:
    def __init__(self) -> None:
        self.service = FakeSessionService()
        self.server = aio.server()
        ss_grpc.add_SessionServiceServicer_to_server(self.service, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(0)
