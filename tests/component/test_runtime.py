"""The runtime every service is built from, exercised through real in-process gRPC servers on port 0."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from agentgpt.clients import IndexerClient, RecoveryClient, check_health
from agentgpt.errors import RpcError
from agentgpt.indexer.v1 import indexer_pb2
from agentgpt.recovery.v1 import recovery_pb2
from agentgpt.runtime.config import ServerConfig
from agentgpt.runtime.server import RunningService
from services.indexer.app import build as build_indexer
from services.indexer.config import IndexerConfig
from services.recovery_oracle.app import build as build_recovery
from services.recovery_oracle.config import RecoveryConfig
from tests.support import eventually, metric_value, reflected_services, scrape

FAST = ServerConfig(health_interval=0.2, drain_delay=0.5, shutdown_grace=1.0)


def indexer_config(tmp: Path) -> IndexerConfig:
    return IndexerConfig(database_url=f"sqlite+aiosqlite:///{tmp}/indexer.db")


@pytest.fixture
async def indexer(tmp_path: Path) -> AsyncIterator[RunningService]:
    svc = RunningService(await build_indexer(indexer_config(tmp_path)), FAST)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def recovery(indexer: RunningService, tmp_path: Path) -> AsyncIterator[RunningService]:
    # The oracle's session-service dependency points at the indexer's port: any SERVING server will do
    # for the health probe, and the calls under test go to the real indexer.
    cfg = RecoveryConfig(
        session_addr=indexer.address,
        indexer_addr=indexer.address,
        ipfs_embedded_dir=str(tmp_path / "ipfs"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'recoveries.db'}",
    )
    svc = RunningService(await build_recovery(cfg), FAST)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def test_health_reflection_and_metrics(recovery: RunningService) -> None:
    assert await check_health(recovery.address) == "SERVING"
    assert await check_health(recovery.address, "agentgpt.recovery.v1.RecoveryService") == "SERVING"
    assert await reflected_services(recovery.address) >= {
        "agentgpt.recovery.v1.RecoveryService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert recovery.metrics_port > 0
    text = scrape(recovery.metrics_port)
    assert "grpc_server_handled_total" in text and "grpc_server_handling_seconds_bucket" in text
    # the process itself, for the operators' dashboards (CPU, memory, open files, start time)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"):
        assert f"\n{name} " in text, name
    assert "python_info{" in text


async def test_service_to_service_call_is_made_and_counted(
    recovery: RunningService, indexer: RunningService
) -> None:
    async with RecoveryClient(recovery.address) as client:
        with pytest.raises(RpcError) as err:
            await client.get_verified_state("7")
    # The oracle asked the indexer for session 7's events: it has none, so no anchor.
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert "session 7 has no anchored checkpoint" in err.value.details
    handled = metric_value(
        scrape(indexer.metrics_port),
        "grpc_server_handled_total",
        grpc_method="ListEvents",
        grpc_code="OK",
        grpc_type="unary",
    )
    assert handled >= 1
    # ... and the oracle counted the same call as a client.
    client_side = metric_value(
        scrape(recovery.metrics_port),
        "grpc_client_handled_total",
        grpc_method="ListEvents",
        grpc_code="OK",
    )
    assert client_side >= 1


@pytest.mark.parametrize(
    ("session_id", "message"),
    [
        ("", "session_id: is required"),
        ("abc", "session_id: must be a decimal token id"),
        ("0", "session_id: must be between 1"),
        ("9" * 100, "session_id: must be a decimal token id"),
    ],
)
async def test_invalid_requests_name_the_field(
    recovery: RunningService, session_id: str, message: str
) -> None:
    async with RecoveryClient(recovery.address) as client:
        with pytest.raises(RpcError) as err:
            await client.get_verified_state(session_id)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details.startswith(message)
    text = scrape(recovery.metrics_port)
    assert (
        metric_value(
            text, "grpc_server_handled_total", grpc_method="GetVerifiedState", grpc_code="InvalidArgument"
        )
        >= 1
    )


async def test_bad_enum_and_unknown_methods(recovery: RunningService) -> None:
    async with RecoveryClient(recovery.address) as client:
        with pytest.raises(RpcError) as err:
            await client.submit_claim(
                recovery_pb2.SubmitClaimRequest(
                    idempotency_key="k1",
                    session_id="1",
                    kind=99,  # type: ignore[arg-type]
                    executor="0x" + "ab" * 20,
                    evidence="cid",
                )
            )
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details.startswith("kind: unknown value 99")
        # A valid request whose dependency (here not a session service at all) cannot answer: UNAVAILABLE,
        # naming the dependency, never INTERNAL.
        with pytest.raises(RpcError) as err:
            await client.recover_session("1", "manual")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert "SessionService" in err.value.details
    # A method no service has.
    async with aio.insecure_channel(recovery.address) as ch:
        call = ch.unary_unary("/agentgpt.recovery.v1.RecoveryService/NoSuchThing")
        with pytest.raises(aio.AioRpcError) as raw:
            await call(b"")
        assert raw.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # Garbage bytes that do not parse as the request message.
        call = ch.unary_unary("/agentgpt.recovery.v1.RecoveryService/GetVerifiedState")
        with pytest.raises(aio.AioRpcError) as raw:
            await call(b"\xff\xff\xff\xff")
        assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (raw.value.details() or "").startswith("request: is not a valid request message")
    assert await check_health(recovery.address) == "SERVING"


@contextlib.asynccontextmanager
async def indexer_whose_get_latest_anchor_raises(tmp: Path, exc: Exception) -> AsyncIterator[RunningService]:
    """A real indexer server in which one RPC raises `exc` (a bug, a failed dependency call)."""
    definition = await build_indexer(indexer_config(tmp))

    async def raising(request: object, context: object) -> None:
        raise exc

    definition.servicers[0].impl.GetLatestAnchor = raising
    svc = RunningService(definition, FAST)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def test_unexpected_errors_become_internal_and_the_service_survives(tmp_path: Path) -> None:
    async with indexer_whose_get_latest_anchor_raises(tmp_path, KeyError("bug")) as svc:
        async with IndexerClient(svc.address) as client:
            with pytest.raises(RpcError) as err:
                await client.get_latest_anchor("1")
            assert err.value.code == grpc.StatusCode.INTERNAL
            assert "internal error (request id" in err.value.details
            status = await client.get_chain_status()
        assert isinstance(status, indexer_pb2.GetChainStatusResponse)
        assert await check_health(svc.address) == "SERVING"


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE),
        (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION),
        (grpc.StatusCode.INTERNAL, grpc.StatusCode.INTERNAL),
        (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL),
    ],
)
async def test_a_failed_call_to_another_service_reaches_the_caller_as_a_deliberate_status(
    tmp_path: Path, remote: grpc.StatusCode, expected: grpc.StatusCode
) -> None:
    failed = RpcError("SessionService", "GetSession", remote, "session 7 said no")
    async with indexer_whose_get_latest_anchor_raises(tmp_path, failed) as svc:
        async with IndexerClient(svc.address) as client:
            with pytest.raises(RpcError) as err:
                await client.get_latest_anchor("1")
    assert err.value.code == expected
    if expected != grpc.StatusCode.INTERNAL:
        assert err.value.details == "SessionService: session 7 said no"


async def test_failing_dependency_turns_health_not_serving_and_back(
    indexer: RunningService, tmp_path: Path
) -> None:
    # Point the oracle at a port where nothing listens: its probes fail.
    cfg = RecoveryConfig(
        session_addr="127.0.0.1:9", indexer_addr=indexer.address, ipfs_embedded_dir=str(tmp_path / "ipfs")
    )
    svc = RunningService(await build_recovery(cfg), FAST)
    await svc.start()
    try:
        assert await check_health(svc.address) == "NOT_SERVING"
        assert "session_service" in svc.last_probe_failures
        # Per-dependency health names say which dependency is down.
        base = "agentgpt.recovery.v1.RecoveryService"
        assert await check_health(svc.address, f"{base}/session_service") == "NOT_SERVING"
        assert await check_health(svc.address, f"{base}/indexer") == "SERVING"
        # The process itself is fine: liveness stays SERVING while readiness is NOT_SERVING.
        assert await check_health(svc.address, "liveness") == "SERVING"
    finally:
        await svc.stop()


async def test_stop_reports_not_serving_before_closing(tmp_path: Path) -> None:
    svc = RunningService(await build_indexer(indexer_config(tmp_path)), FAST)
    await svc.start()
    assert await check_health(svc.address) == "SERVING"
    stopping = asyncio.create_task(svc.stop())

    async def not_serving() -> None:
        assert await check_health(svc.address) == "NOT_SERVING"

    await eventually(not_serving, timeout=FAST.drain_delay, interval=0.02)
    await stopping
    with pytest.raises(RpcError):
        await check_health(svc.address, timeout=0.5)
