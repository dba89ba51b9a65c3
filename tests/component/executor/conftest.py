from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.component.executor.fake_session import FakeSessionServer


@pytest_asyncio.fixture(loop_scope="session")
async def fake_session() -> AsyncIterator[FakeSessionServer]:
    server = FakeSessionServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
