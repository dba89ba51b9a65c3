from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentgpt.ipfs import EmbeddedStore
from agentgpt.runtime.config import load
from agentgpt.runtime.server import RunningService
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.session.app import build
from services.session.config import SessionConfig
from services.session.memory import InMemorySessionChain
from tests.fixtures.postgres import create_database, drop_database

from .harness import Harness, Owner, server_config

MakeService = Callable[..., Awaitable[Harness]]


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def make_service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeService]:
    """Start session services (in-memory chain, embedded archive) on SessionDB in SQLite (a file in
    tmp_path) or in PostgreSQL (a fresh database on the session's server); all stopped after. Services
    made with the same `db_name` share one database (a restart)."""
    started: list[Harness] = []
    databases: dict[str, str] = {}
    # resolved now: a sync fixture can be requested here, not from inside the running test
    server_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""

    async def database_url(db_name: str) -> str:
        if db_name not in databases:
            if server_url:
                databases[db_name] = await create_database(server_url)
            else:
                databases[db_name] = f"sqlite+aiosqlite:///{tmp_path / db_name}"
        return databases[db_name]

    async def make(
        *, chain: InMemorySessionChain | None = None, db_name: str = "sessions.db", **overrides: Any
    ) -> Harness:
        settings: dict[str, Any] = {
            "database_url": await database_url(db_name),
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
        if server_url:
            for url in databases.values():
                await drop_database(server_url, url)


@pytest_asyncio.fixture
async def service(make_service: MakeService) -> Harness:
    return await make_service()


@pytest_asyncio.fixture
def owner() -> Owner:
    return Owner(DEV_PRIVATE_KEYS[1], 31337)


@pytest_asyncio.fixture
def stranger() -> Owner:
    return Owner(DEV_PRIVATE_KEYS[4], 31337)
