"""The executor as a real gRPC service (RunningService on port 0) in front of the fake session API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from eth_account import Account

from agentgpt.clients import ExecutorClient, check_health
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import RpcError
from agentgpt.executor.v1 import executor_pb2 as pb
from agentgpt.ipfs import EmbeddedStore
from agentgpt.runtime.config import ServerConfig, load
from agentgpt.runtime.server import RunningService
from services.executor.app import build
from services.executor.config import ExecutorConfig
from tests.component.executor.fake_session import FakeSessionServer
from tests.component.executor.helpers import KEY
from tests.support import eventually, metric_value, scrape


@pytest_asyncio.fixture(loop_scope="session")
async def executor(
    fake_session: FakeSessionServer, tmp_path: Path
) -> AsyncIterator[tuple[RunningService, ExecutorClient]]:
    config = load(
        ExecutorConfig,
        env={},
        executor_key=KEY,
        poll_interval=0.05,
        claim_sessions=False,
        ipfs_embedded_dir=str(tmp_path),
        session_addr=fake_session.address,
        executor_id="ex-svc",
    )
    definition = await build(config, store=EmbeddedStore(tmp_path))
    service = RunningService(definition, ServerConfig(metrics_port=0, drain_delay=0.0, health_interval=0.2))
    await service.start()
    client = ExecutorClient(service.address)
    try:
        yield service, client
    finally:
        await client.close()
        await service.stop()


async def test_assign_status_release(
    executor: tuple[RunningService, ExecutorClient], fake_session: FakeSessionServer
) -> None:
    service, client = executor
    svc = fake_session.service
    svc.add_session("301")
    svc.submit("301", [("count", {}) for _ in range(3)])
    assert await check_health(service.address) == "SERVING"
    epoch = (await client.assign_session("301")).epoch
    assert epoch == svc.sessions["301"].session.lease_epoch > 0
    assert "executor:ex-svc" in svc.identities  # leases are claimed as a service identity
    await eventually(lambda: "executor:ex-svc" in svc.read_identities)  # queue reads carry it too
    await eventually(lambda: len(svc.done("301")) == 3)
    status = await client.get_status()
    assert status.address == Account.from_key(KEY).address
    (running,) = [s for s in status.sessions if s.session_id == "301"]
    assert (running.epoch, running.last_task_seq, running.context_epoch) == (epoch, 3, 1)
    # operators see the work on /metrics: tasks by outcome, their latency, sessions held
    # (the checkpoint is written once the queue drains: wait for it)
    await eventually(
        lambda: (
            metric_value(scrape(service.metrics_port), "agentgpt_executor_checkpoints_total", result="ok")
            >= 1
        )
    )
    text = scrape(service.metrics_port)
    assert metric_value(text, "agentgpt_executor_tasks_total", status="succeeded") == 3
    assert metric_value(text, "agentgpt_executor_task_seconds_count") == 3
    assert metric_value(text, "agentgpt_executor_sessions") == 1
    assert metric_value(text, "grpc_server_handled_total", grpc_method="AssignSession", grpc_code="OK") == 1
    await client.release_session("301")
    status = await client.get_status()
    assert all(s.session_id != "301" for s in status.sessions)
    assert svc.sessions["301"].lease_expires == 0.0  # the lease was given back


async def test_requests_are_validated(
    executor: tuple[RunningService, ExecutorClient], fake_session: FakeSessionServer
) -> None:
    _, client = executor
    with pytest.raises(RpcError) as info:
        await client.assign_session("not-a-number")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "session_id" in info.value.details
    with pytest.raises(RpcError) as info:
        await client.rehydrate_session(
            pb.RehydrateSessionRequest(
                session_id="5",
                epoch=0,
                checkpoint=cpb.Checkpoint(session_id="5", cid="b", state_root=b"\x01" * 32),
            )
        )
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "checkpoint.seq" in info.value.details
    with pytest.raises(RpcError) as info:
        await client.assign_session("999999")  # not a session the service knows
    assert info.value.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)
