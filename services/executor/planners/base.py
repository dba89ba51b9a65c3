"""The model adapter protocol and the read-only view of a session a planner gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.executor.plan import Plan, TaskRequest


@dataclass(frozen=True)
class SessionView:
    """What a planner may know about a session: its spec params, chains, account and earlier results."""

    session_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    chains: tuple[str, ...] = ()
    account: str = ""  # the session's SessionAccount address on its home chain ("" when off-chain)
    # Latest result per task kind (e.g. "analyze_market" -> reserves and price): the session's memory.
    memory: Mapping[str, Any] = field(default_factory=dict)


class Planner(Protocol):
    """A model adapter. `name` is recorded in the context epoch; plan() must not have side effects."""

    name: str

    async def plan(self, task: TaskRequest, view: SessionView) -> Plan: ...

    async def close(self) -> None: ...
