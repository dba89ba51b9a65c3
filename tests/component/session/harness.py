"""A running session service for tests: real gRPC server on port 0, real SessionDB, and helpers that
sign requests the way clients do (agentgpt.auth)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from grpc import aio

from agentgpt import auth
from agentgpt.runtime.config import ServerConfig
from agentgpt.runtime.server import RunningService
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.session.v1 import session_pb2_grpc as pb_grpc
from services.session.control import SessionControl

SPEC_YAML = """
type: "treasury_management"
params:
  chains: [arbitrum, polygon]
  models:
    risk: "gpt-4-enterprise-finance"
    execution: "web3-agent-v4"
decorators:
  - "kyc_tier4"
  - "ofac_filter"
"""
SERVICE_MD = ((auth.SERVICE_HEADER, "executor-1"),)
_keys = itertools.count(1)


def new_key() -> str:
    return f"key-{time.time_ns()}-{next(_keys)}"


ChainSigner = Callable[[str, pb.Session | None, Any], bytes]


def fake_chain_signature(_action: str, _session: Any, _req: Any) -> bytes:
    return b"\x01" * 65


@dataclass
class Owner:
    """An owner's key: signs requests with fresh nonces."""

    private_key: str
    chain_id: int
    chain_signer: ChainSigner = fake_chain_signature
    _nonce: itertools.count[int] = field(default_factory=lambda: itertools.count(time.time_ns() % 10**12))

    @property
    def address(self) -> str:
        return str(Account.from_key(self.private_key).address)

    def sign(self, req: Any, *, deadline: int | None = None, nonce: int | None = None) -> Any:
        return auth.signed(
            req,
            self.private_key,
            nonce=next(self._nonce) if nonce is None else nonce,
            deadline=deadline or int(time.time()) + 600,
            chain_id=self.chain_id,
        )

    def read(self, req: Any) -> Any:
        """`req` (a read request) with its `auth` field set to the owner's read signature."""
        return self.sign(req, nonce=0)

    def chain_sign(self, action: str, session: pb.Session | None, req: Any) -> Any:
        """`req` (already signed) with its `chain_signature` field set: made after `sign`, because the
        SessionFactory signature uses auth.deadline and the owner signature does not cover it."""
        req.chain_signature = self.chain_signer(action, session, req)
        return req

    def read_md(self, req: Any) -> tuple[tuple[str, bytes], ...]:
        """Deprecated transport: the read signature as metadata (kept for the fallback test)."""
        return auth.read_metadata(
            self.private_key, req, deadline=int(time.time()) + 600, chain_id=self.chain_id
        )

    def chain_md(self, action: str, session: pb.Session | None, req: Any) -> tuple[tuple[str, bytes], ...]:
        """Deprecated transport: the chain signature as metadata (kept for the fallback test)."""
        return ((auth.CHAIN_SIGNATURE_HEADER, self.chain_signer(action, session, req)),)


class Harness:
    def __init__(self, service: RunningService) -> None:
        self.service = service
        self.channel = aio.insecure_channel(service.address)
        self.stub = pb_grpc.SessionServiceStub(self.channel)

    @property
    def control(self) -> SessionControl:
        return self.service.definition.control  # type: ignore[attr-defined,no-any-return]

    async def close(self) -> None:
        await self.channel.close()

    async def create(
        self, owner: Owner, *, budget: str = "1000", key: str | None = None, spec_yaml: str = SPEC_YAML
    ) -> pb.Session:
        req = owner.sign(
            pb.CreateSessionRequest(
                idempotency_key=key or new_key(), spec_yaml=spec_yaml, initial_budget=budget
            )
        )
        resp = await self.stub.CreateSession(owner.chain_sign("create", None, req))
        return resp.session

    async def activate(
        self, owner: Owner, session: pb.Session, executor: str, *, quote: bytes = b"", collateral: str = ""
    ) -> pb.ActivateSessionResponse:
        req = owner.sign(
            pb.ActivateSessionRequest(
                idempotency_key=new_key(),
                session_id=session.session_id,
                executor=executor,
                executor_attestation_quote=quote,
                executor_attestation_collateral_json=collateral,
            )
        )
        return await self.stub.ActivateSession(owner.chain_sign("activate", session, req))

    async def get(self, owner: Owner, session_id: str) -> pb.Session:
        req = owner.read(pb.GetSessionRequest(session_id=session_id))
        return (await self.stub.GetSession(req)).session


def server_config() -> ServerConfig:
    return ServerConfig(
        grpc_port=0, metrics_port=-1, drain_delay=0.0, shutdown_grace=1.0, health_interval=0.5
    )


async def grow_log(control: SessionControl, session_id: str, count: int, batch: int = 500) -> None:
    """Append `count` task-sized events to a session's log straight through SessionDB (what thousands of
    task reports would leave behind, in a fraction of the time)."""
    from services.session.model import NewEvent
    from services.session.store import Change

    for start in range(0, count, batch):
        rec = await control.db.require(session_id)
        events = [
            NewEvent(
                "task_succeeded",
                {
                    "seq": i + 1,
                    "kind": "rebalance",
                    "gas_used": 21000 + i,
                    "cost": "10",
                    "error": "",
                    "log_hash": "0x" + f"{i:064x}",
                },
            )
            for i in range(start, min(count, start + batch))
        ]
        await control.db.commit(Change(session_id, rec.version, {}, events))
