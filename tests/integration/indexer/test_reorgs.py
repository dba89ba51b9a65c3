"""The follower against a real anvil: ingestion, reorgs inside and beyond the finality window.

After each scenario the indexed state must equal a fresh rebuild from the chain's start (differential
check), or the chain must be halted with the explicit error.
"""

from __future__ import annotations

import json

import pytest

from services.indexer.queries import IndexerQueries
from services.indexer.store import EventQuery
from tests.integration.indexer.chainkit import DeployedChain, IndexerUnderTest, rebuild_snapshot

pytestmark = pytest.mark.chain
WINDOW = 8


async def test_ingests_project_events_and_matches_a_rebuild(chain: DeployedChain) -> None:
    sid = chain.session_with_anchors(anchors=2)
    ix = await IndexerUnderTest.open(chain.info(finality_window=WINDOW))
    try:
        await ix.follower.catch_up()
        names = [row[5] for row in await ix.snapshot()]
        for expected in (
            "Bonded",
            "SessionCreated",
            "SessionActivated",
            "ExecutorAssigned",
            "CheckpointAnchored",
            "BudgetCharged",
            "Transfer",
        ):
            assert expected in names, f"{expected} not indexed: {names}"
        queries = IndexerQueries(ix.store, chain.chain.chain_id, lambda _: ix.follower.status.head_block)
        anchors = await queries.latest_anchors(str(sid))
        assert [(a.chain_id, a.seq) for a in anchors] == [(chain.chain.chain_id, 2)]
        assert anchors[0].cid.startswith("bafy")
        state = await queries.on_chain_session(str(sid))
        on_chain = chain.chain.session(sid)
        assert state is not None
        assert (state.state, state.owner, state.executor, state.latest_seq) == (
            2,
            on_chain["owner"],
            on_chain["executor"],
            2,
        )
        assert (state.budget, state.spent) == (on_chain["budget"], on_chain["spent"])
        assert ix.metric("agentgpt_indexer_events_total", chain_id=str(chain.chain.chain_id)) == len(names)
        # ingestion is idempotent: a second catch-up at the tip changes nothing
        before = await ix.snapshot()
        await ix.follower.catch_up()
        assert await ix.snapshot() == before
        assert before == await rebuild_snapshot(
            chain.info(finality_window=WINDOW), ix.follower.next_block - 1
        )
    finally:
        await ix.close()


@pytest.mark.parametrize("depth", [1, 3, WINDOW])
async def test_reorg_inside_the_window_rolls_back_and_reingests(chain: DeployedChain, depth: int) -> None:
    chain.session_with_anchors(anchors=1)
    chain.mine(2)
    c = chain.chain
    ix = await IndexerUnderTest.open(chain.info(finality_window=WINDOW))
    try:
        await ix.follower.catch_up()
        # events in the blocks about to be replaced (one tx per block with automine)
        sids = [chain.session_with_anchors(anchors=1) for _ in range(max(1, depth // 4))]
        head = chain.head()
        await ix.follower.catch_up()
        replaced = [e for e in await ix.snapshot() if e[0] > head - depth]
        assert replaced, "the blocks being replaced should hold indexed events"
        # the new branch holds a different transaction: executor2 starts unbonding
        ex2 = c.actors.executor2
        tx = c.registry.functions.requestUnbond(12345).build_transaction(
            {"from": ex2, "nonce": c.w3.eth.get_transaction_count(ex2), "gas": 500_000}
        )
        signed = c.w3.eth.account.sign_transaction(tx, c.key_of[ex2])
        chain.rpc("anvil_reorg", [depth, [["0x" + bytes(signed.raw_transaction).hex(), 0]]])
        assert chain.head() == head
        await ix.follower.catch_up()
        assert ix.follower.status.reorgs_total == 1
        assert ix.metric("agentgpt_indexer_reorgs_total", chain_id=str(c.chain_id)) == 1
        # every replaced event is retracted in the stream with a new cursor
        stream = await ix.store.events_after(0, EventQuery(), 10_000)
        removals = {(e.block_number, e.log_index, e.block_hash) for e in stream if e.removed}
        assert {(e[0], e[2], e[1]) for e in replaced} <= removals
        max_original = max(
            e.cursor
            for e in stream
            if not e.removed and (e.block_number, e.log_index, e.block_hash) in removals
        )
        assert all(e.cursor > max_original for e in stream if e.removed)
        # the new branch's session is indexed, the replaced anchors are gone
        snap = await ix.snapshot()
        unbonds = [json.loads(e[6]) for e in snap if e[5] == "UnbondRequested" and e[0] > head - depth]
        assert [(a["executor"], a["amount"]) for a in unbonds] == [(ex2, "12345")]
        for sid in sids:
            assert str(sid) not in {e[7] for e in snap if e[0] > head - depth}
        assert snap == await rebuild_snapshot(chain.info(finality_window=WINDOW), ix.follower.next_block - 1)
    finally:
        await ix.close()


async def test_reorg_beyond_the_window_halts_the_chain(chain: DeployedChain) -> None:
    c = chain.chain
    chain.session_with_anchors(anchors=1)
    ix = await IndexerUnderTest.open(chain.info(finality_window=WINDOW))
    try:
        await ix.follower.catch_up()
        before = await ix.snapshot()
        head = chain.head()
        chain.rpc("anvil_reorg", [WINDOW + 3, []])
        await ix.follower.catch_up()
        assert ix.follower.halted
        assert "deeper than the finality window" in ix.follower.status.detail
        assert ix.metric("agentgpt_indexer_chain_halted", chain_id=str(c.chain_id)) == 1
        # nothing was rolled back or ingested past the halt: the data is as before, not silently mixed
        assert await ix.snapshot(10**9) == before
        chain.mine(3)
        await ix.follower.catch_up()
        assert ix.follower.next_block - 1 == head
        # the halt is durable: a restarted follower is still halted, with the reason
        again = await IndexerUnderTest.open(chain.info(finality_window=WINDOW), url=str(ix.store.engine.url))
        try:
            assert again.follower.halted and "deeper than the finality window" in again.follower.status.detail
        finally:
            await again.close()
    finally:
        await ix.close()
