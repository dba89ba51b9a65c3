"""The operator's way out of a halt: `python -m services.indexer reset-chain` (a real process) on a chain
halted by a reorg deeper than the finality window (real anvil). After it, the chain is no longer halted,
a restarted follower re-ingests, and the result equals a fresh rebuild of the new canonical chain; stream
readers were told about every event that was retracted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentgpt.network import ChainInfo, Network, write_network
from services.indexer.store import EventQuery
from tests.integration.indexer.chainkit import DeployedChain, IndexerUnderTest, rebuild_snapshot

pytestmark = pytest.mark.chain
REPO = Path(__file__).resolve().parents[3]
WINDOW = 8


def run_admin(tmp: Path, info: ChainInfo, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    network_path = tmp / "network.json"
    write_network(Network((info,)), network_path)
    env = {**os.environ, "AGENTGPT_NETWORK": str(network_path), "AGENTGPT_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "services.indexer", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def halted_indexer(chain: DeployedChain, tmp: Path) -> tuple[str, list[tuple[object, ...]], int]:
    """Index the chain, then reorg it deeper than the window: returns (db url, snapshot before, head)."""
    chain.session_with_anchors(anchors=1)
    url = f"sqlite+aiosqlite:///{tmp / 'indexer.db'}"
    ix = await IndexerUnderTest.open(chain.info(finality_window=WINDOW), url=url)
    try:
        await ix.follower.catch_up()
        before = await ix.snapshot()
        head = chain.head()
        chain.rpc("anvil_reorg", [WINDOW + 3, []])
        await ix.follower.catch_up()
        assert ix.follower.halted, "the reorg beyond the window should halt the chain"
    finally:
        await ix.close()
    return url, before, head


async def test_reset_chain_clears_the_halt_and_a_restart_reingests(
    chain: DeployedChain, tmp_path: Path
) -> None:
    info = chain.info(finality_window=WINDOW)
    url, before, head = await halted_indexer(chain, tmp_path)
    assert before, "the test needs indexed events to retract"
    chain.mine(3)  # the new branch moves on

    done = run_admin(tmp_path, info, url, "reset-chain", "--chain-id", str(info.chain_id))
    assert done.returncode == 0, done.stderr
    assert "halt cleared" in done.stdout and f"to {info.deploy_block}" in done.stdout

    ix = await IndexerUnderTest.open(info, url=url)
    try:
        assert not ix.follower.halted and ix.follower.next_block == info.deploy_block
        assert ix.metric("agentgpt_indexer_chain_halted", chain_id=str(info.chain_id)) == 0
        # every event indexed before the reset was retracted in the stream, after its original
        stream = await ix.store.events_after(0, EventQuery(), 100_000)
        originals = {(e.block_number, e.log_index, e.block_hash): e.cursor for e in stream if not e.removed}
        removals = {(e.block_number, e.log_index, e.block_hash): e.cursor for e in stream if e.removed}
        assert set(removals) == {(e[0], e[2], e[1]) for e in before}
        assert all(removals[k] > originals[k] for k in removals)
        assert await ix.snapshot(10**9) == []

        await ix.follower.catch_up()
        assert not ix.follower.halted
        assert ix.follower.next_block - 1 == chain.head() > head - WINDOW - 3
        after = await ix.snapshot()
        assert after == await rebuild_snapshot(info, ix.follower.next_block - 1)
        # the orphaned branch's events are gone, the shared ones (below the fork) are back
        assert after == [e for e in before if int(str(e[0])) <= head - WINDOW - 3]
    finally:
        await ix.close()


async def test_reset_chain_to_a_block_keeps_what_is_below_it(chain: DeployedChain, tmp_path: Path) -> None:
    info = chain.info(finality_window=WINDOW)
    url, before, head = await halted_indexer(chain, tmp_path)
    fork = head - WINDOW - 3  # the last block both branches share
    kept = [e for e in before if int(str(e[0])) <= fork]
    assert kept and len(kept) < len(before), "events on both sides of the fork are needed"

    # a block past the cursor is refused, nothing changes
    refused = run_admin(
        tmp_path, info, url, "reset-chain", "--chain-id", str(info.chain_id), "--to-block", str(10**6)
    )
    assert refused.returncode == 1 and "gap" in refused.stderr
    unknown = run_admin(tmp_path, info, url, "reset-chain", "--chain-id", "999", "--to-block", "1")
    assert unknown.returncode == 1 and "never been indexed" in unknown.stderr

    done = run_admin(
        tmp_path, info, url, "reset-chain", "--chain-id", str(info.chain_id), "--to-block", str(fork + 1)
    )
    assert done.returncode == 0, done.stderr
    ix = await IndexerUnderTest.open(info, url=url)
    try:
        assert not ix.follower.halted and ix.follower.next_block == fork + 1
        assert await ix.snapshot(10**9) == kept  # nothing at or below the fork was touched
        await ix.follower.catch_up()
        assert not ix.follower.halted
        assert await ix.snapshot() == await rebuild_snapshot(info, ix.follower.next_block - 1)
    finally:
        await ix.close()
