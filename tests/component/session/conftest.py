from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from agentgpt.ipfs import EmbeddedStore
from agentgpt.localnet.anvil import DEV_PRIVATE_KEYS
from agentgpt.runtime.config import load
from agentgpt.runtime.server import RunningService
from services.session.app import build
from services.session.config import SessionConfig
from services.session.memory import InMemorySessionChain

from .harness import Harness, Owner, server_config

MakeService = Callable[..., Awaitable[Harness]]


@pytest_asyncio.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[MakeService]:
    """Start session services (SQLite in tmp_path, in-memory chain, embedded archive); all stopped after."""
    started: list[Harness] = []

    async def make(
        *, chain: InMemorySessionChain | None = None, db_name: str = "sessions.db", **overrides: Any
    ) -> Harness:
        settings: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / db_name}",
            "trust_service_header": True,
            "timer_interval": 0.1,
            **overrides,
        }
        config = load(SessionConfig, env={}, **settings)
        definition = await build(
            config, chain=chain or InMemorySessionChain(), archive=EmbeddedStore(tmp_path / "ipfs")
        )
        service = RunningService(definition, server_config())
        await service.start()
        h = Harness(service)
        started.append(h)
        return h

    try:
        yield make
    finally:
        for h in started:
            await h.close()
            await h.service.stop()


@pytest_asyncio.fixture
async def service(make_service: MakeService) -> Harness:
    return await make_service()


@pytest_asyncio.fixture
def owner() -> Owner:
    return Owner(DEV_PRIVATE_KEYS[1], 31337)


@pytest_asyncio.fixture
def stranger() -> Owner:
    return Owner(DEV_PRIVATE_KEYS[4], 31337)
