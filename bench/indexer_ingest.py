"""Indexer ingestion throughput vs raw eth_getLogs over the same blocks of the same anvil.

    .venv/bin/python bench/indexer_ingest.py [--sessions 3000] [--per-block 30] [--runs 3] [--json PATH]

Starts its own anvil, deploys the contracts, creates `--sessions` sessions (3 indexed events each),
then times (best of --runs) a raw eth_getLogs of the followed contracts over the range (JSON parsed,
nothing else), and the indexer ingesting the same range into a fresh SQLite store (headers of the
unfinalized window, logs, decoding, one transaction per batch). Prints events/s of both, their ratio
(goal: >= 0.5) and the completeness check (every raw log indexed exactly once).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
from benchkit import Figure

from services.indexer.rpc import ChainRpc
from tests.integration.indexer.chainkit import IndexerUnderTest, deploy_chain, emit_sessions


async def measure(sessions: int, per_block: int, runs: int) -> tuple[dict[str, Figure], bool]:
    """The figures (printing the readable text): ingest rate against raw eth_getLogs, completeness; and
    whether every raw log was indexed exactly once."""
    deployed = await deploy_chain()
    try:
        start = deployed.head() + 1
        head = emit_sessions(deployed.rpc_url, deployed.chain, sessions, per_block)
        info = deployed.info(finality_window=64)
        addresses = sorted(
            info.contracts[n] for n in ("SessionFactory", "ExecutorRegistry", "AnchorRegistry")
        )
        rpc = ChainRpc(deployed.rpc_url, timeout=120)
        raw_best, raw_logs = float("inf"), []
        for _ in range(runs):
            t = time.perf_counter()
            raw_logs = await rpc.get_logs(start, head, addresses=addresses, topics=[])
            raw_best = min(raw_best, time.perf_counter() - t)
        await rpc.close()

        ix_best, indexed = float("inf"), []
        for _ in range(runs):
            tmp = tempfile.mkdtemp(prefix="indexer-bench-")
            ix = await IndexerUnderTest.open(
                info.__class__(**{**info.__dict__, "deploy_block": start}),
                url=f"sqlite+aiosqlite:///{tmp}/ix.db",
            )
            try:
                t = time.perf_counter()
                await ix.follower.catch_up(timeout=600)
                ix_best = min(ix_best, time.perf_counter() - t)
                indexed = await ix.snapshot(head)
            finally:
                await ix.close()
    finally:
        deployed.node.stop()

    raw_keys = sorted((int(lg["blockNumber"], 16), int(lg["logIndex"], 16)) for lg in raw_logs)
    ix_keys = sorted((int(str(row[0])), int(str(row[2]))) for row in indexed)
    complete = raw_keys == ix_keys
    n = len(raw_keys)
    raw_rate, ix_rate = n / raw_best, len(ix_keys) / ix_best
    print(f"blocks {start}..{head} ({head - start + 1}), events {n}")
    print(f"raw eth_getLogs : {raw_best * 1000:8.1f} ms  {raw_rate:10.0f} events/s")
    print(f"indexer ingest  : {ix_best * 1000:8.1f} ms  {ix_rate:10.0f} events/s")
    print(f"ratio indexer/raw: {ix_rate / raw_rate:.2f} (goal >= 0.5)")
    print(
        f"completeness: {len(set(ix_keys) & set(raw_keys))}/{n} = {100.0 * len(set(ix_keys) & set(raw_keys)) / max(n, 1):.1f}%"
        f"{'' if complete else '  MISMATCH'}"
    )
    matched = len(set(ix_keys) & set(raw_keys))
    figures = {
        "ingest vs raw eth_getLogs": Figure(ix_rate, "events/s", raw_rate, goal=0.5),
        "completeness": Figure(
            100.0 * matched / max(n, 1), "% indexed", goal=100.0, note="" if complete else "MISMATCH"
        ),
    }
    return figures, complete


async def main(sessions: int, per_block: int, runs: int, json_path: str) -> int:
    figures, complete = await measure(sessions, per_block, runs)
    benchkit.write_json(json_path, figures)
    return 0 if complete else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=3000)
    p.add_argument("--per-block", type=int, default=30)
    p.add_argument("--runs", type=int, default=3)
    benchkit.add_json_option(p)
    a = p.parse_args()
    sys.exit(asyncio.run(main(a.sessions, a.per_block, a.runs, a.json)))
