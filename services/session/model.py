"""Domain records of the session service (no gRPC, no SQL)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields
from typing import Any

from eth_utils.crypto import keccak

from agentgpt.canonical import canonical_json
from agentgpt.lifecycle import SessionClock, SessionState, TerminalReason

ZERO_HASH = b"\x00" * 32


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _values(cls: type, row: Any) -> dict[str, Any]:
    """A record's fields from a SQLAlchemy row, or from any mapping of column names (a sqlite3.Row)."""
    m = getattr(row, "_mapping", row)
    return {name: m[name] for name in _names(cls)}


@dataclass(frozen=True)
class SessionRecord:
    """One row of SessionDB's sessions table."""

    pk: int
    session_id: str
    owner: str
    state: int
    state_reason: str
    terminal_reason: str | None
    type: str
    spec_json: str
    workflow_hash: bytes
    budget: str
    budget_spent: str
    home_chain_id: int
    mint_tx_hash: bytes
    executor: str
    lease_executor: str
    lease_epoch: int
    lease_expires_at: float | None
    version: int
    created_at: float
    updated_at: float
    entered_at: int
    active_used: int
    deadline: int | None
    context_epoch: int
    checkpoint_json: str | None
    next_task_seq: int
    event_cursor: int
    event_head: bytes
    gas_used: int
    gas_cost_wei: str
    log_cid: str | None
    final_tx_hash: bytes | None
    chain_expiry_due: float | None = None
    chain_expiry_attempts: int = 0
    owner_public_key: bytes | None = None  # 64 bytes x || y; None before activation (or before 0003)

    @classmethod
    def from_row(cls, row: Any) -> SessionRecord:
        return cls(**_values(cls, row))

    @property
    def lifecycle_state(self) -> SessionState:
        return SessionState(self.state)

    @property
    def clock(self) -> SessionClock:
        reason = TerminalReason(self.terminal_reason) if self.terminal_reason else None
        return SessionClock(SessionState(self.state), self.entered_at, self.active_used, reason)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(json.loads(self.spec_json))


@dataclass(frozen=True)
class KeyRecord:
    """One row of session_keys: a checkpoint data key, wrapped to the service's custodian key."""

    session_id: str
    epoch: int
    executor: str
    custodian: str
    wrapped: bytes
    created_at: float

    @classmethod
    def from_row(cls, row: Any) -> KeyRecord:
        return cls(**_values(cls, row))


@dataclass(frozen=True)
class EventRecord:
    session_id: str
    cursor: int
    type: str
    state: int
    data_json: str
    at: float
    hash: bytes

    @classmethod
    def from_row(cls, row: Any) -> EventRecord:
        return cls(**_values(cls, row))


@dataclass(frozen=True)
class TaskRecord:
    session_id: str
    seq: int
    kind: str
    args_json: str
    status: int
    result_json: str
    error: str
    intents: bytes
    gas_used: int
    cost: str
    log_hash: bytes
    score: float | None
    executor_id: str
    epoch: int
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> TaskRecord:
        return cls(**_values(cls, row))


@dataclass(frozen=True)
class Alert:
    """One alert of an inspection: severity "critical" or "warning", a stable code, a message."""

    severity: str
    code: str
    message: str
    task_seq: int = 0  # the task it is about (0: the session)


@dataclass(frozen=True)
class Inspection:
    """InspectSession's dashboard of one session."""

    session: SessionRecord
    tasks_done: int
    tasks_total: int
    gas_used: int
    completion: float
    alerts_critical: int
    alerts_warning: int
    model_score: float
    decorators: list[str]
    alerts: list[Alert]
    recent_tasks: list[TaskRecord] = field(default_factory=list)  # detail "full" only
    recent_events: list[EventRecord] = field(default_factory=list)  # detail "full" only


@dataclass(frozen=True)
class NewEvent:
    """An event to append; cursor, state and hash are assigned when it is committed."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


def event_hash(
    prev: bytes, *, session_id: str, cursor: int, type: str, state: int, data_json: str, at: float
) -> bytes:
    """keccak256(prev_hash || canonical event): each event commits to the whole log before it."""
    body = canonical_json(
        {
            "session_id": session_id,
            "cursor": cursor,
            "type": type,
            "state": state,
            "data": json.loads(data_json),
            "at": round(at, 6),
        }
    )
    return keccak(prev + body.encode())


def verify_chain(evs: list[EventRecord]) -> bool:
    """True when `evs` (a whole log from cursor 1) is an unbroken hash chain."""
    prev = ZERO_HASH
    for i, e in enumerate(evs, start=1):
        if e.cursor != i:
            return False
        expected = event_hash(
            prev,
            session_id=e.session_id,
            cursor=e.cursor,
            type=e.type,
            state=e.state,
            data_json=e.data_json,
            at=e.at,
        )
        if expected != e.hash:
            return False
        prev = e.hash
    return True


@dataclass(frozen=True)
class Caller:
    """Who is calling: an authenticated owner address and/or a trusted service name."""

    owner: str | None = None
    service: str | None = None

    @property
    def principal(self) -> str:
        """The namespace of the caller's idempotency keys."""
        return self.owner or f"service:{self.service}"
