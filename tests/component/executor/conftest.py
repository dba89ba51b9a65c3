from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.component.executor.fake_session import FakeSessionServer

# The real session service, started in-process exactly as its own component tests start it (in-memory
# chain, embedded archive, SessionDB on SQLite or PostgreSQL): used by test_with_session_service.py.
from tests.component.session.conftest import make_service, owner, service  # noqa: F401


@pytest_asyncio.fixture(loop_scope="session")
async def fake_session() -> AsyncIterator[FakeSessionServer]:
    server = FakeSessionServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
