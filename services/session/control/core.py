"""The commit core every plane of the control plane stands on: SessionDB and the home chain, the one
injected clock, lifecycle rules applied at that clock, the event bus that wakes watchers, the version check
of owner requests, and the one retry-on-conflict helper every read-modify-commit loop goes through."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from agentgpt.errors import Aborted
from agentgpt.lifecycle import Action, Durations, SessionClock
from services.session import rules
from services.session.chain import SessionChain
from services.session.chain_sync import ChainSync
from services.session.clock import Clock
from services.session.control.callers import require_owner_or_service
from services.session.keys import KeyCustody
from services.session.model import Caller, SessionRecord
from services.session.store import Change, SessionDB, VersionConflict
from services.session.validation import Deployment

T = TypeVar("T")

CONFLICT_ATTEMPTS = 5  # re-reads of a session that keeps changing before the caller is told to retry


class StaleVersion(Aborted):
    """The request's `expected_version` is not the session's version: the caller's view is stale. Unlike
    a VersionConflict between writers, re-reading here would not help; the caller must decide again."""


class EventBus:
    """In-process wake-ups for watchers: one asyncio.Event per session, replaced on every notify."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.listeners: list[Callable[[str], None]] = []  # told of every change (the metadata publisher)

    def waiter(self, session_id: str) -> asyncio.Event:
        return self._events.setdefault(session_id, asyncio.Event())

    def notify(self, session_id: str) -> None:
        ev = self._events.pop(session_id, None)
        if ev is not None:
            ev.set()
        for listener in self.listeners:
            listener(session_id)


class SessionLocks:
    """One asyncio lock per session, held while this process reads, decides and commits a change of it
    that concurrent callers make all at once (task submissions): they queue here instead of racing to
    commit and losing on the version check over and over. Other writers (other replicas included) are
    still fenced by the version check; this only spares a hot session's callers the lost races."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        lock, users = self._held.get(session_id) or (asyncio.Lock(), 0)
        self._held[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[session_id]
            if users <= 1:
                del self._held[session_id]
            else:
                self._held[session_id] = (lock, users - 1)


class Core:
    """What the planes share. `chain_sync` (writer grants and budget audits) is set once the service knows
    its network; None without one. `custody` keeps the sessions' checkpoint data keys."""

    def __init__(
        self,
        db: SessionDB,
        chain: SessionChain,
        *,
        durations: Durations,
        clock: Clock,
        receipt_timeout: float = 60.0,
        deployment: Deployment | None = None,
        custody: KeyCustody | None = None,
    ) -> None:
        self.db = db
        self.chain = chain
        self.durations = durations
        self.clock = clock
        self.receipt_timeout = receipt_timeout
        self.deployment = deployment or Deployment()  # the decorators and chains a spec may name
        self.bus = EventBus()
        self.locks = SessionLocks()
        self.chain_sync: ChainSync | None = None
        # the checkpoint data keys (None: no keys are made, checkpoints stay plaintext)
        self.custody = custody

    def now(self) -> int:
        return int(self.clock())

    # ------------------------------------------------------------------ lifecycle at the clock

    def next_clock(self, rec: SessionRecord, action: Action, *, settled: bool = False) -> SessionClock:
        """The session's lifecycle after `action` now; FAILED_PRECONDITION when its state forbids it."""
        return rules.next_clock(rec, action, self.now(), self.durations, settled=settled)

    def clock_values(self, clock: SessionClock, reason: str) -> dict[str, Any]:
        return rules.clock_values(clock, reason, self.durations)

    # ------------------------------------------------------------------ loading and checking

    async def load_owned(self, session_id: str, caller: Caller) -> SessionRecord:
        """The session, when the caller is its owner or a trusted service."""
        rec = await self.db.require(session_id)
        require_owner_or_service(caller, rec)
        return rec

    @staticmethod
    def check_version(req: Any, rec: SessionRecord) -> None:
        """An owner request naming `expected_version` applies only to that version of the session."""
        expected = int(getattr(req, "expected_version", 0))
        if expected and expected != rec.version:
            raise StaleVersion(
                f"expected_version: session {rec.session_id} is at version {rec.version}, not {expected}"
            )

    # ------------------------------------------------------------------ committing

    async def commit(self, change: Change) -> SessionRecord:
        """Commit `change` and wake the session's watchers."""
        rec = await self.db.commit(change)
        self.bus.notify(change.session_id)
        return rec

    @staticmethod
    async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], *, gave_up: str) -> T:
        """Run `attempt` (read the session, decide, commit) again when another writer committed first; a
        session that keeps changing for CONFLICT_ATTEMPTS attempts is ABORTED with `gave_up`. Any other
        error, a StaleVersion included, goes to the caller at once."""
        for _ in range(CONFLICT_ATTEMPTS):
            try:
                return await attempt()
            except VersionConflict:
                continue
        raise Aborted(gave_up)
