"""The indexer service over gRPC (real in-process server) against a real anvil: queries, pagination,
a resumable stream that sees reorg retractions, chain status, and health NOT_SERVING on a halt."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentgpt.indexer.v1 import indexer_pb2 as pb
from agentgpt.indexer.v1 import indexer_pb2_grpc as pb_grpc
from agentgpt.network import Network
from agentgpt.runtime.config import ServerConfig
from agentgpt.runtime.server import RunningService
from services.indexer.app import build
from services.indexer.config import IndexerConfig
from tests.integration.indexer.chainkit import DeployedChain
from tests.support import eventually

pytestmark = pytest.mark.chain
WINDOW = 6


@pytest_asyncio.fixture(loop_scope="session")
async def service(
    chain: DeployedChain, tmp_path: Path
) -> AsyncIterator[tuple[RunningService, pb_grpc.IndexerServiceStub, aio.Channel]]:
    config = IndexerConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ix.db'}", poll_interval=0.05, stream_wait=0.2
    )
    definition = await build(config, network=Network((chain.info(finality_window=WINDOW),)))
    running = RunningService(
        definition, ServerConfig(metrics_port=-1, health_interval=0.1, drain_delay=0.0, shutdown_grace=0.5)
    )
    await running.start()
    channel = aio.insecure_channel(running.address)
    try:
        yield running, pb_grpc.IndexerServiceStub(channel), channel
    finally:
        await channel.close()
        await running.stop()


async def head_indexed(stub: pb_grpc.IndexerServiceStub, chain: DeployedChain) -> pb.ChainStatus:
    async def check() -> pb.ChainStatus:
        status = (await stub.GetChainStatus(pb.GetChainStatusRequest(), timeout=5)).chains[0]
        assert status.indexed_block == chain.head() and status.health == pb.CHAIN_HEALTH_FOLLOWING, status
        return status

    return await eventually(check, timeout=30)


async def test_queries_pagination_and_status(
    chain: DeployedChain, service: tuple[RunningService, pb_grpc.IndexerServiceStub, aio.Channel]
) -> None:
    _, stub, _ = service
    sid = await asyncio.to_thread(chain.session_with_anchors, 3)
    status = await head_indexed(stub, chain)
    assert (
        status.lag_blocks == 0
        and status.finality_window == WINDOW
        and status.chain_id == chain.chain.chain_id
    )

    anchor = await stub.GetLatestAnchor(pb.GetLatestAnchorRequest(session_id=str(sid)), timeout=5)
    assert anchor.highest.checkpoint.seq == 3 and anchor.highest.chain_id == chain.chain.chain_id
    assert anchor.highest.checkpoint.state_root == bytes([3]) * 32
    assert [a.chain_id for a in anchor.per_chain] == [chain.chain.chain_id]

    s = await stub.GetOnChainSession(pb.GetOnChainSessionRequest(session_id=str(sid)), timeout=5)
    on_chain = chain.chain.session(sid)
    assert (s.state, s.owner, s.executor, s.latest_seq, int(s.spent)) == (
        2,
        on_chain["owner"],
        on_chain["executor"],
        3,
        on_chain["spent"],
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetOnChainSession(pb.GetOnChainSessionRequest(session_id="999"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # pages of 2 cover exactly the unpaged result, in (chain, block, log index) order
    flt = pb.EventFilter(session_id=str(sid))
    everything = (
        await stub.ListEvents(pb.ListEventsRequest(filter=flt, page={"page_size": 500}), timeout=5)
    ).events
    paged, token = [], ""
    while True:
        page = await stub.ListEvents(
            pb.ListEventsRequest(filter=flt, page={"page_size": 2, "page_token": token}), timeout=5
        )
        paged += page.events
        token = page.page.next_page_token
        if not token:
            break
    assert [e.cursor for e in paged] == [e.cursor for e in everything]
    assert len(everything) >= 7
    keys = [(e.chain_id, e.block_number, e.log_index) for e in everything]
    assert keys == sorted(keys)
    anchors_only = await stub.ListEvents(
        pb.ListEventsRequest(
            filter=pb.EventFilter(session_id=str(sid), names=["CheckpointAnchored"]), page={"page_size": 50}
        ),
        timeout=5,
    )
    assert [json.loads(e.args_json)["seq"] for e in anchors_only.events] == ["1", "2", "3"]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListEvents(pb.ListEventsRequest(page={"page_size": 2, "page_token": "bogus"}), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_resumes_and_sees_retractions(
    chain: DeployedChain, service: tuple[RunningService, pb_grpc.IndexerServiceStub, aio.Channel]
) -> None:
    _, stub, _ = service
    await asyncio.to_thread(chain.session_with_anchors, 1)
    await head_indexed(stub, chain)
    received: list[pb.ChainEvent] = []

    async def consume(from_cursor: int, until: int) -> None:
        async for resp in stub.StreamEvents(pb.StreamEventsRequest(from_cursor=from_cursor), timeout=30):
            received.append(resp.event)
            if len(received) >= until:
                return

    first = (await stub.ListEvents(pb.ListEventsRequest(page={"page_size": 500}), timeout=5)).events
    await consume(0, 3)
    resume_at = received[-1].cursor
    received.clear()
    # a new consumer resumes where the first stopped: no gap, no duplicate
    task = asyncio.create_task(consume(resume_at, 10_000))
    sid = await asyncio.to_thread(chain.session_with_anchors, 1)
    await head_indexed(stub, chain)

    async def new_events_streamed() -> None:
        assert any(e.session_id == str(sid) and not e.removed for e in received)

    await eventually(new_events_streamed, timeout=20)
    await asyncio.to_thread(chain.rpc, "anvil_reorg", [2, []])

    async def retracted() -> None:
        assert any(e.removed for e in received)

    await eventually(retracted, timeout=20)
    task.cancel()
    cursors = [e.cursor for e in received]
    assert cursors == sorted(cursors) and len(cursors) == len(set(cursors)) and cursors[0] == resume_at + 1
    originals = {(e.block_number, e.log_index, e.block_hash) for e in [*first, *received] if not e.removed}
    assert {(e.block_number, e.log_index, e.block_hash) for e in received if e.removed} <= originals
    status = await head_indexed(stub, chain)
    assert status.reorgs_total == 1


async def test_halt_turns_health_not_serving(
    chain: DeployedChain, service: tuple[RunningService, pb_grpc.IndexerServiceStub, aio.Channel]
) -> None:
    running, stub, channel = service
    await asyncio.to_thread(chain.session_with_anchors, 1)
    await head_indexed(stub, chain)
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    ).status == health_pb2.HealthCheckResponse.SERVING
    await asyncio.to_thread(chain.rpc, "anvil_reorg", [WINDOW + 2, []])

    async def halted() -> None:
        status = (await stub.GetChainStatus(pb.GetChainStatusRequest(), timeout=5)).chains[0]
        assert status.health == pb.CHAIN_HEALTH_HALTED and "finality window" in status.detail
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING

    await eventually(halted, timeout=20)
    sample = running.definition.registry.get_sample_value(
        "agentgpt_indexer_chain_halted", {"chain_id": str(chain.chain.chain_id)}
    )
    assert sample == 1
    # queries keep answering from the data indexed before the halt
    assert (await stub.ListEvents(pb.ListEventsRequest(page={"page_size": 5}), timeout=5)).events
