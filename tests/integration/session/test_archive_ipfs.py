"""A long session's event log archived on a real IPFS node (Kubo RPC) as a UnixFS file, read back by CID
through a separate client (the node reassembles it with `cat`; the library re-verifies every byte)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agentgpt.ipfs import KuboStore, codec_of
from agentgpt.runtime.config import load
from agentgpt.runtime.server import RunningService
from agentgpt.session.v1 import session_pb2 as pb
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.session.app import build
from services.session.config import SessionConfig
from services.session.memory import InMemorySessionChain
from tests.component.session.harness import Harness, Owner, grow_log, new_key, server_config

pytestmark = [pytest.mark.ipfs]

EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest_asyncio.fixture
async def service(tmp_path: Path, ipfs_api: str) -> AsyncIterator[Harness]:
    config = load(
        SessionConfig,
        env={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}",
        ipfs_api=ipfs_api,
        timer_interval=3600,
    )
    running = RunningService(await build(config, chain=InMemorySessionChain()), server_config())
    await running.start()
    h = Harness(running)
    try:
        yield h
    finally:
        await h.close()
        await running.stop()


async def test_two_thousand_event_log_round_trips_through_the_node(service: Harness) -> None:
    owner = Owner(DEV_PRIVATE_KEYS[1], 31337)
    s = await service.create(owner)
    await service.activate(owner, s, EXECUTOR)
    await grow_log(service.control, s.session_id, 2000)
    req = owner.sign(pb.CompleteSessionRequest(idempotency_key=new_key(), session_id=s.session_id))
    done = await service.stub.CompleteSession(owner.chain_sign("complete", s, req))
    assert codec_of(done.log_cid) == "dag-pb"
    async with KuboStore(service.control.archive.endpoint) as reader:
        assert await reader.has(done.log_cid)
        raw = await reader.get(done.log_cid)
    archived = json.loads(raw)
    assert len(raw) > 256 * 1024 and len(archived["events"]) == 2002
    assert archived["events"][-1]["data"]["seq"] == 2000
    evs = await service.control.db.events_after(s.session_id, 0, limit=10_000)
    assert archived["head"] == "0x" + evs[-2].hash.hex()
