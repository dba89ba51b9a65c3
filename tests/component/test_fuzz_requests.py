"""Random and malformed requests at every RPC of the executor, recovery oracle and indexer: every
answer is a deliberate gRPC status (never UNKNOWN or INTERNAL), and the service stays up.
(The session service has its own, store-aware fuzz test.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc import aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentgpt.clients import check_health
from agentgpt.runtime.config import ServerConfig
from agentgpt.runtime.server import RunningService, ServiceDefinition
from tests.support.protofuzz import messages, repeated

ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


async def _definitions(tmp: str) -> list[ServiceDefinition]:
    from services.executor.app import build as build_executor
    from services.executor.config import ExecutorConfig
    from services.indexer.app import build as build_indexer
    from services.indexer.config import IndexerConfig
    from services.recovery_oracle.app import build as build_recovery
    from services.recovery_oracle.config import RecoveryConfig

    nowhere = "127.0.0.1:9"  # nothing listens: dependencies are down, answers must still be clean
    return [
        await build_indexer(IndexerConfig(database_url=f"sqlite+aiosqlite:///{tmp}/indexer.db")),
        await build_recovery(
            RecoveryConfig(session_addr=nowhere, indexer_addr=nowhere, ipfs_embedded_dir=f"{tmp}/oracle-ipfs")
        ),
        await build_executor(ExecutorConfig(session_addr=nowhere, ipfs_embedded_dir=f"{tmp}/executor-ipfs")),
    ]


@pytest.fixture(scope="module")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[RunningService]]:
    tmp = str(tmp_path_factory.mktemp("fuzz"))
    running = []
    try:
        for definition in await _definitions(tmp):
            svc = RunningService(
                definition, ServerConfig(health_interval=60, drain_delay=0, shutdown_grace=0.5)
            )
            await svc.start()
            running.append(svc)
        yield running
    finally:
        for svc in running:
            await svc.stop()


def _rpcs(svc: RunningService) -> list[tuple[str, ServiceDescriptor, object]]:
    out = []
    for s in svc.definition.servicers:
        for m in s.descriptor.methods:
            out.append((f"/{s.descriptor.full_name}/{m.name}", m, GetMessageClass(m.output_type)))
    return out


async def _call(svc: RunningService, path: str, method: object, response_cls: object, payload: bytes) -> None:
    async with aio.insecure_channel(svc.address) as ch:
        deserialize = response_cls.FromString  # type: ignore[attr-defined]
        if method.server_streaming:  # type: ignore[attr-defined]
            call = ch.unary_stream(path, response_deserializer=deserialize)(payload, timeout=3)
            try:
                async for _ in call:
                    break
            except aio.AioRpcError as exc:
                assert exc.code() in ACCEPTABLE, (path, exc.code(), exc.details())
            finally:
                call.cancel()
            return
        try:
            await ch.unary_unary(path, response_deserializer=deserialize)(payload, timeout=5)
        except aio.AioRpcError as exc:
            assert exc.code() in ACCEPTABLE, (path, exc.code(), exc.details())
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                assert ":" in (exc.details() or ""), f"{path}: INVALID_ARGUMENT without a field name"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_random_requests_get_deliberate_statuses(
    servers: list[RunningService], data: st.DataObject
) -> None:
    svc = data.draw(st.sampled_from(servers))
    path, method, response_cls = data.draw(st.sampled_from(_rpcs(svc)))
    if data.draw(st.booleans()):
        payload = data.draw(messages(method.input_type)).SerializeToString()  # type: ignore[attr-defined]
    else:
        payload = data.draw(st.binary(max_size=64))  # not even a message
    await _call(svc, path, method, response_cls, payload)


def _plausible(descriptor: object, depth: int = 0) -> object:
    """A request that passes validation wherever it can (ids "1", small numbers, 32-byte hashes), so the
    call reaches the service's dependencies, which are down here."""
    from google.protobuf.descriptor import FieldDescriptor as F

    msg = GetMessageClass(descriptor)()
    for field in descriptor.fields:  # type: ignore[attr-defined]
        if repeated(field) or field.containing_oneof is not None:
            continue
        if field.type == F.TYPE_MESSAGE:
            if depth < 2:
                getattr(msg, field.name).CopyFrom(_plausible(field.message_type, depth + 1))
        elif field.type == F.TYPE_STRING:
            setattr(msg, field.name, "1")
        elif field.type == F.TYPE_BYTES:
            setattr(msg, field.name, b"\x01" * 32)
        elif field.type == F.TYPE_BOOL:
            setattr(msg, field.name, True)
        elif field.type == F.TYPE_ENUM:
            setattr(msg, field.name, len(field.enum_type.values) - 1)
        elif field.type not in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            setattr(msg, field.name, 1)
    return msg


async def test_plausible_requests_with_dependencies_down_get_deliberate_statuses(
    servers: list[RunningService],
) -> None:
    for svc in servers:
        for path, method, response_cls in _rpcs(svc):
            request = _plausible(method.input_type)  # type: ignore[attr-defined]
            await _call(svc, path, method, response_cls, request.SerializeToString())  # type: ignore[attr-defined]


async def test_services_still_up_after_fuzzing(servers: list[RunningService]) -> None:
    for svc in servers:
        await svc.probe_once()  # dependencies are down on purpose, but the server must answer
        assert await check_health(svc.address) in ("SERVING", "NOT_SERVING")
