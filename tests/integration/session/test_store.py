"""The SessionDB suite, run against SQLite and against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from agentgpt.errors import Aborted, FailedPrecondition, PermissionDenied
from services.session.model import NewEvent, verify_chain
from services.session.store import Change, SessionDB
from services.session.store.tables import metadata


async def _postgres_db(base_url: str) -> tuple[SessionDB, Any]:
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:12]
    url = sa.engine.make_url(base_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
        )
        try:
            await c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await c.close()

    return await SessionDB.open(url.set(database=name).render_as_string(hide_password=False)), drop


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionDB]:
    cleanup = None
    if request.param == "sqlite":
        store = await SessionDB.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    else:
        store, cleanup = await _postgres_db(request.getfixturevalue("postgres_url"))
    try:
        yield store
    finally:
        await store.close()
        if cleanup:
            await cleanup()


def row(session_id: str, **over: Any) -> dict[str, Any]:
    base = {
        "session_id": session_id,
        "owner": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "state": 1,
        "state_reason": "created",
        "terminal_reason": None,
        "type": "treasury_management",
        "spec_json": '{"type":"treasury_management"}',
        "workflow_hash": b"\x11" * 32,
        "budget": str(2**200),
        "budget_spent": "0",
        "home_chain_id": 31337,
        "mint_tx_hash": b"\x22" * 32,
        "executor": "",
        "lease_executor": "",
        "lease_epoch": 0,
        "lease_expires_at": None,
        "version": 1,
        "created_at": 1.0,
        "updated_at": 1.0,
        "entered_at": 100,
        "active_used": 0,
        "deadline": 3700,
        "context_epoch": 0,
        "checkpoint_json": None,
        "next_task_seq": 1,
        "gas_used": 0,
        "gas_cost_wei": "0",
        "log_cid": None,
        "final_tx_hash": None,
    }
    return {**base, **over}


async def test_migrations_create_the_declared_schema(db: SessionDB) -> None:
    await db.migrate()  # idempotent: a second upgrade is a no-op

    def inspect(conn: Any) -> dict[str, set[str]]:
        insp = sa.inspect(conn)
        return {
            t: {c["name"] for c in insp.get_columns(t)}
            for t in insp.get_table_names()
            if t != "alembic_version"
        }

    async with db.engine.connect() as conn:
        actual = await conn.run_sync(inspect)
    assert actual == {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}


async def test_insert_commit_optimistic_and_hash_chain(db: SessionDB) -> None:
    rec = await db.insert(row("1"), [NewEvent("created", {"a": 1})], None)
    assert rec.version == 1 and rec.event_cursor == 1 and int(rec.budget) == 2**200
    rec2 = await db.commit(Change("1", 1, {"state": 2, "deadline": None}, [NewEvent("activated")]))
    assert rec2.version == 2 and rec2.state == 2 and rec2.deadline is None
    with pytest.raises(Aborted):
        await db.commit(Change("1", 1, {"state": 3}))
    evs = await db.events_after("1", 0)
    assert [e.type for e in evs] == ["created", "activated"] and verify_chain(evs)
    assert (await db.require("1")).state == 2


async def test_concurrent_updates_one_wins(db: SessionDB) -> None:
    await db.insert(row("1"), [], None)
    results = await asyncio.gather(
        *[db.commit(Change("1", 1, {"state_reason": f"writer {i}"}, [NewEvent("x")])) for i in range(5)],
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Aborted) for r in results if isinstance(r, BaseException))
    assert (await db.require("1")).version == 2 and verify_chain(await db.events_after("1", 0))


async def test_idempotency_records_and_nonces(db: SessionDB) -> None:
    assert await db.begin_request("0xabc", "k1", "EditParams", b"h1") is None
    pending = await db.begin_request("0xabc", "k1", "EditParams", b"h1")
    assert pending is not None and pending.status == "pending"
    with pytest.raises(FailedPrecondition):
        await db.begin_request("0xabc", "k1", "EditParams", b"h2")
    assert await db.begin_request("0xother", "k1", "EditParams", b"h2") is None  # keys are per principal
    await db.record_intent(
        "0xabc", "k1", op="create", session_id=None, payload_json="{}", tx_hash=b"t" * 32, raw_tx=b"raw"
    )
    assert [r.key for r in await db.pending_intents()] == ["k1"]
    await db.abandon_request("0xabc", "k1")  # kept: its transaction may have landed
    assert await db.get_request("0xabc", "k1") is not None
    await db.finish_request("0xabc", "k1", b"resp")
    done = await db.begin_request("0xabc", "k1", "EditParams", b"h1")
    assert done is not None and done.status == "done" and done.response == b"resp"
    await db.use_nonce("0xabc", 2**64 - 1)
    with pytest.raises(PermissionDenied):
        await db.use_nonce("0xABC", 2**64 - 1)


async def test_a_key_is_reserved_with_its_nonce_or_not_at_all(db: SessionDB) -> None:
    assert await db.begin_request("0xabc", "k1", "SubmitTasks", b"h1", nonce=("0xAbC", 7)) is None
    # the nonce was used with the key: a replay under a new key is refused and reserves nothing
    with pytest.raises(PermissionDenied, match="nonce 7"):
        await db.begin_request("0xabc", "k2", "SubmitTasks", b"h2", nonce=("0xabc", 7))
    assert await db.get_request("0xabc", "k2") is None
    with pytest.raises(PermissionDenied):
        await db.use_nonce("0xabc", 7)
    # a key seen before answers its record and uses no nonce
    seen = await db.begin_request("0xabc", "k1", "SubmitTasks", b"h1", nonce=("0xabc", 8))
    assert seen is not None and seen.status == "pending"
    await db.use_nonce("0xabc", 8)
    # concurrent requests with one nonce: one reserves its key, the others are refused
    results = await asyncio.gather(
        *(db.begin_request("0xabc", f"c{i}", "SubmitTasks", b"h", nonce=("0xabc", 9)) for i in range(4)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, PermissionDenied) for r in results if r is not None)


async def test_leases_claim_next_skips_live_and_bumps_epoch(db: SessionDB) -> None:
    for sid in ("1", "2", "3"):
        await db.insert(row(sid, state=2), [], None)
    got = await asyncio.gather(
        *[
            db.claim(executor_id=f"e{i}", session_id=None, ttl=30, now=1000.0, active_state=2)
            for i in range(4)
        ]
    )
    claimed = [g.session_id for g in got if g is not None]
    assert sorted(claimed) == ["1", "2", "3"] and got.count(None) == 1  # no session leased twice
    with pytest.raises(FailedPrecondition):
        await db.claim(executor_id="other", session_id="1", ttl=30, now=1001.0, active_state=2)
    again = await db.claim(executor_id="other", session_id="1", ttl=30, now=2000.0, active_state=2)  # expired
    assert again is not None and again.lease_epoch == 2 and again.lease_executor == "other"
    expired, _ = await db.list_sessions(
        owner=None, states=[], type=None, page_token="", limit=10, lease_lapsed_before=1500.0
    )
    assert sorted(r.session_id for r in expired) == ["2", "3"]
    # a session nobody ever leased counts once it has been unchanged since before the cut-off
    await db.insert(row("4", state=2), [], None)
    lapsed, _ = await db.list_sessions(
        owner=None, states=[2], type=None, page_token="", limit=10, lease_lapsed_before=1500.0
    )
    assert sorted(r.session_id for r in lapsed) == ["2", "3", "4"]
    assigned, _ = await db.list_sessions(
        owner=None, states=[], type=None, page_token="", limit=10, executor="0x" + "ab" * 20
    )
    assert assigned == []


async def test_due_timers_and_listing(db: SessionDB) -> None:
    await db.insert(row("1", deadline=50), [], None)
    await db.insert(row("2", deadline=500, type="other"), [], None)
    await db.insert(row("3", state=4, deadline=None), [], None)
    assert [r.session_id for r in await db.due(100)] == ["1"]
    page, token = await db.list_sessions(
        owner="0x70997970c51812dc3a010c7d01b50e0d17dc79c8", states=[1], type=None, page_token="", limit=1
    )
    assert [r.session_id for r in page] == ["2"] and token
    page2, token2 = await db.list_sessions(owner=None, states=[1], type=None, page_token=token, limit=1)
    assert [r.session_id for r in page2] == ["1"] and token2 == ""
    assert await db.count_by_state() == {1: 2, 4: 1}
