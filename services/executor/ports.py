"""What the executor needs from the outside, as types: the session service (SessionPort) and its leases.

The engine and its session runners speak only these; grpc_port.GrpcSessionPort is the production
implementation (the benchmark and some tests use in-memory ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.session.v1 import session_pb2 as ss


class Fenced(Exception):
    """This executor's lease epoch is stale: another executor owns the session now."""


class SessionPort(Protocol):
    """What the engine needs from the session service (the system of record).

    `renew`, `report` and `record_checkpoint` raise Fenced when the lease they name is no longer this
    executor's (stale epoch, taken over, session no longer ACTIVE)."""

    async def claim(self, executor_id: str, session_id: str, ttl: int, address: str = "") -> ss.Lease | None:
        """A lease on `session_id` (empty: the next unleased ACTIVE session); with `address`, only a
        session assigned to that executor address on chain."""
        ...

    async def renew(self, lease: ss.Lease, ttl: int) -> ss.Lease: ...

    async def release(self, lease: ss.Lease) -> None: ...

    async def session(self, session_id: str) -> ss.Session: ...

    async def tasks(self, session_id: str, after_seq: int) -> list[ss.Task]:
        """The session's tasks with seq > after_seq, in seq order, with their current status."""
        ...

    async def report(self, lease: ss.Lease, task: ss.Task) -> None: ...

    async def record_checkpoint(self, lease: ss.Lease, checkpoint: cpb.Checkpoint) -> None: ...


@dataclass(frozen=True)
class LeaseKeys:
    """The checkpoint keys a claim brought with its lease (ClaimLeaseResponse): each executor epoch's data
    key, oldest first, wrapped to this executor's public key, and the owner's public key. The session
    service sends them only to the executor of record (agentgpt.sealing, services/session/keys.py)."""

    wrapped: tuple[ss.WrappedSessionKey, ...] = ()
    owner_public_key: bytes = b""


class KeyedSessionPort(Protocol):
    """A SessionPort whose claims carry this executor's public key, so that the session service delivers
    the session's checkpoint keys with the lease (GrpcSessionPort; in-memory ports do without)."""

    def lease_keys(self, session_id: str) -> LeaseKeys | None:
        """The keys the latest successful claim of `session_id` brought (None: none came)."""
        ...


@dataclass
class ResumePoint:
    """Where a rehydrated session starts: the verified checkpoint from the recovery oracle, and the
    session memory its document (read back from IPFS and checked against the CID and the anchored state
    root) holds."""

    seq: int
    cid: str
    state_root: bytes
    memory: dict[str, Any] = field(default_factory=dict)
    log_head: bytes = b""  # the log head the document records (v2); empty: the state root (v1)
