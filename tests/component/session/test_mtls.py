"""mTLS service identities against a real session service server: a throwaway CA issues the services'
certificates; a call without a certificate, with one from another CA, or with a valid certificate of the
wrong service is refused, and the right service gets through with its certificate as its identity (the
`x-agentgpt-service` header ignored)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc import aio

from agentgpt.clients import SessionClient, check_health
from agentgpt.errors import RpcError
from agentgpt.ipfs import EmbeddedStore
from agentgpt.runtime import tls
from agentgpt.runtime.config import load
from agentgpt.runtime.server import RunningService
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.session.v1 import session_pb2_grpc as pb_grpc
from services.session.app import build
from services.session.config import SessionConfig
from services.session.memory import InMemorySessionChain

from .harness import server_config

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def certs(tmp_path: Path) -> dict[str, tls.TlsFiles]:
    ca = tls.make_ca(tmp_path / "ca")
    names = ("session", "executor-1", "recovery-oracle", "indexer", "cli")
    issued = {name: tls.issue(ca, name, tmp_path / "ca") for name in names}
    rogue = tls.make_ca(tmp_path / "rogue", name="rogue-ca")
    issued["rogue-executor"] = tls.issue(rogue, "executor-1", tmp_path / "rogue")
    return issued


@pytest_asyncio.fixture
async def server(tmp_path: Path, certs: dict[str, tls.TlsFiles]) -> AsyncIterator[RunningService]:
    """The session service with mTLS on (its own certificate, the CA's clients only), header trust on too:
    with a certificate, the header must be ignored."""
    own = certs["session"]
    config = load(
        SessionConfig,
        env={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}",
        trust_service_header=True,
    )
    definition = await build(config, chain=InMemorySessionChain(), archive=EmbeddedStore(tmp_path / "ipfs"))
    service = RunningService(
        definition,
        replace(
            server_config(),
            tls_ca_file=str(own.ca),
            tls_cert_file=str(own.cert),
            tls_key_file=str(own.key),
        ),
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def _client(server: RunningService, files: tls.TlsFiles, identity: str = "") -> SessionClient:
    return SessionClient(
        f"127.0.0.1:{server.port}",
        channel=tls.channel(f"127.0.0.1:{server.port}", "session", files),
        identity=identity,
    )


async def test_no_client_certificate_is_refused_by_the_handshake(
    server: RunningService, certs: dict[str, tls.TlsFiles]
) -> None:
    # The client trusts the server's CA but presents no certificate: the server ends the handshake, so
    # no RPC is ever dispatched; gRPC reports the failed transport as UNAVAILABLE.
    creds = grpc.ssl_channel_credentials(root_certificates=certs["session"].ca.read_bytes())
    options = [("grpc.ssl_target_name_override", "session")]
    async with aio.secure_channel(f"127.0.0.1:{server.port}", creds, options=options) as ch:
        with pytest.raises(aio.AioRpcError) as err:
            await pb_grpc.SessionServiceStub(ch).ListSessions(pb.ListSessionsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # and a plaintext client gets nothing either
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        with pytest.raises(aio.AioRpcError) as err:
            await pb_grpc.SessionServiceStub(ch).ListSessions(pb.ListSessionsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_from_another_ca_is_refused_by_the_handshake(
    server: RunningService, certs: dict[str, tls.TlsFiles]
) -> None:
    # `executor-1` by name, but signed by a CA the server does not trust (it trusts our server, though)
    rogue = replace(certs["rogue-executor"], ca=certs["session"].ca)
    client = _client(server, rogue, identity="executor-1")
    with pytest.raises(RpcError) as err:
        await client.claim_lease(pb.ClaimLeaseRequest(executor_id="executor-1", ttl_seconds=30))
    await client.close()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("identity", "rpc"),
    [
        ("recovery-oracle", "ClaimLease"),  # only executors hold leases
        ("cli", "ClaimLease"),  # the CLI's certificate has no service rights
        ("executor-1", "GetSessionKeys"),  # only the oracle reads a session's keys
        ("executor-1", "ReassignExecutor"),  # only the oracle moves sessions
        ("indexer", "ReportTask"),
    ],
)
async def test_valid_certificate_of_the_wrong_service_is_permission_denied(
    server: RunningService, certs: dict[str, tls.TlsFiles], identity: str, rpc: str
) -> None:
    requests = {
        "ClaimLease": pb.ClaimLeaseRequest(executor_id="executor-1", ttl_seconds=30),
        "GetSessionKeys": pb.GetSessionKeysRequest(session_id="1", public_key=b"\x02" * 33),
        "ReassignExecutor": pb.ReassignExecutorRequest(session_id="1"),
        "ReportTask": pb.ReportTaskRequest(session_id="1"),
    }
    # the header claims an executor: with a certificate it must count for nothing
    client = _client(server, certs[identity], identity="executor-1")
    with pytest.raises(RpcError) as err:
        await client.unary(rpc, requests[rpc], retry=False)
    await client.close()
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert rpc in err.value.details and repr(identity) in err.value.details


async def test_the_right_service_gets_through_with_its_certificate_as_identity(
    server: RunningService, certs: dict[str, tls.TlsFiles]
) -> None:
    # the oracle lists every session as a service: no owner signature needed, its certificate is enough
    oracle = _client(server, certs["recovery-oracle"])
    listed = await oracle.list_sessions(pb.ListSessionsRequest())
    assert list(listed.sessions) == []
    # an executor passes the allowlist: the request reaches the service (nothing to claim: NOT_FOUND-like)
    executor = _client(server, certs["executor-1"])
    resp = await executor.claim_lease(pb.ClaimLeaseRequest(executor_id="executor-1", ttl_seconds=30))
    assert not resp.lease.session_id
    # the CLI's certificate is an owner's client: a read without the owner's signature is refused, even
    # when the header claims a service
    cli = _client(server, certs["cli"], identity="recovery_oracle")
    with pytest.raises(RpcError) as err:
        await cli.list_sessions(pb.ListSessionsRequest())
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    # health answers every certificate of the CA
    status = await check_health(f"127.0.0.1:{server.port}", channel=cli.channel)
    assert status == "SERVING"
    for c in (oracle, executor, cli):
        await c.close()
