"""SessionPort over gRPC: the engine's view of the session service, through SessionClient only.

Calls carry the executor's service identity (`x-agentgpt-service`; leases, reports and the task queue
are reserved to services). The queue is read with ListTasks, a page at a time, in seq order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import grpc

from agentgpt.clients import SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import RpcError
from agentgpt.session.v1 import session_pb2 as ss
from services.executor.ports import Fenced, LeaseKeys

TASK_PAGE = 1000  # the session service's largest ListTasks page


def session_client(target: str, identity: str) -> SessionClient:
    """A SessionClient whose calls carry the executor's service identity (dev/local: production
    replaces the header with the mTLS peer identity)."""
    return SessionClient(target, identity=identity)


class GrpcSessionPort:
    """`public_key` (the executor's 64-byte secp256k1 key) goes with every claim: the session service
    answers the executor of record with the session's checkpoint keys wrapped to it (`lease_keys`)."""

    def __init__(self, client: SessionClient, *, public_key: bytes = b"") -> None:
        self.client = client
        self.public_key = public_key
        self._keys: dict[str, LeaseKeys] = {}

    async def claim(self, executor_id: str, session_id: str, ttl: int, address: str = "") -> ss.Lease | None:
        resp = await self.client.claim_lease(
            ss.ClaimLeaseRequest(
                executor_id=executor_id,
                session_id=session_id,
                ttl_seconds=ttl,
                executor_address=address,
                executor_public_key=self.public_key,
            )
        )
        if not resp.HasField("lease"):
            return None
        self._keys[resp.lease.session_id] = LeaseKeys(tuple(resp.session_keys), bytes(resp.owner_public_key))
        return resp.lease

    def lease_keys(self, session_id: str) -> LeaseKeys | None:
        return self._keys.pop(session_id, None)

    async def renew(self, lease: ss.Lease, ttl: int) -> ss.Lease:
        with _fencing():
            resp = await self.client.renew_lease(ss.RenewLeaseRequest(**_held(lease), ttl_seconds=ttl))
        return resp.lease if resp.HasField("lease") else lease

    async def release(self, lease: ss.Lease) -> None:
        with contextlib.suppress(RpcError):
            await self.client.release_lease(ss.ReleaseLeaseRequest(**_held(lease)))

    async def session(self, session_id: str) -> ss.Session:
        return await self.client.get_session(session_id)

    async def report(self, lease: ss.Lease, task: ss.Task) -> None:
        with _fencing():
            await self.client.report_task(ss.ReportTaskRequest(**_held(lease), task=task))

    async def record_checkpoint(self, lease: ss.Lease, checkpoint: cpb.Checkpoint) -> None:
        with _fencing():
            await self.client.record_checkpoint(
                ss.RecordCheckpointRequest(**_held(lease), checkpoint=checkpoint)
            )

    async def tasks(self, session_id: str, after_seq: int) -> list[ss.Task]:
        out: list[ss.Task] = []
        while True:
            resp = await self.client.list_tasks(
                ss.ListTasksRequest(session_id=session_id, after_seq=after_seq, page_size=TASK_PAGE)
            )
            out.extend(resp.tasks)
            if not resp.next_after_seq:
                return out
            after_seq = resp.next_after_seq


def _held(lease: ss.Lease) -> dict[str, Any]:
    """The fields naming a held lease, as every lease-checked request carries them."""
    return {"session_id": lease.session_id, "executor_id": lease.executor_id, "epoch": lease.epoch}


@contextlib.contextmanager
def _fencing() -> Iterator[None]:
    """Stale epoch, lease taken over, session no longer ACTIVE: in every case this executor must stop."""
    try:
        yield
    except RpcError as exc:
        if exc.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED):
            raise Fenced(exc.details) from None
        raise
