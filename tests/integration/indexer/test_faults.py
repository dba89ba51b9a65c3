"""The follower, running as it does in the service, through an RPC that goes away, lags, answers garbage,
hangs, or serves bad logs. The process stays up, nothing is mistaken for a reorg, and afterwards the
indexed state equals a fresh rebuild from the chain's start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from services.indexer.follower import Health
from services.indexer.store import EventQuery
from tests.integration.indexer.chainkit import DeployedChain, IndexerUnderTest, rebuild_snapshot
from tests.integration.indexer.rpcproxy import RpcProxy
from tests.support import eventually

pytestmark = pytest.mark.chain
WINDOW = 8


@contextlib.asynccontextmanager
async def running(ix: IndexerUnderTest) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(ix.follower.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def caught_up(ix: IndexerUnderTest, chain: DeployedChain) -> None:
    async def check() -> None:
        assert ix.follower.next_block - 1 == chain.head(), "not caught up yet"
        assert ix.follower.status.health == Health.FOLLOWING

    await eventually(check, timeout=30)


async def assert_equals_rebuild(ix: IndexerUnderTest, chain: DeployedChain) -> None:
    up_to = ix.follower.next_block - 1
    assert await ix.snapshot(up_to) == await rebuild_snapshot(chain.info(finality_window=WINDOW), up_to)
    stream = await ix.store.events_after(0, EventQuery(), 100_000)
    assert not [e for e in stream if e.removed], "no reorg happened, so nothing may be retracted"
    positions = [(e.block_number, e.log_index) for e in stream]
    assert len(positions) == len(set(positions)), "duplicate events"


async def test_rpc_going_away_and_back(chain: DeployedChain, proxy: RpcProxy) -> None:
    ix = await IndexerUnderTest.open(
        chain.info(finality_window=WINDOW, rpc_url=proxy.url), rpc_timeout=1.0, retry_cap=0.5
    )
    label = str(chain.chain.chain_id)
    try:
        async with running(ix) as task:
            await asyncio.to_thread(chain.session_with_anchors, 1)
            await caught_up(ix, chain)
            await proxy.cut()
            await asyncio.to_thread(chain.session_with_anchors, 2)

            async def degraded() -> None:
                assert ix.follower.status.health == Health.DEGRADED
                assert ix.metric("agentgpt_indexer_rpc_errors_total", chain_id=label, kind="unreachable") >= 2

            await eventually(degraded, timeout=20)
            assert not task.done()
            await proxy.restore()
            await caught_up(ix, chain)
        assert ix.follower.status.reorgs_total == 0
        await assert_equals_rebuild(ix, chain)
    finally:
        await ix.close()


async def test_garbage_and_timeouts_are_retried(chain: DeployedChain, proxy: RpcProxy) -> None:
    ix = await IndexerUnderTest.open(
        chain.info(finality_window=WINDOW, rpc_url=proxy.url), rpc_timeout=0.5, retry_cap=0.3
    )
    label = str(chain.chain.chain_id)
    try:
        async with running(ix) as task:
            for mode, kind in (("garbage", "garbage"), ("garbage_json", "garbage"), ("hang", "timeout")):
                proxy.mode = mode
                await asyncio.to_thread(chain.session_with_anchors, 1)

                async def counted(kind: str = kind) -> None:
                    assert ix.metric("agentgpt_indexer_rpc_errors_total", chain_id=label, kind=kind) >= 1

                await eventually(counted, timeout=20)
                assert ix.follower.status.health == Health.DEGRADED
                proxy.mode = "pass"
                await caught_up(ix, chain)
            assert not task.done()
        await assert_equals_rebuild(ix, chain)
    finally:
        await ix.close()


async def test_a_lagging_rpc_is_not_a_reorg(chain: DeployedChain, proxy: RpcProxy) -> None:
    ix = await IndexerUnderTest.open(chain.info(finality_window=WINDOW, rpc_url=proxy.url))
    label = str(chain.chain.chain_id)
    try:
        async with running(ix):
            await asyncio.to_thread(chain.session_with_anchors, 2)
            await caught_up(ix, chain)
            proxy.mode, proxy.lag = "lag", 3  # the node now answers an older head and lacks the newest blocks

            async def lag_seen() -> None:
                assert ix.metric("agentgpt_indexer_rpc_lagging_total", chain_id=label) >= 2

            await eventually(lag_seen, timeout=20)
            await asyncio.to_thread(chain.session_with_anchors, 1)  # the chain moves on meanwhile
            await asyncio.sleep(0.5)
            assert ix.follower.status.reorgs_total == 0
            await proxy.restore()
            await caught_up(ix, chain)
        assert ix.follower.status.reorgs_total == 0
        await assert_equals_rebuild(ix, chain)
    finally:
        await ix.close()


async def test_bad_logs_are_skipped_with_a_reason(chain: DeployedChain, proxy: RpcProxy) -> None:
    ix = await IndexerUnderTest.open(chain.info(finality_window=WINDOW, rpc_url=proxy.url))
    c = chain.chain
    label = str(c.chain_id)
    block = c.w3.eth.get_block("latest")
    base = {
        "blockNumber": hex(block["number"]),
        "blockHash": "0x" + bytes(block["hash"]).hex(),
        "transactionHash": "0x" + "77" * 32,
        "address": c.factory.address,
        "data": "0x",
    }
    bonded_topic = "0x" + str(c.registry.events.Bonded().topic).removeprefix("0x")
    proxy.inject_logs = [
        {**base, "logIndex": "0x100", "topics": "not a list"},  # malformed
        {**base, "logIndex": "zz", "topics": ["0x" + "11" * 32]},  # malformed
        {**base, "logIndex": "0x101", "topics": ["0x" + "ab" * 32]},  # unknown event of the factory
        {
            **base,
            "logIndex": "0x102",
            "address": c.registry.address,
            "topics": [bonded_topic, "0x" + "00" * 32],
            "data": "0x1234",
        },  # undecodable
        {**base, "logIndex": "0x103", "address": "0x" + "42" * 20, "topics": ["0x" + "ab" * 32]},  # foreign
        "a string, not a log",
    ]
    try:
        await asyncio.to_thread(chain.session_with_anchors, 1)
        await ix.follower.catch_up()
        for reason in ("malformed", "unknown_event", "undecodable"):
            assert ix.metric("agentgpt_indexer_skipped_logs_total", chain_id=label, reason=reason) >= 1, (
                reason
            )
        proxy.inject_logs = []
        await assert_equals_rebuild(ix, chain)
    finally:
        await ix.close()
