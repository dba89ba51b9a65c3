"""The pipelined ingestion of one range: sub-ranges fetched, decoded and inserted in turn, one transaction.

A range may span the finality boundary (headers fetched for its unfinalized part only), and a failure in
a later sub-range leaves nothing of the range behind, in the database or in the follower's memory.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.indexer.follower import RetryLater
from tests.integration.indexer.chainkit import (
    DeployedChain,
    IndexerUnderTest,
    emit_sessions,
    rebuild_snapshot,
)

pytestmark = pytest.mark.chain
WINDOW = 8


async def test_a_range_across_the_finality_boundary_is_one_step(chain: DeployedChain) -> None:
    start = chain.head() + 1
    head = emit_sessions(chain.rpc_url, chain.chain, 60, 3)  # 20 blocks of 9 events
    info = chain.info(finality_window=WINDOW)
    ix = await IndexerUnderTest.open(
        info.__class__(**{**info.__dict__, "deploy_block": start}), fetch_parts=4, min_part_blocks=2
    )
    try:
        assert await ix.follower.step()
        assert ix.follower.next_block == head + 1  # final and unfinalized blocks in one range
        # Headers kept: the unfinalized blocks and the parent of the first of them, no final block below.
        assert sorted(ix.follower.kept) == list(range(head - WINDOW, head + 1))
        assert sorted(await ix.store.kept_blocks(info.chain_id)) == sorted(ix.follower.kept)
        rows = await ix.snapshot(head)
        assert len(rows) == 180
        assert rows == await rebuild_snapshot(
            info.__class__(**{**info.__dict__, "deploy_block": start}), head
        )
    finally:
        await ix.close()


async def test_a_race_in_a_later_part_leaves_nothing_of_the_range(chain: DeployedChain) -> None:
    start = chain.head() + 1
    head = emit_sessions(chain.rpc_url, chain.chain, 30, 3)
    info = chain.info(finality_window=64)  # the whole range is unfinalized: every log is checked
    ix = await IndexerUnderTest.open(
        info.__class__(**{**info.__dict__, "deploy_block": start}), fetch_parts=4, min_part_blocks=2
    )
    follower = ix.follower
    real_fetch = follower._fetch_logs
    calls: list[tuple[int, int]] = []

    async def racing_fetch(a: int, b: int) -> list[Any]:
        calls.append((a, b))
        logs = await real_fetch(a, b)
        if b == head:  # the last part answers from another branch
            logs = [{**lg, "blockHash": "0x" + "ee" * 32} for lg in logs]
        return logs

    follower._fetch_logs = racing_fetch  # type: ignore[method-assign]
    try:
        with pytest.raises(RetryLater):
            await follower.step()
        assert len(calls) > 2  # several parts were fetched (and inserted) before the race was seen
        assert follower.next_block == start and not follower.kept
        assert await ix.snapshot(head) == []
        assert await ix.store.kept_blocks(info.chain_id) == {}
        assert (await ix.store.cursor(info.chain_id, start)).next_block == start
        follower._fetch_logs = real_fetch  # type: ignore[method-assign]
        await follower.catch_up()
        assert len(await ix.snapshot(head)) == 90
    finally:
        await ix.close()
