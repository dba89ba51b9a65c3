"""`python -m services.indexer` as a real process, killed with SIGKILL in the middle of ingesting, then
restarted: it resumes with no gap and no duplicate, and equals a fresh rebuild into a new database."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentgpt.network import Network, write_network
from tests.integration.indexer.chainkit import (
    DeployedChain,
    IndexerUnderTest,
    emit_sessions,
    rebuild_snapshot,
)
from tests.support import eventually

pytestmark = pytest.mark.chain
REPO = Path(__file__).resolve().parents[3]
WINDOW = 8


def start_indexer(tmp: Path, network_path: Path, db: Path, log_name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AGENTGPT_NETWORK": str(network_path),
        "AGENTGPT_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "AGENTGPT_GRPC_PORT": "0",
        "AGENTGPT_METRICS_PORT": "-1",
        "AGENTGPT_MAX_BATCH_BLOCKS": "1",  # many small commits: a kill lands mid-way through the range
        "AGENTGPT_POLL_INTERVAL": "0.05",
        "AGENTGPT_READY_FILE": str(tmp / f"{log_name}.ready"),
    }
    with open(tmp / f"{log_name}.log", "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "services.indexer"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def next_block(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT next_block FROM chains").fetchone()
            return int(row[0]) if row else 0
    except sqlite3.OperationalError:
        return 0  # not created yet


async def test_sigkill_mid_batch_resumes_without_gap_or_duplicate(
    chain: DeployedChain, tmp_path: Path
) -> None:
    start = chain.chain.deployment.deploy_block
    head = emit_sessions(chain.rpc_url, chain.chain, sessions=1500, per_block=3)
    info = chain.info(finality_window=WINDOW)
    network_path = tmp_path / "network.json"
    write_network(Network((info,)), network_path)
    db = tmp_path / "indexer.db"

    proc = start_indexer(tmp_path, network_path, db, "first")
    try:
        await eventually(
            lambda: next_block(db) > start + 50,
            60,
            interval=0.01,
            what="the first process to ingest some blocks",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = next_block(db)
    assert start + 50 < killed_at <= head, f"the kill should land mid-range (cursor {killed_at}, head {head})"

    proc = start_indexer(tmp_path, network_path, db, "second")
    try:
        await eventually(
            lambda: next_block(db) == head + 1, 120, interval=0.01, what="the restarted process to catch up"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    resumed = await IndexerUnderTest.open(info, url=f"sqlite+aiosqlite:///{db}")
    try:
        snap = await resumed.snapshot(head)
        assert len(snap) == 3 * 1500 + _events_before(snap, start, emitted_from=head - 500 + 1)
        positions = [(row[0], row[2]) for row in snap]
        assert len(positions) == len(set(positions)), "duplicate events after the restart"
        assert snap == await rebuild_snapshot(info, head)
    finally:
        await resumed.close()
    assert "Traceback" not in (tmp_path / "second.log").read_text(), (tmp_path / "second.log").read_text()[
        -3000:
    ]
    json.loads((tmp_path / "second.ready").read_text())


def _events_before(snap: list[tuple[object, ...]], start: int, emitted_from: int) -> int:
    """Events of the set-up transactions (bonding) that precede the emitted blocks."""
    return sum(1 for row in snap if int(str(row[0])) < emitted_from)
