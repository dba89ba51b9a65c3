"""The RecoveryStore, on SQLite and on a real PostgreSQL server: one open recovery per session however many
replicas race for it, holder leases, fencing tokens that refuse a stale replica's writes, orphans."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agentgpt.errors import InvalidArgument
from agentgpt.recovery.v1 import recovery_pb2 as pb
from services.recovery_oracle.store import Fenced, RecoveryStore
from tests.fixtures.postgres import create_database, drop_database


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecoveryStore]:
    server = url = ""
    if request.param == "sqlite":
        s = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'recoveries.db'}")
    else:
        server = request.getfixturevalue("postgres_url")
        url = await create_database(server)
        s = await RecoveryStore.open(url)
    try:
        yield s
    finally:
        await s.close()
        if url:
            await drop_database(server, url)


def new(session_id: str) -> pb.Recovery:
    return pb.Recovery(session_id=session_id, status=pb.RECOVERY_STATUS_DETECTED, reason="lease lapsed")


async def test_one_open_recovery_per_session_whoever_races(store: RecoveryStore) -> None:
    got = await asyncio.gather(
        *(store.begin(new("7"), holder=f"oracle-{i}", ttl=10, now=100.0) for i in range(5))
    )
    held = [g for g in got if g is not None]
    assert len(held) == 1 and held[0].fence == 1  # one replica holds it; the others got nothing
    assert await store.open_sessions() == {"7"}
    # the holder itself may begin again (a repeated detection): it gets its own recovery back
    again = await store.begin(new("7"), holder=held[0].holder, ttl=10, now=101.0)
    assert again is not None and again.recovery_id == held[0].recovery_id


async def test_fencing_refuses_a_stalled_replica_and_orphans_are_taken_over(store: RecoveryStore) -> None:
    a = await store.begin(new("9"), holder="oracle-a", ttl=5, now=100.0)
    assert a is not None
    assert await store.orphaned(now=104.0) == []  # a's lease is live
    assert await store.take_over("9", holder="oracle-b", ttl=5, now=104.0) is None
    assert await store.orphaned(now=106.0) == ["9"]  # a stalled past its lease
    b = await store.take_over("9", holder="oracle-b", ttl=5, now=106.0)
    assert b is not None and b.fence == 2 and b.recovery_id == a.recovery_id
    a.steps.add(name="pause", detail="late write of the stalled replica")
    with pytest.raises(Fenced):
        await store.save(a, ttl=5, now=107.0)
    b.steps.add(name="pause", detail="paused")
    b.status = pb.RECOVERY_STATUS_RESUMED
    await store.save(b, ttl=5, now=107.0)
    (stored,), _ = await store.list(recovery_id=b.recovery_id)
    assert [s.detail for s in stored.steps] == ["paused"] and stored.fence == 2
    # closed: the session may get a new recovery, and the old one stays listed
    assert await store.open_sessions() == set()
    c = await store.begin(new("9"), holder="oracle-a", ttl=5, now=108.0)
    assert c is not None and c.recovery_id != b.recovery_id
    rows, token = await store.list(session_id="9", limit=1)
    assert [r.recovery_id for r in rows] == [c.recovery_id] and token
    older, last = await store.list(session_id="9", limit=1, page_token=token)
    assert [r.recovery_id for r in older] == [b.recovery_id] and last == ""
    with pytest.raises(InvalidArgument):
        await store.list(page_token="not-hex")
