"""The same store on a real PostgreSQL: ingestion and a reorg roll-back give what a SQLite rebuild gives."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.integration.indexer.chainkit import DeployedChain, IndexerUnderTest, rebuild_snapshot

pytestmark = [pytest.mark.chain, pytest.mark.postgres]


async def fresh_database(url: str) -> str:
    """A new, empty database on the server (the session-wide database is shared with other tests)."""
    name = f"indexer_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


async def test_postgres_store_survives_a_reorg_and_matches_a_rebuild(
    chain: DeployedChain, postgres_url: str
) -> None:
    info = chain.info(finality_window=8)
    chain.session_with_anchors(anchors=2)
    ix = await IndexerUnderTest.open(info, url=await fresh_database(postgres_url))
    try:
        await ix.follower.catch_up()
        chain.session_with_anchors(anchors=1)
        await ix.follower.catch_up()
        chain.rpc("anvil_reorg", [3, []])
        await ix.follower.catch_up()
        assert ix.follower.status.reorgs_total == 1
        up_to = ix.follower.next_block - 1
        assert await ix.snapshot(up_to) == await rebuild_snapshot(info, up_to)
    finally:
        await ix.close()
